//! How inputs, outputs, errors and messages are stored (SYSDB.md §5): portable JSON by
//! default, or bincode for functions that ask for it (`serialization = "bincode"`).
//!
//! Every row that carries a payload names its format in its `serialization` column, and a
//! reader decodes by that tag, never by what today's code would write: a function whose format
//! changed between versions still replays what the old version recorded. Errors are always
//! portable JSON, whatever the function's format, so every tool can show why a run failed.

use crate::error::{Error, PortableError};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// The serialization tag we write on every row that carries a payload.
pub const PORTABLE_JSON: &str = "portable_json";
/// The tag of rows written with [`Format::Bincode`]: the payload columns hold standard base64
/// of bincode 2 (standard configuration, through serde); errors stay portable JSON.
pub const RUST_BINCODE: &str = "rust_bincode";
/// The official Rust SDK's tag: plain serde_json, read like ours.
const RUST_SERDE: &str = "rust_serde";

/// How a durable function's arguments and outputs are stored.
///
/// JSON is the default and what DBOS's other SDKs and tools read. Bincode (behind the
/// `bincode` feature, chosen per function with `serialization = "bincode"`) is smaller and
/// faster for large values, but only Rust code with the same types can read it; DBOS's tools
/// show its tag instead of the value. Bincode is not self-describing: types that need it
/// (`serde_json::Value`, `#[serde(untagged)]`, `#[serde(flatten)]`, `skip_serializing_if`)
/// fail to decode, with [`Error::BincodeSerialization`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Portable JSON (`portable_json`).
    #[default]
    Json,
    /// bincode, base64 in the text columns (`rust_bincode`).
    Bincode,
}

impl Format {
    /// The tag written in the `serialization` column.
    pub fn tag(self) -> &'static str {
        match self {
            Format::Json => PORTABLE_JSON,
            Format::Bincode => RUST_BINCODE,
        }
    }

    /// The format a row's tag names; a row without a tag is JSON.
    pub(crate) fn of_tag(tag: Option<&str>) -> Result<Format, Error> {
        match tag {
            None | Some(PORTABLE_JSON) | Some(RUST_SERDE) => Ok(Format::Json),
            Some(RUST_BINCODE) if cfg!(feature = "bincode") => Ok(Format::Bincode),
            Some(RUST_BINCODE) => Err(Error::UnsupportedSerialization(format!(
                "{RUST_BINCODE} (enable the `bincode` feature of dbos-runtime to read it)"
            ))),
            Some(other) => Err(Error::UnsupportedSerialization(other.to_owned())),
        }
    }

    /// Encodes `value` as this format stores it in a text column (for bincode: base64).
    ///
    /// # Errors
    /// [`Error::Serialization`] or [`Error::BincodeSerialization`] when the value cannot be
    /// encoded; [`Error::UnsupportedSerialization`] for bincode without the `bincode` feature.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<String, Error> {
        encode(self, value, "a value")
    }

    /// Decodes a value this format stored (the inverse of [`Format::encode`]).
    ///
    /// # Errors
    /// As [`Format::encode`], when the text is not a `T` in this format.
    pub fn decode<T: DeserializeOwned>(self, text: &str) -> Result<T, Error> {
        decode(text, Some(self.tag()), "a value")
    }

    fn to_u8(self) -> u8 {
        match self {
            Format::Json => 0,
            Format::Bincode => 1,
        }
    }

    fn from_u8(n: u8) -> Format {
        if n == 1 {
            Format::Bincode
        } else {
            Format::Json
        }
    }
}

/// A format chosen when a call is made and settled when it runs: a resumed workflow writes
/// its output in the format its row was started with, whatever today's attribute says.
#[derive(Clone, Debug, Default)]
pub(crate) struct FormatCell(Arc<AtomicU8>);

impl FormatCell {
    pub(crate) fn new(format: Format) -> FormatCell {
        FormatCell(Arc::new(AtomicU8::new(format.to_u8())))
    }

