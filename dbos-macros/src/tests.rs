//! Expansion tests on `proc_macro2` output: invariants every expansion keeps, option parsing,
//! error placement, and `.expanded.rs` snapshots under `tests/expand/`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::str::FromStr;

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use quote::quote;

use crate::expand::durable;
use crate::model::{Isolation, Kind, Model, StepOptions, TxOptions};

fn pretty(tokens: &TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens.clone())
        .unwrap_or_else(|err| panic!("expansion is not a file: {err}\n{tokens}"));
    prettyplease::unparse(&file)
}

/// The validated model, or every error message.
fn model(kind: Kind, args: TokenStream, item: TokenStream) -> Result<Model, Vec<String>> {
    let func: syn::ItemFn = syn::parse2(item).expect("test input is a fn");
    Model::parse(kind, args, &func)
        .and_then(Model::validated)
        .map_err(|err| err.into_iter().map(|err| err.to_string()).collect())
}

fn errors(kind: Kind, args: TokenStream, item: TokenStream) -> Vec<String> {
    match model(kind, args, item) {
        Ok(_) => panic!("expected an error"),
        Err(errors) => errors,
    }
}

/// Asserts exactly one error, containing every one of `needles`.
fn assert_error(kind: Kind, args: TokenStream, item: TokenStream, needles: &[&str]) {
    let errors = errors(kind, args, item);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    for needle in needles {
        assert!(
            errors[0].contains(needle),
            "error {:?} lacks {needle:?}",
            errors[0]
        );
    }
}

/// Where (line, column) an expansion from source text reports its first error.
fn error_at(kind: Kind, args: &str, item: &str) -> (usize, usize) {
    let args = TokenStream::from_str(args).unwrap();
    let item = TokenStream::from_str(item).unwrap();
    let func: syn::ItemFn = syn::parse2(item).unwrap();
    let err = match Model::parse(kind, args, &func).and_then(Model::validated) {
        Ok(_) => panic!("expected an error"),
        Err(err) => err,
    };
    let start = err.span().start();
    (start.line, start.column)
}

/// One input of every kind, each with a marker in its body.
fn cases() -> Vec<(&'static str, Kind, TokenStream, TokenStream)> {
    vec![
        (
            "workflow",
            Kind::Workflow,
            quote!(),
            quote! {
                /// Docs stay.
                pub async fn checkout(order: Order, (x, y): (u32, u32), mut note: Note) -> Res<Receipt> {
                    let marker = "BODY-MARKER";
                    note.push(marker);
                    place(order, x + y, note).await
                }
            },
        ),
        (
            "step",
            Kind::Step,
            quote!(name = "charge"),
            quote! {
                async fn charge(card: &Card, cents: Cents) -> Res<Payment> {
                    let marker = "BODY-MARKER";
                    pay(card, cents, marker).await
                }
            },
        ),
        (
            "step_with_retries",
            Kind::Step,
            quote!(max_attempts = 3, interval = "500ms", backoff = 1.5),
            quote! {
                pub(crate) async fn fetch(url: Url, mut attempt: Attempt) -> Res<Page> {
                    #![allow(unused_mut)]
                    let marker = "BODY-MARKER";
                    get(url, attempt, marker).await
                }
            },
        ),
        (
            "transaction",
            Kind::Transaction,
            quote!(isolation = "serializable", read_only),
            quote! {
                pub async fn reserve(tx: &mut Tx, product: Product) -> Res<Reserved> {
                    let marker = "BODY-MARKER";
                    take(tx, product, marker).await
                }
            },
        ),
        (
            "workflow_bincode",
            Kind::Workflow,
            quote!(serialization = "bincode"),
            quote! {
                async fn ingest(batch: Batch) -> Res<Summary> {
                    let marker = "BODY-MARKER";
                    summarize(batch, marker).await
                }
            },
        ),
        (
            "scheduled_workflow",
            Kind::Workflow,
            quote!(name = "nightly"),
            quote! {
                #[scheduled("0 0 3 * * *")]
                async fn nightly(scheduled: Time, actual: Time) -> Res<Done> {
                    let marker = "BODY-MARKER";
                    report(scheduled, actual, marker).await
                }
            },
        ),
        (
            "scheduled_transaction",
            Kind::Transaction,
            quote!(),
            quote! {
                #[scheduled("*/10 * * * * *")]
                async fn progress(tx: &mut Tx, scheduled: Time, actual: Time) -> Res<Done> {
                    let marker = "BODY-MARKER";
                    advance(tx, scheduled, actual, marker).await
                }
            },
        ),
    ]
}

