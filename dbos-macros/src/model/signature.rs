//! The function's signature: what durable execution needs from it (an `async fn` that returns
//! a `Result`, no `self`, owned arguments where the body may run again, a transaction's
//! `tx: &mut Tx` first), and the caller-visible parameters it leaves.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, Pat, PatType, ReturnType, Signature, Type};

use super::errors::Errors;
use super::kind::Kind;
use super::options::StepOptions;

/// A caller-visible parameter of the user's function.
pub(crate) struct Param {
    /// The user's `pattern: Type`, as written.
    pub(crate) arg: PatType,
    /// The name of the parameter in the generated wrapper: the user's identifier when the
    /// pattern is a plain binding, a generated `__dbos_argN` otherwise.
    pub(crate) ident: Ident,
}

/// The parameters of a signature that passed [`check`].
pub(super) struct Params {
    /// The `tx: &mut Tx` parameter of a transaction.
    pub(super) tx: Option<PatType>,
    /// Parameters the caller passes (all of them, except a transaction's `tx`).
    pub(super) params: Vec<Param>,
}

/// Why the function must be an `async fn`.
fn why_async(kind: Kind) -> &'static str {
    match kind {
        Kind::Workflow => "recovery re-runs it as a future on the runtime",
        Kind::Step => "the runtime awaits it and records its result before the workflow goes on",
        _ => "the runtime awaits it inside the database transaction that records its result",
    }
}