    pub(crate) fn get(&self) -> Format {
        Format::from_u8(self.0.load(Ordering::Acquire))
    }

    pub(crate) fn set(&self, format: Format) {
        self.0.store(format.to_u8(), Ordering::Release);
    }
}

/// Serializes a value to compact JSON.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<String, Error> {
    serde_json::to_string(value).map_err(Error::ser(format!("serialize {what}")))
}

/// Serializes a value in `format`.
pub(crate) fn encode<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
    what: &str,
) -> Result<String, Error> {
    match format {
        Format::Json => to_json(value, what),
        Format::Bincode => binary::encode(value, what),
    }
}

/// Reads a stored value in the format its row's tag names.
pub(crate) fn decode<T: DeserializeOwned>(
    text: &str,
    tag: Option<&str>,
    what: &str,
) -> Result<T, Error> {
    match Format::of_tag(tag)? {
        Format::Json => {
            serde_json::from_str(text).map_err(Error::ser(format!("deserialize {what}")))
        }
        Format::Bincode => binary::decode(text, what),
    }
}

/// Checks that a row's tag is one we can read.
pub(crate) fn check_tag(tag: Option<&str>) -> Result<(), Error> {
    Format::of_tag(tag).map(|_| ())
}

/// Reads a stored JSON value (messages and events, always JSON) into `T`.
pub(crate) fn from_json<T: DeserializeOwned>(
    text: &str,
    tag: Option<&str>,
    what: &str,
) -> Result<T, Error> {
    decode(text, tag, what)
}

/// Reads a stored error object: portable JSON whatever the row's format.
pub(crate) fn error_from_json(text: &str, tag: Option<&str>) -> Result<PortableError, Error> {
    check_tag(tag)?;
    match serde_json::from_str::<PortableError>(text) {
        Ok(e) => Ok(e),
        // Some other writer stored a bare string or another shape: keep its text.
        Err(_) => Ok(PortableError {
            name: String::new(),
            message: text.to_owned(),
            code: Value::Null,
            data: Value::Null,
        }),
    }
}

/// A stored payload as tools show it: the text itself when it is JSON, otherwise its format
/// and size (`<rust_bincode: 120 bytes>`), never the encoded bytes.
pub(crate) fn shown(text: Option<&str>, tag: Option<&str>) -> Option<String> {
    let text = text?;
    match tag {
        None | Some(PORTABLE_JSON) | Some(RUST_SERDE) => Some(text.to_owned()),
        Some(RUST_BINCODE) => {
            let text = text.trim();
            let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
            let bytes = (text.len() / 4 * 3).saturating_sub(padding);
            Some(format!("<{RUST_BINCODE}: {bytes} bytes>"))
        }
        Some(other) => Some(format!("<{other}: {} characters>", text.len())),
    }
}

/// bincode 2 through serde, standard configuration, base64 in the text columns.
#[cfg(feature = "bincode")]
mod binary {
    use crate::error::Error;
    use base64::Engine;
    use serde::{de::DeserializeOwned, Serialize};

    fn error(doing: String) -> impl FnOnce(String) -> Error {
        move |message| Error::BincodeSerialization { doing, message }
    }

    pub(super) fn to_bytes<T: Serialize + ?Sized>(
        value: &T,
        out: &mut Vec<u8>,
        what: &str,
    ) -> Result<(), Error> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(|_| ())
            .map_err(|e| error(format!("serialize {what}"))(e.to_string()))
    }

    /// Decodes one value at the start of `bytes`; returns it and the bytes it took.
    pub(super) fn from_bytes<T: DeserializeOwned>(
        bytes: &[u8],
        what: &str,
    ) -> Result<(T, usize), Error> {
        bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| error(format!("deserialize {what}"))(e.to_string()))
    }

    pub(super) fn to_text(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    pub(super) fn from_text(text: &str, what: &str) -> Result<Vec<u8>, Error> {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| error(format!("deserialize {what}"))(format!("not base64: {e}")))
    }

    pub(super) fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<String, Error> {
        let mut bytes = Vec::new();
        to_bytes(value, &mut bytes, what)?;
        Ok(to_text(&bytes))
    }

    pub(super) fn decode<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, Error> {
        let bytes = from_text(text, what)?;
        let (value, used) = from_bytes(&bytes, what)?;
        if used != bytes.len() {
            return Err(error(format!("deserialize {what}"))(format!(
                "{} bytes left over after the value",
                bytes.len() - used
            )));
        }
        Ok(value)
    }
}

