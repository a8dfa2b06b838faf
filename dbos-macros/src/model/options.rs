//! The options inside an attribute's parentheses: each key checked for the attribute it is on,
//! each value converted (`name`, a `#[step]`'s retry policy, a `#[transaction]`'s isolation and
//! `read_only`).

use proc_macro2::{Span, TokenStream};
use syn::{Expr, Lit, LitStr};

use super::errors::Errors;
use super::kind::Kind;
use crate::args::{Arg, Args};

/// `isolation = "…"` of a `#[transaction]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isolation {
    Serializable,
    RepeatableRead,
    ReadCommitted,
}

/// Retry policy of a `#[step]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct StepOptions {
    pub(crate) max_attempts: u32,
    pub(crate) interval_secs: f64,
    pub(crate) backoff: f64,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            max_attempts: 1,
            interval_secs: 1.0,
            backoff: 2.0,
        }
    }
}

impl StepOptions {
    /// A step that may run its body more than once gets fresh clones of its arguments.
    pub(crate) fn retries(&self) -> bool {
        self.max_attempts > 1
    }
}

/// Options of a `#[transaction]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TxOptions {
    pub(crate) isolation: Option<Isolation>,
    pub(crate) read_only: bool,
}

/// `serialization = "…"`: how the function's arguments and outputs are stored.
#[derive(Clone, Debug, Default)]
pub(crate) enum Serialization {
    /// Portable JSON, the default (also `serialization = "json"`).
    #[default]
    Json,
    /// bincode; the literal is kept so a missing runtime feature is reported at it.
    Bincode(LitStr),
}

/// The options of an attribute, checked and converted.
#[derive(Default)]
pub(super) struct Options {
    pub(super) name: Option<LitStr>,
    pub(super) serialization: Serialization,
    pub(super) step: StepOptions,
    pub(super) tx: TxOptions,
}

impl Options {
    /// Parses the tokens inside the attribute's parentheses and checks every option.
    pub(super) fn parse(kind: Kind, tokens: TokenStream) -> syn::Result<Options> {
        Args::parse(kind.attr(), kind.keys(), tokens).and_then(|args| Options::fold(kind, args))
    }

    fn fold(kind: Kind, args: Args) -> syn::Result<Options> {
        let mut errors = Errors::default();
        let mut options = Options::default();
        let mut seen: Vec<&'static str> = Vec::new();
        // Retry tuning given without retries; reported once all keys are known.
        let mut tuning: Vec<(&'static str, Span)> = Vec::new();
        for arg in &args.list {
            let key = arg.key_name();
            if seen.contains(&key) {
                errors.push(syn::Error::new(
                    arg.key_span(),
                    format_args!("`{key}` is given twice in {}; keep one", kind.attr()),
                ));
                continue;
            }
            seen.push(key);
            let checked = match arg {
                Arg::Name { value, .. } => name(value).map(|lit| options.name = Some(lit)),
                Arg::MaxAttempts { value, .. } => {
                    max_attempts(value).map(|n| options.step.max_attempts = n)
                }
                Arg::Interval { value, key } => interval(value).map(|secs| {
                    options.step.interval_secs = secs;
                    tuning.push(("interval", key.span));
                }),
                Arg::Backoff { value, key } => backoff(value).map(|factor| {
                    options.step.backoff = factor;
                    tuning.push(("backoff", key.span));
                }),
                Arg::Isolation { value, .. } => {
                    isolation(value).map(|level| options.tx.isolation = Some(level))
                }
                Arg::ReadOnly { value, .. } => {
                    read_only(value.as_ref()).map(|flag| options.tx.read_only = flag)
                }
                Arg::Serialization { value, .. } => {
                    serialization(value).map(|format| options.serialization = format)
                }
            };
            if let Err(err) = checked {
                errors.push(err);
            }
        }
        if !options.step.retries() {
            for (key, span) in tuning {
                errors.push(syn::Error::new(
                    span,
                    format_args!(
                        "`{key}` tunes the wait between retries, but this step is tried once \
                         (`max_attempts` is 1); add `max_attempts = N` with N > 1, or remove \
                         `{key}`"
                    ),
                ));
            }
        }
        errors.finish()?;
        Ok(options)
    }
}

fn lit(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(expr) => Some(&expr.lit),
        Expr::Group(group) => lit(&group.expr),
        _ => None,
    }
}

fn name(value: &Expr) -> syn::Result<LitStr> {
    match lit(value) {
        Some(Lit::Str(name)) if !name.value().trim().is_empty() => Ok(name.clone()),
        Some(Lit::Str(name)) => Err(syn::Error::new_spanned(
            name,
            "`name` must not be empty: it identifies this function's rows in the system \
             database; give a name such as `name = \"checkout\"` or remove the option",
        )),
        _ => Err(syn::Error::new_spanned(
            value,
            "`name` must be a string literal such as `name = \"checkout\"`: it is stored with \
             every run and must be known at compile time",
        )),
    }
}

