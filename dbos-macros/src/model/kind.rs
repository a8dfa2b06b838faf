//! [`Kind`]: which attribute is being expanded, its name in messages, the option keys it
//! accepts, and how to recognise it among a function's attributes.

use syn::Attribute;

/// Which attribute is being expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Workflow,
    Step,
    Transaction,
    Scheduled,
}

impl Kind {
    pub(crate) fn attr(self) -> &'static str {
        match self {
            Kind::Workflow => "#[workflow]",
            Kind::Step => "#[step]",
            Kind::Transaction => "#[transaction]",
            Kind::Scheduled => "#[scheduled]",
        }
    }

    /// The option keys this attribute accepts.
    pub(super) fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Workflow => &["name", "serialization"],
            Kind::Step => &[
                "name",
                "max_attempts",
                "interval",
                "backoff",
                "serialization",
            ],
            Kind::Transaction => &["name", "isolation", "read_only", "serialization"],
            Kind::Scheduled => &[],
        }
    }

    /// The attribute an attribute path names, matched by its last segment.
    pub(super) fn of_attr(attr: &Attribute) -> Option<Kind> {
        let last = attr.path().segments.last()?;
        match last.ident.to_string().as_str() {
            "workflow" => Some(Kind::Workflow),
            "step" => Some(Kind::Step),
            "transaction" => Some(Kind::Transaction),
            "scheduled" => Some(Kind::Scheduled),
            _ => None,
        }
    }
}