/// Without the `bincode` feature no function can choose bincode (the macro's check fails to
/// compile) and no bincode row is read (`Format::of_tag` refuses it).
#[cfg(not(feature = "bincode"))]
mod binary {
    use crate::error::Error;
    use serde::{de::DeserializeOwned, Serialize};

    fn disabled() -> Error {
        Error::UnsupportedSerialization(format!(
            "{} (enable the `bincode` feature of dbos-runtime)",
            super::RUST_BINCODE
        ))
    }

    pub(super) fn to_bytes<T: Serialize + ?Sized>(
        _: &T,
        _: &mut Vec<u8>,
        _: &str,
    ) -> Result<(), Error> {
        Err(disabled())
    }

    pub(super) fn from_bytes<T: DeserializeOwned>(_: &[u8], _: &str) -> Result<(T, usize), Error> {
        Err(disabled())
    }

    pub(super) fn to_text(_: &[u8]) -> String {
        String::new()
    }

    pub(super) fn from_text(_: &str, _: &str) -> Result<Vec<u8>, Error> {
        Err(disabled())
    }

    pub(super) fn encode<T: Serialize + ?Sized>(_: &T, _: &str) -> Result<String, Error> {
        Err(disabled())
    }

    pub(super) fn decode<T: DeserializeOwned>(_: &str, _: &str) -> Result<T, Error> {
        Err(disabled())
    }
}

/// Encodes workflow arguments: as JSON `{"positionalArgs":[...],"namedArgs":{}}`, or for
/// [`Format::Bincode`] as each argument's bincode one after the other.
///
/// The first serialization failure is kept and reported when the workflow starts.
#[derive(Debug, Default)]
pub struct ArgsEncoder {
    format: Format,
    args: Vec<Value>,
    bytes: Vec<u8>,
    error: Option<Error>,
}

impl ArgsEncoder {
    /// An empty argument list, stored as JSON.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty argument list, stored in `format`.
    pub fn with_format(format: Format) -> Self {
        ArgsEncoder {
            format,
            ..Self::default()
        }
    }

    /// The format the arguments (and the workflow's output) are stored in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Appends one positional argument.
    pub fn push<T: Serialize + ?Sized>(&mut self, value: &T) {
        let pushed = match self.format {
            Format::Json => serde_json::to_value(value)
                .map(|v| self.args.push(v))
                .map_err(Error::ser("serialize workflow arguments")),
            Format::Bincode => binary::to_bytes(value, &mut self.bytes, "workflow arguments"),
        };
        if let Err(e) = pushed {
            self.error.get_or_insert(e);
            self.args.push(Value::Null);
        }
    }

    pub(crate) fn from_values(args: Vec<Value>) -> Self {
        ArgsEncoder {
            args,
            ..Self::default()
        }
    }

    /// The stored `inputs` text.
    pub(crate) fn finish(self) -> Result<String, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.format {
            Format::Json => {
                let doc = serde_json::json!({ "positionalArgs": self.args, "namedArgs": {} });
                to_json(&doc, "workflow arguments")
            }
            Format::Bincode => Ok(binary::to_text(&self.bytes)),
        }
    }
}

/// Stored workflow inputs, decoded one positional argument at a time.
#[derive(Debug)]
pub struct Inputs {
    args: Args,
    position: usize,
}

