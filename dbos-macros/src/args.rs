//! The attribute grammar: `#[workflow(name = "…")]`, `#[step(max_attempts = 3, …)]`,
//! `#[transaction(isolation = "…", read_only)]`, `serialization = "bincode"` on any of
//! them, and `#[scheduled("…")]`.
//!
//! This module only recognises keys and their raw values; `model` checks what they mean. It
//! knows no attribute kinds: callers pass the attribute's name and the keys it accepts.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, LitStr, Token};

mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(max_attempts);
    syn::custom_keyword!(interval);
    syn::custom_keyword!(backoff);
    syn::custom_keyword!(isolation);
    syn::custom_keyword!(read_only);
    syn::custom_keyword!(serialization);
}

/// One `key = value` (or bare flag) inside the attribute's parentheses.
pub(crate) enum Arg {
    Name {
        key: kw::name,
        value: Expr,
    },
    MaxAttempts {
        key: kw::max_attempts,
        value: Expr,
    },
    Interval {
        key: kw::interval,
        value: Expr,
    },
    Backoff {
        key: kw::backoff,
        value: Expr,
    },
    Isolation {
        key: kw::isolation,
        value: Expr,
    },
    /// `read_only` or `read_only = <bool>`.
    ReadOnly {
        key: kw::read_only,
        value: Option<Expr>,
    },
    Serialization {
        key: kw::serialization,
        value: Expr,
    },
}

impl Arg {
    pub(crate) fn key_name(&self) -> &'static str {
        match self {
            Arg::Name { .. } => "name",
            Arg::MaxAttempts { .. } => "max_attempts",
            Arg::Interval { .. } => "interval",
            Arg::Backoff { .. } => "backoff",
            Arg::Isolation { .. } => "isolation",
            Arg::ReadOnly { .. } => "read_only",
            Arg::Serialization { .. } => "serialization",
        }
    }

    pub(crate) fn key_span(&self) -> Span {
        match self {
            Arg::Name { key, .. } => key.span,
            Arg::MaxAttempts { key, .. } => key.span,
            Arg::Interval { key, .. } => key.span,
            Arg::Backoff { key, .. } => key.span,
            Arg::Isolation { key, .. } => key.span,
            Arg::ReadOnly { key, .. } => key.span,
            Arg::Serialization { key, .. } => key.span,
        }
    }
}

/// The options of `#[workflow]`, `#[step]` or `#[transaction]`, in source order.
pub(crate) struct Args {
    pub(crate) list: Vec<Arg>,
}

impl Args {
    /// Parses the options of the attribute `attr` (`"#[step]"`…), which accepts `keys`.
    pub(crate) fn parse(attr: &str, keys: &[&str], tokens: TokenStream) -> syn::Result<Args> {
        let parser = |input: ParseStream| -> syn::Result<Args> {
            let mut list = Vec::new();
            while !input.is_empty() {
                list.push(parse_arg(attr, keys, input)?);
                if input.is_empty() {
                    break;
                }
                input.parse::<Token![,]>()?;
            }
            Ok(Args { list })
        };
        parser.parse2(tokens)
    }
}

fn parse_arg(attr: &str, keys: &[&str], input: ParseStream) -> syn::Result<Arg> {
    let arg = if input.peek(kw::name) {
        Arg::Name {
            key: input.parse()?,
            value: value(input, "name")?,
        }
    } else if input.peek(kw::max_attempts) {
        Arg::MaxAttempts {
            key: input.parse()?,
            value: value(input, "max_attempts")?,
        }
    } else if input.peek(kw::interval) {
        Arg::Interval {
            key: input.parse()?,
            value: value(input, "interval")?,
        }
    } else if input.peek(kw::backoff) {
        Arg::Backoff {
            key: input.parse()?,
            value: value(input, "backoff")?,
        }
    } else if input.peek(kw::isolation) {
        Arg::Isolation {
            key: input.parse()?,
            value: value(input, "isolation")?,
        }
    } else if input.peek(kw::serialization) {
        Arg::Serialization {
            key: input.parse()?,
            value: value(input, "serialization")?,
        }
    } else if input.peek(kw::read_only) {
        let key = input.parse()?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Arg::ReadOnly { key, value }
    } else if input.peek(syn::Ident::peek_any) {
        let key = input.call(syn::Ident::parse_any)?;
        return Err(unknown_key(
            attr,
            keys,
            key.span(),
            &key.unraw().to_string(),
        ));
    } else {
        return Err(input.error(format_args!(
            "expected an option of {}: {}",
            attr,
            keys_hint(keys)
        )));
    };
    if !keys.contains(&arg.key_name()) {
        return Err(unknown_key(attr, keys, arg.key_span(), arg.key_name()));
    }
    Ok(arg)
}

fn value(input: ParseStream, key: &str) -> syn::Result<Expr> {
    if !input.peek(Token![=]) {
        return Err(input.error(format_args!("expected `{key} = <value>`")));
    }
    input.parse::<Token![=]>()?;
    input.parse()
}

fn unknown_key(attr: &str, keys: &[&str], span: Span, key: &str) -> syn::Error {
    syn::Error::new(
        span,
        format_args!(
            "unknown option `{key}` for {}; valid options: {}",
            attr,
            keys_hint(keys)
        ),
    )
}

/// The accepted keys as a list for messages: "`name`, `max_attempts`".
fn keys_hint(keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|key| format!("`{key}`")).collect();
    match keys.as_slice() {
        [] => "a cron string".to_owned(),
        keys => keys.join(", "),
    }
}

/// Parses the arguments of `#[scheduled("sec min hour dom month dow")]`: one string literal.
/// `fallback` spans the error when there is no token to point at (`#[scheduled]`, `#[scheduled()]`).
pub(crate) fn parse_cron(tokens: TokenStream, fallback: Span) -> syn::Result<LitStr> {
    const USAGE: &str = "#[scheduled] takes one cron string with six fields, seconds first, \
                         e.g. #[scheduled(\"0 */5 * * * *\")]";
    if tokens.is_empty() {
        return Err(syn::Error::new(fallback, USAGE));
    }
    let parser = |input: ParseStream| -> syn::Result<LitStr> {
        let lit = if input.peek(syn::LitStr) {
            input.parse::<LitStr>()?
        } else {
            let tokens: TokenStream = input.parse()?;
            return Err(syn::Error::new(tokens.span(), USAGE));
        };
        if input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
        }
        if !input.is_empty() {
            let rest: TokenStream = input.parse()?;
            return Err(syn::Error::new_spanned(rest, USAGE));
        }
        Ok(lit)
    };
    parser.parse2(tokens)
}
