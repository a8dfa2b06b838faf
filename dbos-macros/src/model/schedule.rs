//! `#[scheduled("…")]`: the cron literal, checked with the runtime's parser; where the attribute
//! may stack (on a `#[workflow]` or `#[transaction]`, once, never on a `#[step]`); and the two
//! times a scheduled function takes.

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{Attribute, Ident, ItemFn, LitStr, Meta, PatType, Signature};

use super::errors::Errors;
use super::kind::Kind;
use super::signature::Param;
use crate::args;

/// Reported at a `#[scheduled]` and a `#[step]` on the same function.
pub(super) const ON_A_STEP: &str =
    "#[scheduled] goes on a #[workflow] or #[transaction], not on a #[step]: each tick of a \
     schedule starts a workflow, and a step only runs inside one";

/// Reported at the second `#[scheduled]` on a function.
pub(super) const TWICE: &str =
    "a second #[scheduled] on the same function: a function has one schedule (its ticks are \
     deduplicated by function name and time); remove one";

/// A `#[scheduled("…")]` found among the function's attributes.
pub(crate) struct Schedule {
    pub(crate) cron: LitStr,
}

impl Schedule {
    /// Reads the `#[scheduled("…")]` a stacked expansion left on the function.
    pub(super) fn from_attr(attr: &Attribute) -> syn::Result<Schedule> {
        let tokens = match &attr.meta {
            Meta::List(list) => list.tokens.clone(),
            _ => TokenStream::new(),
        };
        let cron = args::parse_cron(tokens, attr.span())?;
        validate_cron(&cron)?;
        Ok(Schedule { cron })
    }
}

/// Checks a cron string with the same parser the runtime's scheduler uses.
fn validate_cron(lit: &LitStr) -> syn::Result<()> {
    let cron = lit.value();
    match croner::Cron::new(&cron).with_seconds_required().parse() {
        Ok(_) => Ok(()),
        Err(err) => Err(syn::Error::new_spanned(
            lit,
            format_args!(
                "invalid cron schedule {cron:?}: {}; #[scheduled] takes six fields, seconds \
                 first: \"sec min hour day-of-month month day-of-week\", e.g. \"0 */5 * * * *\" \
                 for every five minutes",
                err.to_string().trim_end_matches('.')
            ),
        )),
    }
}

/// A scheduled function takes exactly `(scheduled_time, actual_time)` after any `tx`.
pub(super) fn check_params(kind: Kind, sig: &Signature, params: &[Param], errors: &mut Errors) {
    if params.len() == 2 {
        return;
    }
    let what = match kind {
        Kind::Transaction => "after `tx: &mut Tx`, a #[scheduled] transaction takes",
        _ => "a #[scheduled] workflow takes",
    };
    let message = format!(
        "{what} exactly two parameters, `(scheduled_time: DateTime<Utc>, actual_time: \
         DateTime<Utc>)`: the scheduler passes each tick's planned time and the time it \
         started; found {}",
        params.len()
    );
    match params.first() {
        Some(_) => {
            let list: Vec<&PatType> = params.iter().map(|param| &param.arg).collect();
            errors.push_spanned(quote::quote!(#(#list),*), message);
        }
        None => errors.push(syn::Error::new(sig.paren_token.span.join(), message)),
    }
}

/// `#[scheduled(…)]` expanded first, above its `#[workflow]`/`#[transaction]`.
pub(crate) struct Stacked {
    /// The function, its attributes reordered: the host attribute, then `#[scheduled(…)]`,
    /// then the rest, so the host macro runs next and finds the schedule.
    pub(crate) func: ItemFn,
}

impl Stacked {
    pub(crate) fn parse(args: TokenStream, func: &ItemFn) -> syn::Result<Stacked> {
        let cron = args::parse_cron(args, Span::call_site())?;
        validate_cron(&cron)?;
        let mut host = None;
        let mut rest = Vec::new();
        let mut errors = Errors::default();
        for attr in &func.attrs {
            match (Kind::of_attr(attr), &host) {
                (Some(Kind::Step), _) => errors.push_spanned(attr, ON_A_STEP),
                (Some(Kind::Scheduled), _) => errors.push_spanned(attr, TWICE),
                (Some(_), None) if matches!(attr.style, syn::AttrStyle::Outer) => {
                    host = Some(attr.clone())
                }
                _ => rest.push(attr.clone()),
            }
        }
        errors.finish()?;
        let Some(host) = host else {
            let (fn_token, ident) = (&func.sig.fn_token, &func.sig.ident);
            return Err(syn::Error::new_spanned(
                quote::quote!(#fn_token #ident),
                "#[scheduled] goes on a #[workflow] or #[transaction]: each tick starts the \
                 function as a workflow, recorded so that it fires once; add #[workflow] \
                 (or #[transaction]) to this function",
            ));
        };
        let mut path = host.path().clone();
        if let Some(last) = path.segments.last_mut() {
            last.ident = Ident::new("scheduled", Span::call_site());
            last.arguments = syn::PathArguments::None;
        }
        let scheduled: Attribute = syn::parse_quote!(#[#path(#cron)]);
        let mut attrs = vec![host, scheduled];
        attrs.extend(rest);
        Ok(Stacked {
            func: ItemFn {
                attrs,
                ..func.clone()
            },
        })
    }
}

/// The function as written, minus any `#[scheduled]`: what an expansion that failed hands back,
/// so the rest of the crate (and the IDE) still sees the function.
pub(crate) fn without_schedule(mut func: ItemFn) -> ItemFn {
    func.attrs
        .retain(|attr| Kind::of_attr(attr) != Some(Kind::Scheduled));
    func
}
