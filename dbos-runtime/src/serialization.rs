//! Portable JSON: how inputs, outputs, errors and messages are stored (SYSDB.md §5).

use crate::error::{Error, PortableError};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// The serialization tag we write on every row that carries a payload.
pub const PORTABLE_JSON: &str = "portable_json";
/// The official Rust SDK's tag: plain serde_json, read like ours.
const RUST_SERDE: &str = "rust_serde";

/// Serializes a value to compact JSON.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<String, Error> {
    serde_json::to_string(value).map_err(Error::ser(format!("serialize {what}")))
}

/// Checks that a row's tag is one we can read.
pub(crate) fn check_tag(tag: Option<&str>) -> Result<(), Error> {
    match tag {
        None | Some(PORTABLE_JSON) | Some(RUST_SERDE) => Ok(()),
        Some(other) => Err(Error::UnsupportedSerialization(other.to_owned())),
    }
}

/// Reads a stored JSON value into `T`.
pub(crate) fn from_json<T: DeserializeOwned>(
    text: &str,
    tag: Option<&str>,
    what: &str,
) -> Result<T, Error> {
    check_tag(tag)?;
    serde_json::from_str(text).map_err(Error::ser(format!("deserialize {what}")))
}

/// Reads a stored error object.
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

/// Encodes workflow arguments as `{"positionalArgs":[...],"namedArgs":{}}`.
///
/// The first serialization failure is kept and reported when the workflow starts.
#[derive(Debug, Default)]
pub struct ArgsEncoder {
    args: Vec<Value>,
    error: Option<serde_json::Error>,
}

impl ArgsEncoder {
    /// An empty argument list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one positional argument.
    pub fn push<T: Serialize + ?Sized>(&mut self, value: &T) {
        match serde_json::to_value(value) {
            Ok(v) => self.args.push(v),
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(e);
                }
                self.args.push(Value::Null);
            }
        }
    }

    pub(crate) fn from_values(args: Vec<Value>) -> Self {
        ArgsEncoder { args, error: None }
    }

    /// The stored `inputs` text.
    pub(crate) fn finish(self) -> Result<String, Error> {
        if let Some(e) = self.error {
            return Err(Error::ser("serialize workflow arguments")(e));
        }
        let doc = serde_json::json!({ "positionalArgs": self.args, "namedArgs": {} });
        to_json(&doc, "workflow arguments")
    }
}

/// Stored workflow inputs, decoded one positional argument at a time.
#[derive(Debug)]
pub struct Inputs {
    args: std::vec::IntoIter<Value>,
    position: usize,
}

impl Inputs {
    /// Parses `{"positionalArgs":[...],"namedArgs":{}}`; missing fields are empty.
    pub(crate) fn parse(text: Option<&str>, tag: Option<&str>) -> Result<Inputs, Error> {
        check_tag(tag)?;
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
        Ok(Inputs {
            args: positional.into_iter(),
            position: 0,
        })
    }

    /// Decodes the next positional argument.
    #[allow(clippy::should_implement_trait)] // fallible and typed per call: not an Iterator
    pub fn next<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        let position = self.position;
        self.position += 1;
        let value = self
            .args
            .next()
            .ok_or_else(|| Error::BadInputs(format!("argument {position} is missing")))?;
        serde_json::from_value(value)
            .map_err(|e| Error::BadInputs(format!("argument {position}: {e}")))
    }

    /// Checks that every stored argument was used.
    pub fn finish(mut self) -> Result<(), Error> {
        match self.args.next() {
            None => Ok(()),
            Some(_) => Err(Error::BadInputs(format!(
                "{} arguments stored, the workflow takes {}",
                self.position + 1 + self.args.len(),
                self.position
            ))),
        }
    }
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
}
