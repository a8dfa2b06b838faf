//! Parse and validate: the user's `fn` and the attribute's options become a typed [`Model`].
//!
//! The model keeps the original `syn` nodes so every error can point at the user's tokens. Each
//! message says what is wrong, why it matters for durable execution, and how to fix it.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, ToTokens};
use syn::spanned::Spanned;
use syn::{
    Attribute, Block, Expr, FnArg, Ident, ItemFn, Lit, LitStr, Meta, Pat, PatType, ReturnType,
    Signature, Type, Visibility,
};

use crate::args::{self, Arg, Args};

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
    pub(crate) fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Workflow => &["name"],
            Kind::Step => &["name", "max_attempts", "interval", "backoff"],
            Kind::Transaction => &["name", "isolation", "read_only"],
            Kind::Scheduled => &[],
        }
    }

    pub(crate) fn keys_hint(self) -> String {
        let keys: Vec<String> = self.keys().iter().map(|key| format!("`{key}`")).collect();
        match keys.as_slice() {
            [] => "a cron string".to_owned(),
            keys => keys.join(", "),
        }
    }

    /// The attribute an attribute path names, matched by its last segment.
    fn of_attr(attr: &Attribute) -> Option<Kind> {
        let last = attr.path().segments.last()?;
        match last.ident.to_string().as_str() {
            "workflow" => Some(Kind::Workflow),
            "step" => Some(Kind::Step),
            "transaction" => Some(Kind::Transaction),
            "scheduled" => Some(Kind::Scheduled),
            _ => None,
        }
    }

    /// Why the function must be an `async fn`.
    fn why_async(self) -> &'static str {
        match self {
            Kind::Workflow => "recovery re-runs it as a future on the runtime",
            Kind::Step => {
                "the runtime awaits it and records its result before the workflow goes on"
            }
            _ => "the runtime awaits it inside the database transaction that records its result",
        }
    }
}

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

/// A caller-visible parameter of the user's function.
pub(crate) struct Param {
    /// The user's `pattern: Type`, as written.
    pub(crate) arg: PatType,
    /// The name of the parameter in the generated wrapper: the user's identifier when the
    /// pattern is a plain binding, a generated `__dbos_argN` otherwise.
    pub(crate) ident: Ident,
}

/// A `#[scheduled("…")]` found among the function's attributes.
pub(crate) struct Schedule {
    pub(crate) cron: LitStr,
}

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

/// Accumulates errors so one expansion reports every misuse at once.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }

    fn push_spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

impl Model {
    /// Reads the options and splits the function; signature rules are checked by [`Model::validated`].
    pub(crate) fn parse(kind: Kind, args: TokenStream, func: &ItemFn) -> syn::Result<Model> {
        debug_assert!(kind != Kind::Scheduled);
        let mut errors = Errors::default();
        let options = match Args::parse(kind, args).and_then(|args| Options::fold(kind, args)) {
            Ok(options) => options,
            Err(err) => {
                errors.push(err);
                Options::default()
            }
        };

        let mut attrs = Vec::new();
        let mut inner_attrs = Vec::new();
        let mut schedule: Option<Schedule> = None;
        for attr in &func.attrs {
            if let syn::AttrStyle::Inner(_) = attr.style {
                inner_attrs.push(attr.clone());
                continue;
            }
            match Kind::of_attr(attr) {
                None => attrs.push(attr.clone()),
                Some(Kind::Scheduled) if kind == Kind::Step => errors.push_spanned(
                    attr,
                    "#[scheduled] goes on a #[workflow] or #[transaction], not on a #[step]: \
                     each tick of a schedule starts a workflow, and a step only runs inside one",
                ),
                Some(Kind::Scheduled) if schedule.is_some() => errors.push_spanned(
                    attr,
                    "a second #[scheduled] on the same function: a function has one schedule \
                     (its ticks are deduplicated by function name and time); remove one",
                ),
                Some(Kind::Scheduled) => match parse_schedule(attr) {
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
        errors.finish()?;

        let output = match &func.sig.output {
            ReturnType::Type(_, ty) => ty.clone(),
            // Reported by `validated`, with the other signature rules.
            ReturnType::Default => Box::new(syn::parse_quote!(())),
        };
        Ok(Model {
            kind,
            attrs,
            inner_attrs,
            vis: func.vis.clone(),
            sig: func.sig.clone(),
            block: func.block.clone(),
            name: options.name,
            tx: None,
            params: Vec::new(),
            output,
            step: options.step,
            tx_options: options.tx,
            schedule,
        })
    }

    /// Checks the signature against what durable execution needs and fills in the parameters.
    pub(crate) fn validated(mut self) -> syn::Result<Model> {
        let kind = self.kind;
        let attr = kind.attr();
        let sig = &self.sig;
        let mut errors = Errors::default();

        if sig.asyncness.is_none() {
            errors.push_spanned(
                sig.fn_token,
                format_args!(
                    "{attr} needs an `async fn`: {}; write `async fn`",
                    kind.why_async()
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
                    self.tx = Some(first.clone());
                    inputs.next();
                }
                // A `self` receiver is reported below.
                Some(FnArg::Receiver(_)) => {}
                Some(FnArg::Typed(first)) => {
                    // Is `&mut Tx` further down? Then the fix is to move it.
                    let later_tx =
                        sig.inputs.iter().skip(1).any(
                            |arg| matches!(arg, FnArg::Typed(arg) if is_mut_ref_to_path(&arg.ty)),
                        );
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
            check_param_type(kind, &self.step, &arg.ty, &mut errors);
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

        if self.schedule.is_some() && params.len() != 2 {
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

        errors.finish()?;
        self.params = params;
        Ok(self)
    }

    /// Whether `ty` names no generic parameter, `Self` or `impl Trait`: only such a type can
    /// be named in a trait-bound assertion with a `'static` bound.
    pub(crate) fn is_concrete(&self, ty: &Type) -> bool {
        let generic = generic_type_names(&self.sig);
        !mentions(ty.to_token_stream(), &|ident| {
            ident == "impl" || ident == "Self" || generic.iter().any(|name| ident == name)
        })
    }
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

fn parse_schedule(attr: &Attribute) -> syn::Result<Schedule> {
    let tokens = match &attr.meta {
        Meta::List(list) => list.tokens.clone(),
        _ => TokenStream::new(),
    };
    let cron = args::parse_cron(tokens, attr.span())?;
    validate_cron(&cron)?;
    Ok(Schedule { cron })
}

/// Checks a cron string with the same parser the runtime's scheduler uses.
pub(crate) fn validate_cron(lit: &LitStr) -> syn::Result<()> {
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

/// The options of an attribute, checked and converted.
#[derive(Default)]
struct Options {
    name: Option<LitStr>,
    step: StepOptions,
    tx: TxOptions,
}

impl Options {
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
pub(crate) fn parse_duration(text: &str) -> Option<f64> {
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
                (Some(Kind::Step), _) => errors.push_spanned(
                    attr,
                    "#[scheduled] goes on a #[workflow] or #[transaction], not on a #[step]: each \
                     tick of a schedule starts a workflow, and a step only runs inside one",
                ),
                (Some(Kind::Scheduled), _) => errors.push_spanned(
                    attr,
                    "a second #[scheduled] on the same function: a function has one schedule \
                     (its ticks are deduplicated by function name and time); remove one",
                ),
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