/// Checks the signature of a `kind` function against what durable execution needs, pushing
/// each misuse onto `errors`, and splits off its parameters.
pub(super) fn check(
    kind: Kind,
    sig: &Signature,
    step: &StepOptions,
    errors: &mut Errors,
) -> Params {
    let attr = kind.attr();
    let mut tx = None;

    if sig.asyncness.is_none() {
        errors.push_spanned(
            sig.fn_token,
            format_args!(
                "{attr} needs an `async fn`: {}; write `async fn`",
                why_async(kind)
            ),
        );
    }
    if let Some(constness) = &sig.constness {
        errors.push_spanned(
            constness,
            format_args!("{attr} can't be a `const fn`; remove `const`"),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push_spanned(
            unsafety,
            format_args!(
                "{attr} can't be an `unsafe fn`: the runtime calls it on recovery without \
                 your safety argument; move the unsafe code into an `unsafe` block inside it"
            ),
        );
    }
    if let Some(abi) = &sig.abi {
        errors.push_spanned(
            abi,
            format_args!("{attr} can't have an `extern` ABI; remove it"),
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.push_spanned(variadic, format_args!("{attr} can't be variadic"));
    }
    if kind == Kind::Workflow
        && (!sig.generics.params.is_empty() || sig.generics.where_clause.is_some())
    {
        errors.push_spanned(
            &sig.generics,
            "#[workflow] can't be generic: recovery rebuilds the arguments from their stored \
             JSON and calls one concrete function; use concrete argument and result types",
        );
    }
    if let ReturnType::Default = sig.output {
        errors.push_spanned(
            &sig.ident,
            format_args!(
                "{attr} must return `Result<T, E>`: the runtime records the result, an \
                 error included, and replays it after a crash; add `-> Result<T, E>`"
            ),
        );
    }

    let mut inputs = sig.inputs.iter().peekable();
    if kind == Kind::Transaction {
        match inputs.peek() {
            None => errors.push(syn::Error::new(
                sig.paren_token.span.join(),
                "#[transaction] needs `tx: &mut Tx` as its first parameter; the runtime \
                 opens the transaction and passes it, and callers leave it out",
            )),
            Some(FnArg::Typed(first)) if is_mut_ref_to_path(&first.ty) => {
                tx = Some(first.clone());
                inputs.next();
            }
            // A `self` receiver is reported below.
            Some(FnArg::Receiver(_)) => {}
            Some(FnArg::Typed(first)) => {
                // Is `&mut Tx` further down? Then the fix is to move it.
                let later_tx = sig
                    .inputs
                    .iter()
                    .skip(1)
                    .any(|arg| matches!(arg, FnArg::Typed(arg) if is_mut_ref_to_path(&arg.ty)));
                if names_tx(&first.ty) {
                    errors.push_spanned(
                        &first.ty,
                        "the transaction parameter must be `&mut Tx`: the runtime keeps the \
                         transaction, lends it to the body, and commits it together with the \
                         recorded result once the body returns; write `tx: &mut Tx`",
                    );
                    inputs.next();
                } else if !later_tx {
                    errors.push_spanned(
                        first,
                        "#[transaction] needs `tx: &mut Tx` as its first parameter; the \
                         runtime opens the transaction and passes it, and callers leave it out",
                    );
                    inputs.next();
                }
            }
        }
    }

    let mut params = Vec::new();
    for (index, arg) in inputs.enumerate() {
        let arg = match arg {
            FnArg::Receiver(receiver) => {
                errors.push_spanned(
                    receiver,
                    format_args!(
                        "{attr} can't take `self`: {}; make it a free function and pass what \
                         it needs as arguments",
                        match kind {
                            Kind::Workflow =>
                                "recovery calls it by name with arguments read \
                                               back from the database, and there is no `self` \
                                               to call it on",
                            _ => "the runtime runs its body as a standalone future",
                        }
                    ),
                );
                continue;
            }
            FnArg::Typed(arg) => arg,
        };
        if kind == Kind::Transaction && is_mut_ref_to_path(&arg.ty) {
            errors.push_spanned(
                arg,
                "`tx: &mut Tx` must be the first parameter of a #[transaction]; the runtime \
                 passes the transaction there and callers leave it out",
            );
            continue;
        }
        check_param_type(kind, step, &arg.ty, errors);
        let ident = match &*arg.pat {
            // `_name` says "unused", but the wrapper uses it: give it a generated name.
            Pat::Ident(pat)
                if pat.by_ref.is_none()
                    && pat.subpat.is_none()
                    && !pat.ident.to_string().starts_with('_') =>
            {
                pat.ident.clone()
            }
            _ => format_ident!(
                "__dbos_arg{}",
                index,
                span = Span::mixed_site().located_at(arg.pat.span())
            ),
        };
        params.push(Param {
            arg: arg.clone(),
            ident,
        });
    }
    Params { tx, params }
}

/// Whether `ty` names no generic parameter of `sig`, `Self` or `impl Trait`: only such a type
/// can be named in a trait-bound assertion with a `'static` bound.
pub(super) fn is_concrete(sig: &Signature, ty: &Type) -> bool {
    let generic = generic_type_names(sig);
    !mentions(ty.to_token_stream(), &|ident| {
        ident == "impl" || ident == "Self" || generic.iter().any(|name| ident == name)
    })
}

/// Checks one caller-visible parameter type: what recovery or a retry needs from it.
fn check_param_type(kind: Kind, step: &StepOptions, ty: &Type, errors: &mut Errors) {
    let is_ref = matches!(strip_groups(ty), Type::Reference(_));
    match kind {
        Kind::Workflow if is_ref => errors.push_spanned(
            ty,
            "#[workflow] arguments must be owned: recovery rebuilds them from their stored JSON, \
             so a borrowed `&T` would have nothing to point to; take `T` (e.g. `String` for `&str`)",
        ),
        Kind::Workflow if mentions(ty.to_token_stream(), &|ident| ident == "impl") => errors
            .push_spanned(
                ty,
                "#[workflow] arguments need concrete types: recovery decodes them from stored \
                 JSON and must know which type to build; replace `impl Trait` with a type",
            ),
        Kind::Step if is_ref && step.retries() => errors.push_spanned(
            ty,
            "a #[step] with `max_attempts` > 1 re-runs its body with a fresh clone of each \
             argument, so arguments must be owned; take `T` instead of `&T` (e.g. `String` for \
             `&str`)",
        ),
        Kind::Transaction if is_ref => errors.push_spanned(
            ty,
            "#[transaction] arguments must be owned: the runtime may run the body more than once \
             (it retries serialization failures) and passes a fresh clone of each argument; \
             take `T` instead of `&T`",
        ),
        _ => {}
    }
}

fn strip_groups(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => strip_groups(&group.elem),
        Type::Paren(paren) => strip_groups(&paren.elem),
        ty => ty,
    }
}

/// `&mut Path`: the syntactic shape of `tx: &mut Tx`; rustc checks that the path is `Tx`.
fn is_mut_ref_to_path(ty: &Type) -> bool {
    match strip_groups(ty) {
        Type::Reference(reference) => {
            reference.mutability.is_some() && matches!(strip_groups(&reference.elem), Type::Path(_))
        }
        _ => false,
    }
}

/// `Tx`, `&Tx`, `Box<Tx>`…: a type that mentions `Tx` but is not `&mut Tx`.
fn names_tx(ty: &Type) -> bool {
    mentions(ty.to_token_stream(), &|ident| ident == "Tx")
}

fn generic_type_names(sig: &Signature) -> Vec<Ident> {
    sig.generics
        .type_params()
        .map(|param| param.ident.clone())
        .collect()
}

/// Whether any identifier (or keyword) in `tokens` satisfies `hit`.
fn mentions(tokens: TokenStream, hit: &dyn Fn(&Ident) -> bool) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => hit(&ident),
        TokenTree::Group(group) => mentions(group.stream(), hit),
        _ => false,
    })
}