#[test]
fn the_user_body_appears_once_in_every_expansion() {
    for (case, kind, args, item) in cases() {
        let expansion = durable(kind, args, item).to_string();
        assert!(!expansion.contains("compile_error"), "{case}: {expansion}");
        assert_eq!(
            expansion.matches("BODY-MARKER").count(),
            1,
            "{case}: {expansion}"
        );
    }
}

/// Idents of everything in `tokens`, for telling the user's names from generated ones.
fn idents(tokens: TokenStream, into: &mut BTreeSet<String>) {
    for tree in tokens {
        match tree {
            TokenTree::Ident(ident) => {
                into.insert(ident.to_string());
            }
            TokenTree::Group(group) => idents(group.stream(), into),
            _ => {}
        }
    }
}

/// Flattened tokens: identifiers, punctuation (`::` as one token) and group delimiters.
fn flatten(tokens: TokenStream, into: &mut Vec<String>) {
    let mut tokens = tokens.into_iter().peekable();
    while let Some(tree) = tokens.next() {
        match tree {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                into.push(open.to_owned());
                flatten(group.stream(), into);
                into.push(close.to_owned());
            }
            TokenTree::Punct(punct)
                if punct.as_char() == ':'
                    && punct.spacing() == Spacing::Joint
                    && matches!(tokens.peek(), Some(TokenTree::Punct(next)) if next.as_char() == ':') =>
            {
                tokens.next();
                into.push("::".to_owned());
            }
            TokenTree::Punct(punct) => into.push(punct.as_char().to_string()),
            other => into.push(other.to_string()),
        }
    }
}

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "const", "fn", "for", "let", "move", "mut", "pub", "true", "false",
    "dyn",
];
/// Methods and struct fields the expansion names on `__private` types.
const MEMBERS: &[&str] = &[
    "push",
    "next",
    "finish",
    "max_attempts",
    "interval_secs",
    "backoff",
    "isolation",
    "read_only",
    "format",
];
const PUBLIC: &[&str] = &["WorkflowCall", "Tx", "Error", "WorkflowError"];

/// Paths and bare names the expansion introduces that are not allowed: anything but
/// `::dbos_runtime::__private::…`, the public `::dbos_runtime` items, `::core::…`, `::std::…`,
/// `__dbos_…` locals and the user's own names.
fn foreign_names(input: &TokenStream, expansion: &TokenStream) -> Vec<String> {
    let mut user = BTreeSet::new();
    idents(input.clone(), &mut user);
    let mut tokens = Vec::new();
    flatten(expansion.clone(), &mut tokens);
    let is_ident = |token: &str| {
        token.starts_with(|c: char| c == '_' || c.is_alphabetic())
            && token.chars().all(|c| c == '_' || c.is_alphanumeric())
    };
    let mut foreign = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        let token = &tokens[index];
        if token == "::" {
            let previous = index.checked_sub(1).map(|i| tokens[i].as_str());
            // `<T as Trait>::Ok` continues a qualified path; anything else starts an absolute one.
            let leading = !previous
                .is_some_and(|prev| prev == ">" || (is_ident(prev) && !KEYWORDS.contains(&prev)));
            let mut segments = Vec::new();
            let mut at = index;
            while tokens.get(at).is_some_and(|t| t == "::")
                && tokens.get(at + 1).is_some_and(|t| is_ident(t))
            {
                segments.push(tokens[at + 1].clone());
                at += 2;
            }
            if leading {
                let allowed = match segments.as_slice() {
                    [root, ..] if root == "core" || root == "std" => true,
                    [root, second, ..] if root == "dbos_runtime" => {
                        second == "__private" || PUBLIC.contains(&second.as_str())
                    }
                    _ => false,
                };
                if !allowed {
                    foreign.push(format!("::{}", segments.join("::")));
                }
            }
            index = at.max(index + 1);
            continue;
        }
        if is_ident(token) {
            let after_dot = index > 0 && tokens[index - 1] == ".";
            let starts_path = tokens.get(index + 1).is_some_and(|t| t == "::");
            let known = user.contains(token)
                || token.starts_with("__dbos_")
                || KEYWORDS.contains(&token.as_str())
                || MEMBERS.contains(&token.as_str())
                || token == "_";
            let keyword = KEYWORDS.contains(&token.as_str());
            if (!known && !after_dot) || (starts_path && !keyword && !user.contains(token)) {
                foreign.push(token.clone());
            }
        }
        index += 1;
    }
    foreign
}

