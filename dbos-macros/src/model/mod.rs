//! Parse and validate: the user's `fn` and the attribute's options become a typed [`Model`].
//!
//! The model keeps the original `syn` nodes so every error can point at the user's tokens. Each
//! message says what is wrong, why it matters for durable execution, and how to fix it. This
//! file assembles the model; each rule lives with its concept:
//!
//! - `kind`: which attribute, and the option keys it accepts;
//! - `options`: the options, checked and converted;
//! - `attrs`: the function's attributes, ours and the user's;
//! - `signature`: what the function's signature must be, and its parameters;
//! - `schedule`: `#[scheduled]`, its cron string and where it may stack;
//! - `determinism`: calls a workflow body must not make (clock, randomness, spawns, ...);
//! - `errors`: collecting every misuse of one expansion.

mod attrs;
mod determinism;
mod errors;
mod kind;
mod options;
mod schedule;
mod signature;

use proc_macro2::TokenStream;
use syn::{Attribute, Block, ItemFn, LitStr, PatType, ReturnType, Signature, Type, Visibility};

use self::attrs::Attrs;
use self::errors::Errors;
use self::options::Options;
use self::signature::Params;

pub(crate) use self::determinism::strip as strip_markers;
pub(crate) use self::kind::Kind;
pub(crate) use self::options::{Isolation, Serialization, StepOptions, TxOptions};
pub(crate) use self::schedule::{without_schedule, Schedule, Stacked};
pub(crate) use self::signature::Param;

/// A validated `#[workflow]`, `#[step]` or `#[transaction]` function.
pub(crate) struct Model {
    pub(crate) kind: Kind,
    /// Outer attributes and doc comments, minus `#[scheduled]`.
    pub(crate) attrs: Vec<Attribute>,
    /// `#![…]` attributes inside the body; they stay with the body.
    pub(crate) inner_attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    pub(crate) block: Box<Block>,
    pub(crate) name: Option<LitStr>,
    /// `serialization = "…"`.
    pub(crate) serialization: Serialization,
    /// The `tx: &mut Tx` parameter of a transaction.
    pub(crate) tx: Option<PatType>,
    /// Parameters the caller passes (all of them, except a transaction's `tx`).
    pub(crate) params: Vec<Param>,
    /// `R` in `-> R`.
    pub(crate) output: Box<Type>,
    pub(crate) step: StepOptions,
    pub(crate) tx_options: TxOptions,
    pub(crate) schedule: Option<Schedule>,
}

impl Model {
    /// Reads the options and splits the function; signature rules are checked by [`Model::validated`].
    pub(crate) fn parse(kind: Kind, args: TokenStream, func: &ItemFn) -> syn::Result<Model> {
        debug_assert!(kind != Kind::Scheduled);
        let mut errors = Errors::default();
        let options = match Options::parse(kind, args) {
            Ok(options) => options,
            Err(err) => {
                errors.push(err);
                Options::default()
            }
        };
        let attrs = Attrs::split(kind, &func.attrs, &mut errors);
        errors.finish()?;

        let output = match &func.sig.output {
            ReturnType::Type(_, ty) => ty.clone(),
            // Reported by `validated`, with the other signature rules.
            ReturnType::Default => Box::new(syn::parse_quote!(())),
        };
        Ok(Model {
            kind,
            attrs: attrs.outer,
            inner_attrs: attrs.inner,
            vis: func.vis.clone(),
            sig: func.sig.clone(),
            block: func.block.clone(),
            name: options.name,
            serialization: options.serialization,
            tx: None,
            params: Vec::new(),
            output,
            step: options.step,
            tx_options: options.tx,
            schedule: attrs.schedule,
        })
    }

    /// Checks the signature against what durable execution needs and fills in the parameters.
    pub(crate) fn validated(mut self) -> syn::Result<Model> {
        let mut errors = Errors::default();
        let Params { tx, params } = signature::check(self.kind, &self.sig, &self.step, &mut errors);
        if self.schedule.is_some() {
            schedule::check_params(self.kind, &self.sig, &params, &mut errors);
        }
        if matches!(self.kind, Kind::Workflow | Kind::Scheduled) {
            determinism::check(&self.sig, &mut self.block, &mut errors);
            // Markers the check did not reach (on a match arm, say) go too.
            determinism::strip(&mut self.block);
        } else {
            // Steps may do anything: a marker there is harmless, and removed.
            determinism::strip(&mut self.block);
        }
        errors.finish()?;
        self.tx = tx;
        self.params = params;
        Ok(self)
    }

    /// Whether `ty` names no generic parameter, `Self` or `impl Trait`: only such a type can
    /// be named in a trait-bound assertion with a `'static` bound.
    pub(crate) fn is_concrete(&self, ty: &Type) -> bool {
        signature::is_concrete(&self.sig, ty)
    }
}