#[derive(Debug)]
enum Args {
    Json(std::vec::IntoIter<Value>),
    Bincode { bytes: Vec<u8>, at: usize },
}

impl Inputs {
    /// Parses stored inputs in the format the row's tag names. JSON is
    /// `{"positionalArgs":[...],"namedArgs":{}}`, where missing fields are empty.
    pub(crate) fn parse(text: Option<&str>, tag: Option<&str>) -> Result<Inputs, Error> {
        let args = match Format::of_tag(tag)? {
            Format::Json => Args::Json(json_args(text)?.into_iter()),
            Format::Bincode => Args::Bincode {
                bytes: binary::from_text(text.unwrap_or(""), "workflow inputs")?,
                at: 0,
            },
        };
        Ok(Inputs { args, position: 0 })
    }

    /// Decodes the next positional argument.
    #[allow(clippy::should_implement_trait)] // fallible and typed per call: not an Iterator
    pub fn next<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        let position = self.position;
        self.position += 1;
        let missing = || Error::BadInputs(format!("argument {position} is missing"));
        match &mut self.args {
            Args::Json(args) => {
                let value = args.next().ok_or_else(missing)?;
                serde_json::from_value(value)
                    .map_err(|e| Error::BadInputs(format!("argument {position}: {e}")))
            }
            Args::Bincode { bytes, at } => {
                // An argument may take no bytes at all (`()`, a unit struct): decode even at
                // the end, and call a failure there a missing argument.
                let rest = bytes.get(*at..).unwrap_or_default();
                let (value, used) = binary::from_bytes(rest, "workflow inputs").map_err(|e| {
                    if rest.is_empty() {
                        missing()
                    } else {
                        Error::BadInputs(format!("argument {position}: {e}"))
                    }
                })?;
                *at += used;
                Ok(value)
            }
        }
    }

    /// Checks that every stored argument was used.
    pub fn finish(self) -> Result<(), Error> {
        match self.args {
            Args::Json(mut args) => match args.next() {
                None => Ok(()),
                Some(_) => Err(Error::BadInputs(format!(
                    "{} arguments stored, the workflow takes {}",
                    self.position + 1 + args.len(),
                    self.position
                ))),
            },
            Args::Bincode { bytes, at } if at < bytes.len() => Err(Error::BadInputs(format!(
                "{} bytes stored beyond the workflow's {} argument(s)",
                bytes.len() - at,
                self.position
            ))),
            Args::Bincode { .. } => Ok(()),
        }
    }
}