#[test]
fn expansions_name_only_private_public_core_and_std_paths() {
    for (case, kind, args, item) in cases() {
        let expansion = durable(kind, args.clone(), item.clone());
        let mut input = args;
        input.extend(item);
        let foreign = foreign_names(&input, &expansion);
        assert!(
            foreign.is_empty(),
            "{case} names {foreign:?}:\n{}",
            pretty(&expansion)
        );
    }
}

#[test]
fn the_path_check_catches_stray_names() {
    let input = quote!(
        async fn f(a: A) -> Res<B> {}
    );
    let expansion = quote! {
        fn f(a: A) -> ::dbos_runtime::__private::X<Res<B>> {
            let x: Option<A> = ::serde_json::from_str(a);
            <Res<B> as ::dbos_runtime::__private::IsResult>::Ok::new()
        }
    };
    let foreign = foreign_names(&input, &expansion);
    assert_eq!(foreign, ["x", "Option", "::serde_json::from_str"]);
}

#[test]
fn step_options_default_to_one_attempt() {
    let model = model(
        Kind::Step,
        quote!(),
        quote!(
            async fn s() -> Res<()> {}
        ),
    )
    .unwrap();
    assert_eq!(
        model.step,
        StepOptions {
            max_attempts: 1,
            interval_secs: 1.0,
            backoff: 2.0
        }
    );
    assert!(!model.step.retries());
    assert!(model.name.is_none());
}

#[test]
fn step_options_are_read() {
    let args = quote!(
        name = "s",
        max_attempts = 4,
        interval = "250ms",
        backoff = 3
    );
    let model = model(
        Kind::Step,
        args,
        quote!(
            async fn s(a: A) -> Res<()> {}
        ),
    )
    .unwrap();
    assert_eq!(
        model.step,
        StepOptions {
            max_attempts: 4,
            interval_secs: 0.25,
            backoff: 3.0
        }
    );
    assert_eq!(model.name.unwrap().value(), "s");
}

