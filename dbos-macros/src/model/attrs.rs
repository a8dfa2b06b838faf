//! The function's own attributes: the user's outer and inner attributes, kept for the
//! expansion, and ours: the `#[scheduled]` a stacked expansion left, and any second
//! `#[workflow]`, `#[step]` or `#[transaction]`, which is refused.

use syn::Attribute;

use super::errors::Errors;
use super::kind::Kind;
use super::schedule::{self, Schedule};

/// The function's attributes, sorted.
pub(super) struct Attrs {
    /// Outer attributes and doc comments, minus `#[scheduled]`.
    pub(super) outer: Vec<Attribute>,
    /// `#![…]` attributes inside the body.
    pub(super) inner: Vec<Attribute>,
    pub(super) schedule: Option<Schedule>,
}

impl Attrs {
    /// Sorts the attributes of a `kind` function; each misuse is pushed onto `errors`.
    pub(super) fn split(kind: Kind, attrs: &[Attribute], errors: &mut Errors) -> Attrs {
        let mut outer = Vec::new();
        let mut inner = Vec::new();
        let mut schedule: Option<Schedule> = None;
        for attr in attrs {
            if let syn::AttrStyle::Inner(_) = attr.style {
                inner.push(attr.clone());
                continue;
            }
            match Kind::of_attr(attr) {
                None => outer.push(attr.clone()),
                Some(Kind::Scheduled) if kind == Kind::Step => {
                    errors.push_spanned(attr, schedule::ON_A_STEP)
                }
                Some(Kind::Scheduled) if schedule.is_some() => {
                    errors.push_spanned(attr, schedule::TWICE)
                }
                Some(Kind::Scheduled) => match Schedule::from_attr(attr) {
                    Ok(found) => schedule = Some(found),
                    Err(err) => errors.push(err),
                },
                Some(other) => errors.push_spanned(
                    attr,
                    format_args!(
                        "{} can't be combined with {}: a function is exactly one of #[workflow], \
                         #[step] or #[transaction], since each records its runs differently; \
                         remove one of them",
                        other.attr(),
                        kind.attr()
                    ),
                ),
            }
        }
        Attrs {
            outer,
            inner,
            schedule,
        }
    }
}