fn max_attempts(value: &Expr) -> syn::Result<u32> {
    let message = "`max_attempts` must be an integer literal ≥ 1, the number of tries counting \
                   the first, e.g. `max_attempts = 3`";
    match lit(value) {
        Some(Lit::Int(int)) => match int.base10_parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(syn::Error::new_spanned(int, message)),
        },
        _ => Err(syn::Error::new_spanned(value, message)),
    }
}

fn interval(value: &Expr) -> syn::Result<f64> {
    let message = "`interval` must be a duration string greater than zero, a number followed by \
                   `ms`, `s`, `m` or `h`, e.g. `interval = \"500ms\"` or `\"1.5s\"`; it is the \
                   wait before the first retry";
    match lit(value) {
        Some(Lit::Str(text)) => match parse_duration(&text.value()) {
            Some(secs) => Ok(secs),
            None => Err(syn::Error::new_spanned(text, message)),
        },
        _ => Err(syn::Error::new_spanned(value, message)),
    }
}

/// `<number>(ms|s|m|h)` to seconds; the number may have a fraction and must be > 0.
fn parse_duration(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let mut parts = number.split('.');
    let whole = parts.next()?;
    let fraction = parts.next();
    let well_formed = !whole.is_empty() && fraction != Some("") && parts.next().is_none();
    if !well_formed {
        return None;
    }
    let secs = number.parse::<f64>().ok()? * scale;
    (secs.is_finite() && secs > 0.0).then_some(secs)
}

fn backoff(value: &Expr) -> syn::Result<f64> {
    let message = "`backoff` must be a number ≥ 1.0, e.g. `backoff = 2.0`: each retry waits \
                   `backoff` times longer than the one before (1.0 keeps the wait constant)";
    let factor = match lit(value) {
        Some(Lit::Float(float)) => float.base10_parse::<f64>().ok(),
        Some(Lit::Int(int)) => int.base10_parse::<u32>().ok().map(f64::from),
        _ => None,
    };
    match factor {
        Some(factor) if factor.is_finite() && factor >= 1.0 => Ok(factor),
        _ => Err(syn::Error::new_spanned(value, message)),
    }
}

fn isolation(value: &Expr) -> syn::Result<Isolation> {
    let message = "`isolation` must be \"serializable\", \"repeatable_read\" or \
                   \"read_committed\"; leave it out to use the database's default level";
    match lit(value) {
        Some(Lit::Str(level)) => match level.value().as_str() {
            "serializable" => Ok(Isolation::Serializable),
            "repeatable_read" => Ok(Isolation::RepeatableRead),
            "read_committed" => Ok(Isolation::ReadCommitted),
            other => Err(syn::Error::new_spanned(
                level,
                format_args!("unknown isolation level {other:?}: {message}"),
            )),
        },
        _ => Err(syn::Error::new_spanned(value, message)),
    }
}

fn serialization(value: &Expr) -> syn::Result<Serialization> {
    let message = "`serialization` must be \"json\" (portable JSON, the default, readable by \
                   DBOS's tools and other SDKs) or \"bincode\" (compact, Rust only)";
    match lit(value) {
        Some(Lit::Str(format)) => match format.value().as_str() {
            "json" => Ok(Serialization::Json),
            "bincode" => Ok(Serialization::Bincode(format.clone())),
            other => Err(syn::Error::new_spanned(
                format,
                format_args!("unknown serialization {other:?}: {message}"),
            )),
        },
        _ => Err(syn::Error::new_spanned(value, message)),
    }
}

fn read_only(value: Option<&Expr>) -> syn::Result<bool> {
    match value.map(|value| (value, lit(value))) {
        None => Ok(true),
        Some((_, Some(Lit::Bool(flag)))) => Ok(flag.value),
        Some((value, _)) => Err(syn::Error::new_spanned(
            value,
            "`read_only` is a flag: write `read_only` (or `read_only = true`/`false`)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_are_a_positive_number_and_a_unit() {
        for (text, secs) in [
            ("1s", 1.0),
            ("500ms", 0.5),
            ("1.5m", 90.0),
            ("2h", 7200.0),
            ("0.25s", 0.25),
        ] {
            assert_eq!(parse_duration(text), Some(secs), "{text}");
        }
        for text in [
            "0s", "0.0ms", "1", "s", "1.s", ".5s", "1.2.3s", "1d", "-1s", "1 s", "", "1e3s", "infs",
        ] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }
}