#[test]
fn bad_step_values_are_errors() {
    let item = || {
        quote!(
            async fn s(a: A) -> Res<()> {}
        )
    };
    let attempts = "`max_attempts` must be an integer literal ≥ 1";
    for args in [
        quote!(max_attempts = 0),
        quote!(max_attempts = "3"),
        quote!(max_attempts = 1.5),
        quote!(max_attempts = -1),
        quote!(max_attempts = 99999999999),
        quote!(max_attempts = N),
    ] {
        assert_error(Kind::Step, args, item(), &[attempts]);
    }
    let backoff = "`backoff` must be a number ≥ 1.0";
    for value in [quote!(0.5), quote!("2"), quote!(-2.0), quote!(0)] {
        assert_error(
            Kind::Step,
            quote!(max_attempts = 2, backoff = #value),
            item(),
            &[backoff],
        );
    }
    let interval = "`interval` must be a duration string greater than zero";
    for value in [quote!(5), quote!("5x"), quote!("0s")] {
        assert_error(
            Kind::Step,
            quote!(max_attempts = 2, interval = #value),
            item(),
            &[interval],
        );
    }
    assert_error(
        Kind::Step,
        quote!(interval = "2s"),
        item(),
        &[
            "`interval` tunes the wait between retries",
            "add `max_attempts = N`",
        ],
    );
    assert_error(
        Kind::Step,
        quote!(name = ""),
        item(),
        &["`name` must not be empty"],
    );
    assert_error(
        Kind::Step,
        quote!(name = checkout),
        item(),
        &["`name` must be a string literal"],
    );
}

#[test]
fn unknown_options_list_the_valid_ones() {
    let item = || {
        quote!(
            async fn w() -> Res<()> {}
        )
    };
    assert_error(
        Kind::Workflow,
        quote!(retries = 3),
        item(),
        &["unknown option `retries` for #[workflow]; valid options: `name`"],
    );
    assert_error(
        Kind::Workflow,
        quote!(max_attempts = 3),
        item(),
        &["unknown option `max_attempts` for #[workflow]"],
    );
    assert_error(
        Kind::Step,
        quote!(isolation = "serializable"),
        item(),
        &["valid options: `name`, `max_attempts`, `interval`, `backoff`"],
    );
    assert_error(
        Kind::Workflow,
        quote!("x"),
        item(),
        &["expected an option of #[workflow]: `name`"],
    );
}

#[test]
fn a_repeated_option_is_reported_at_its_second_occurrence() {
    let at = error_at(
        Kind::Workflow,
        r#"name = "a", name = "b""#,
        "async fn w() -> Res<()> {}",
    );
    assert_eq!(at, (1, 12));
    let errors = errors(
        Kind::Workflow,
        quote!(name = "a", name = "b"),
        quote!(
            async fn w() -> R {}
        ),
    );
    assert_eq!(errors, ["`name` is given twice in #[workflow]; keep one"]);
}

#[test]
fn transaction_options_are_read() {
    let item = || {
        quote!(
            async fn t(tx: &mut Tx) -> Res<()> {}
        )
    };
    let tx = |args| model(Kind::Transaction, args, item()).unwrap().tx_options;
    assert_eq!(
        tx(quote!()),
        TxOptions {
            isolation: None,
            read_only: false
        }
    );
    assert_eq!(
        tx(quote!(isolation = "repeatable_read", read_only)),
        TxOptions {
            isolation: Some(Isolation::RepeatableRead),
            read_only: true
        }
    );
    assert_eq!(
        tx(quote!(read_only = false, isolation = "read_committed")).isolation,
        Some(Isolation::ReadCommitted)
    );
    assert_error(
        Kind::Transaction,
        quote!(isolation = "snapshot"),
        item(),
        &[
            "unknown isolation level \"snapshot\"",
            "\"serializable\", \"repeatable_read\"",
        ],
    );
    assert_error(
        Kind::Transaction,
        quote!(read_only = 1),
        item(),
        &["`read_only` is a flag"],
    );
}

#[test]
fn transactions_need_tx_first() {
    let needs = "#[transaction] needs `tx: &mut Tx` as its first parameter";
    assert_error(
        Kind::Transaction,
        quote!(),
        quote!(
            async fn t() -> R {}
        ),
        &[needs],
    );
    assert_error(
        Kind::Transaction,
        quote!(),
        quote!(
            async fn t(id: i64) -> R {}
        ),
        &[needs],
    );
    assert_error(
        Kind::Transaction,
        quote!(),
        quote!(
            async fn t(id: &str) -> R {}
        ),
        &[needs],
    );
    let by_ref = "the transaction parameter must be `&mut Tx`";
    assert_error(
        Kind::Transaction,
        quote!(),
        quote!(
            async fn t(tx: &Tx) -> R {}
        ),
        &[by_ref],
    );
    assert_error(
        Kind::Transaction,
        quote!(),
        quote!(
            async fn t(tx: Tx, a: A) -> R {}
        ),
        &[by_ref],
    );
    assert_error(
        Kind::Transaction,
        quote!(),
        quote!(
            async fn t(id: i64, tx: &mut Tx) -> R {}
        ),
        &["`tx: &mut Tx` must be the first parameter of a #[transaction]"],
    );
    assert_eq!(
        error_at(
            Kind::Transaction,
            "",
            "async fn t(id: i64, tx: &mut Tx) -> R {}"
        ),
        (1, 20)
    );
    assert_eq!(
        error_at(Kind::Transaction, "", "async fn t() -> R {}"),
        (1, 10)
    );
    assert_error(
        Kind::Transaction,
        quote!(),
        quote!(
            async fn t(tx: &mut Tx, ids: &[i64]) -> R {}
        ),
        &["#[transaction] arguments must be owned"],
    );
    let model = model(
        Kind::Transaction,
        quote!(),
        quote!(
            async fn t(tx: &mut Tx, a: A) -> R {}
        ),
    );
    let model = model.unwrap();
    assert!(model.tx.is_some());
    assert_eq!(model.params.len(), 1);
}

#[test]
fn workflows_refuse_what_recovery_cannot_rebuild() {
    assert_error(
        Kind::Workflow,
        quote!(),
        quote!(
            fn w() -> R {}
        ),
        &["#[workflow] needs an `async fn`: recovery re-runs it"],
    );
    assert_eq!(error_at(Kind::Workflow, "", "pub fn w() -> R {}"), (1, 4));
    assert_error(
        Kind::Workflow,
        quote!(),
        quote!(
            async fn w(&self) -> R {}
        ),
        &["can't take `self`"],
    );
    assert_error(
        Kind::Workflow,
        quote!(),
        quote!(
            async fn w<T>(t: T) -> R {}
        ),
        &["can't be generic"],
    );
    assert_error(
        Kind::Workflow,
        quote!(),
        quote!(
            async fn w(s: &str) -> R {}
        ),
        &["must be owned"],
    );
    assert_error(
        Kind::Workflow,
        quote!(),
        quote!(
            async fn w(s: Vec<impl Display>) -> R {}
        ),
        &["replace `impl Trait` with a type"],
    );
    assert_error(
        Kind::Workflow,
        quote!(),
        quote!(
            async fn w() {}
        ),
        &["must return `Result<T, E>`"],
    );
    assert_error(
        Kind::Workflow,
        quote!(),
        quote!(
            #[step]
            async fn w() -> R {}
        ),
        &["#[step] can't be combined with #[workflow]"],
    );
    // Every misuse at once.
    assert_eq!(
        errors(
            Kind::Workflow,
            quote!(),
            quote!(
                fn w<T>(&self, s: &str) {}
            )
        )
        .len(),
        5
    );
}

#[test]
fn steps_borrow_only_when_tried_once() {
    let item = || {
        quote!(
            async fn s(text: &str) -> R {}
        )
    };
    assert!(model(Kind::Step, quote!(), item()).is_ok());
    assert_error(
        Kind::Step,
        quote!(max_attempts = 2),
        item(),
        &["arguments must be owned"],
    );
}

#[test]
fn a_failed_expansion_hands_the_function_back() {
    let expansion = durable(
        Kind::Workflow,
        quote!(),
        quote!(
            fn w(a: A) -> R {
                body()
            }
        ),
    );
    let text = expansion.to_string();
    assert!(text.starts_with("fn w (a : A) -> R { body () }"), "{text}");
    assert!(text.contains("compile_error"), "{text}");

    // …without its `#[scheduled]`, which would otherwise report a second, misleading error.
    let item = quote!(
        #[scheduled("nope")]
        async fn w(a: T, b: T) -> R {}
    );
    let text = durable(Kind::Workflow, quote!(), item).to_string();
    assert!(!text.contains("# [scheduled"), "{text}");
    assert_eq!(text.matches("compile_error").count(), 1, "{text}");

    let text = durable(
        Kind::Step,
        quote!(),
        quote!(
            struct S;
        ),
    )
    .to_string();
    assert!(text.contains("#[step] goes on an `async fn`"), "{text}");
}

#[test]
fn generated_parameter_names_replace_patterns_only() {
    let item = quote!(
        async fn s(a: A, mut b: B, (c, d): (C, D), _: E, ref f: F, _g: G) -> R {}
    );
    let model = model(Kind::Step, quote!(), item).unwrap();
    let names: Vec<String> = model
        .params
        .iter()
        .map(|param| param.ident.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "a",
            "b",
            "__dbos_arg2",
            "__dbos_arg3",
            "__dbos_arg4",
            "__dbos_arg5"
        ]
    );
}

const CRON_ITEM: &str = "async fn tick(scheduled: Time, actual: Time) -> Res<()> {}";

#[test]
fn scheduled_above_or_below_expands_the_same() {
    let below = durable(
        Kind::Workflow,
        quote!(name = "tick"),
        quote! {
            #[scheduled("0 * * * * *")]
            /// Docs.
            async fn tick(scheduled: Time, actual: Time) -> Res<()> {}
        },
    );
    // Above: `#[scheduled]` runs first and puts the host attribute in front, then itself.
    let stacked = durable(
        Kind::Scheduled,
        quote!("0 * * * * *"),
        quote! {
            /// Docs.
            #[dbos_runtime::workflow(name = "tick")]
            async fn tick(scheduled: Time, actual: Time) -> Res<()> {}
        },
    );
    let mut func: syn::ItemFn = syn::parse2(stacked).unwrap();
    let host = func.attrs.remove(0);
    assert!(host.path().is_ident("workflow") || host.path().segments.len() == 2);
    let syn::Meta::List(host) = host.meta else {
        panic!("host attribute has arguments")
    };
    let first = func.attrs[0].path();
    assert_eq!(quote!(#first).to_string(), "dbos_runtime :: scheduled");
    let above = durable(Kind::Workflow, host.tokens, quote!(#func));
    assert_eq!(above.to_string(), below.to_string());
    assert!(below.to_string().contains("Entry :: schedule"));
}

#[test]
fn scheduled_rejects_bad_crons_and_hosts() {
    let bad = errors(
        Kind::Workflow,
        quote!(),
        quote!(
            #[scheduled("* * * * *")]
            async fn tick(s: T, a: T) -> R {}
        ),
    );
    assert_eq!(bad.len(), 1);
    assert!(
        bad[0].starts_with("invalid cron schedule \"* * * * *\": Invalid pattern:"),
        "{bad:?}"
    );
    assert!(bad[0].contains("seconds first"), "{bad:?}");
    for cron in ["61 * * * * *", "* * * * * * *", "", "every minute"] {
        let errors = errors(
            Kind::Workflow,
            quote!(),
            quote!(
                #[scheduled(#cron)]
                async fn t(s: T, a: T) -> R {}
            ),
        );
        assert!(
            errors[0].starts_with("invalid cron schedule"),
            "{cron}: {errors:?}"
        );
    }
    assert!(model(
        Kind::Workflow,
        quote!(),
        quote!(
            #[scheduled("*/5 0 9-17 * * MON-FRI")]
            async fn t(s: T, a: T) -> R {}
        )
    )
    .is_ok());

    let at = {
        let item = TokenStream::from_str(CRON_ITEM).unwrap();
        let func: syn::ItemFn = syn::parse2(item).unwrap();
        let args = TokenStream::from_str(r#"  "0 0 * * *""#).unwrap();
        crate::model::Stacked::parse(args, &func)
            .err()
            .unwrap()
            .span()
            .start()
    };
    assert_eq!(
        (at.line, at.column),
        (1, 2),
        "the error points at the cron literal"
    );

    let alone = durable(
        Kind::Scheduled,
        quote!("0 * * * * *"),
        TokenStream::from_str(CRON_ITEM).unwrap(),
    );
    assert!(alone
        .to_string()
        .contains("#[scheduled] goes on a #[workflow] or #[transaction]"));
    let on_step = durable(
        Kind::Scheduled,
        quote!("0 * * * * *"),
        quote!(
            #[step]
            async fn s() -> R {}
        ),
    );
    assert!(on_step.to_string().contains("not on a #[step]"));
    assert_error(
        Kind::Step,
        quote!(),
        quote!(
            #[scheduled("0 * * * * *")]
            async fn s() -> R {}
        ),
        &["not on a #[step]"],
    );
    assert_error(
        Kind::Workflow,
        quote!(),
        quote!(
            #[scheduled]
            async fn t(s: T, a: T) -> R {}
        ),
        &["#[scheduled] takes one cron string"],
    );
    assert_error(
        Kind::Workflow,
        quote!(),
        quote!(
            #[scheduled("0 * * * * *")]
            #[scheduled("1 * * * * *")]
            async fn t(s: T, a: T) -> R {}
        ),
        &["a second #[scheduled]"],
    );
}

#[test]
fn scheduled_functions_take_two_times() {
    assert_error(
        Kind::Workflow,
        quote!(),
        quote!(
            #[scheduled("0 * * * * *")]
            async fn t(s: T) -> R {}
        ),
        &[
            "a #[scheduled] workflow takes exactly two parameters",
            "found 1",
        ],
    );
    assert_error(
        Kind::Transaction,
        quote!(),
        quote!(
            #[scheduled("0 * * * * *")]
            async fn t(tx: &mut Tx, a: T, b: T, c: T) -> R {}
        ),
        &[
            "after `tx: &mut Tx`, a #[scheduled] transaction takes exactly two",
            "found 3",
        ],
    );
    assert_error(
        Kind::Transaction,
        quote!(),
        quote!(
            #[scheduled("0 * * * * *")]
            async fn t(tx: &mut Tx) -> R {}
        ),
        &["found 0"],
    );
}

// --- snapshots -------------------------------------------------------------------------------

fn snapshot(case: &str, expansion: &TokenStream) {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "expand",
        &format!("{case}.expanded.rs"),
    ]
    .iter()
    .collect();
    let actual = pretty(expansion);
    if std::env::var("UPDATE_EXPAND").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        panic!(
            "the expansion of `{case}` differs from {} (- snapshot, + now):\n{}\n\
             if the change is intended, run `UPDATE_EXPAND=1 cargo test -p dbos-macros` and \
             review the diff",
            path.display(),
            diff(&expected, &actual)
        );
    }
}

/// A line diff (longest common subsequence); snapshots are small.
fn diff(expected: &str, actual: &str) -> String {
    let old: Vec<&str> = expected.lines().collect();
    let new: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            out += &format!("  {}\n", old[i]);
            (i, j) = (i + 1, j + 1);
        } else if j < new.len() && (i == old.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out += &format!("+ {}\n", new[j]);
            j += 1;
        } else {
            out += &format!("- {}\n", old[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn expansions_match_their_snapshots() {
    for (case, kind, args, item) in cases() {
        snapshot(case, &durable(kind, args, item));
    }
}