/// The positional arguments of JSON inputs.
fn json_args(text: Option<&str>) -> Result<Vec<Value>, Error> {
    let doc: Value = match text {
        None => Value::Null,
        Some(t) => serde_json::from_str(t).map_err(Error::ser("parse workflow inputs"))?,
    };
    let positional = match doc.get("positionalArgs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(Error::BadInputs("positionalArgs is not an array".into())),
    };
    match doc.get("namedArgs") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) if m.is_empty() => {}
        Some(_) => {
            return Err(Error::BadInputs(
                "named arguments are not supported by Rust workflows".into(),
            ))
        }
    }
    Ok(positional)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_round_trip_positional_arguments() {
        let mut enc = ArgsEncoder::new();
        enc.push(&5_i32);
        enc.push("a");
        let text = enc.finish().unwrap();
        assert_eq!(text, r#"{"namedArgs":{},"positionalArgs":[5,"a"]}"#);
        let mut inputs = Inputs::parse(Some(&text), Some(PORTABLE_JSON)).unwrap();
        assert_eq!(inputs.next::<i32>().unwrap(), 5);
        assert_eq!(inputs.next::<String>().unwrap(), "a");
        inputs.finish().unwrap();
    }

    #[test]
    fn inputs_reject_wrong_arity_and_named_args() {
        let mut inputs = Inputs::parse(Some(r#"{"positionalArgs":[1,2]}"#), None).unwrap();
        assert_eq!(inputs.next::<i64>().unwrap(), 1);
        assert!(matches!(inputs.finish(), Err(Error::BadInputs(_))));
        let mut inputs = Inputs::parse(Some(r#"{"positionalArgs":[]}"#), None).unwrap();
        assert!(matches!(inputs.next::<i64>(), Err(Error::BadInputs(_))));
        assert!(Inputs::parse(Some(r#"{"namedArgs":{"a":1}}"#), None).is_err());
        assert!(Inputs::parse(Some("not json"), None).is_err());
        assert!(matches!(
            Inputs::parse(Some("[]"), Some("py_pickle")),
            Err(Error::UnsupportedSerialization(_))
        ));
    }

    #[test]
    fn errors_read_back_from_other_shapes() {
        let e = error_from_json(r#"{"name":"ValueError","message":"bad"}"#, None).unwrap();
        assert_eq!((e.name.as_str(), e.message.as_str()), ("ValueError", "bad"));
        assert_eq!(e.data, Value::Null);
        let e = error_from_json("\"plain\"", None).unwrap();
        assert_eq!(e.message, "\"plain\"");
    }

    #[cfg(feature = "bincode")]
    #[test]
    fn bincode_inputs_and_values_round_trip() {
        let mut enc = ArgsEncoder::with_format(Format::Bincode);
        enc.push(&5_i32);
        enc.push("a");
        enc.push(&vec![1_u8, 2, 3]);
        let text = enc.finish().unwrap();
        let mut inputs = Inputs::parse(Some(&text), Some(RUST_BINCODE)).unwrap();
        assert_eq!(inputs.next::<i32>().unwrap(), 5);
        assert_eq!(inputs.next::<String>().unwrap(), "a");
        let mut short = Inputs::parse(Some(&text), Some(RUST_BINCODE)).unwrap();
        assert_eq!(inputs.next::<Vec<u8>>().unwrap(), vec![1, 2, 3]);
        assert!(matches!(inputs.next::<i32>(), Err(Error::BadInputs(_))));
        inputs.finish().unwrap();
        short.next::<i32>().unwrap();
        assert!(matches!(short.finish(), Err(Error::BadInputs(_))));

        // Arguments that encode to no bytes at all still decode, at the end too.
        let mut enc = ArgsEncoder::with_format(Format::Bincode);
        enc.push(&5_u8);
        enc.push(&());
        let text = enc.finish().unwrap();
        let mut unit = Inputs::parse(Some(&text), Some(RUST_BINCODE)).unwrap();
        assert_eq!(unit.next::<u8>().unwrap(), 5);
        unit.next::<()>().unwrap();
        unit.finish().unwrap();

        let text = encode(Format::Bincode, &(7_u64, "x"), "a value").unwrap();
        let back: (u64, String) = decode(&text, Some(RUST_BINCODE), "a value").unwrap();
        assert_eq!(back, (7, "x".to_owned()));
        // Read by the row's tag, not by a guess: the same text is not JSON.
        assert!(decode::<(u64, String)>(&text, Some(PORTABLE_JSON), "a value").is_err());
        // Garbage and trailing bytes are typed errors, not panics.
        assert!(matches!(
            decode::<u64>("%%%", Some(RUST_BINCODE), "a value"),
            Err(Error::BincodeSerialization { .. })
        ));
        let two = encode(Format::Bincode, &(1_u8, 2_u8), "a value").unwrap();
        assert!(matches!(
            decode::<u8>(&two, Some(RUST_BINCODE), "a value"),
            Err(Error::BincodeSerialization { .. })
        ));
    }

    #[test]
    fn format_tags() {
        assert_eq!(Format::of_tag(None).unwrap(), Format::Json);
        assert_eq!(Format::of_tag(Some("rust_serde")).unwrap(), Format::Json);
        assert!(Format::of_tag(Some("py_pickle")).is_err());
        let cell = FormatCell::new(Format::Json);
        cell.set(Format::Bincode);
        assert_eq!(cell.get(), Format::Bincode);
    }
}
