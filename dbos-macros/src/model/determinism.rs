//! The determinism check of a `#[workflow]` body: calls that make a resumed workflow take
//! another path are compile errors on the user's tokens, each naming the call and the fix.
//!
//! A workflow body is replayed from its checkpoints, so it must compute the same thing every
//! time; steps and transactions it calls may do anything (their results are recorded), so only
//! the body's own tokens are read. Flagged: clock reads, random numbers and UUIDs, spawned
//! tasks and threads, environment and file reads, and iteration over a `HashMap`/`HashSet`
//! bound in the body or taken as a parameter. A statement or expression marked
//! `#[allow_nondeterminism]` is a deliberate use: it is not checked (the marker is removed).
//!
//! What it cannot see: calls inside macros (`println!`, `tokio::join!`), calls through `use`
//! renames or other functions the body calls, and hash maps whose type it cannot see from the
//! body (a field, a function's return value).

use syn::visit_mut::{self, VisitMut};
use syn::{
    Attribute, Block, Expr, ExprCall, ExprForLoop, ExprMethodCall, FnArg, Local, Pat, Signature,
    Stmt, Type,
};

use super::errors::Errors;

/// The marker of a deliberate use.
pub(crate) const ALLOW: &str = "allow_nondeterminism";

/// Checks workflow body `block` (removing `#[allow_nondeterminism]` markers).
pub(super) fn check(sig: &Signature, block: &mut Block, errors: &mut Errors) {
    let mut hashes = Vec::new();
    for input in &sig.inputs {
        if let FnArg::Typed(p) = input {
            if let (Pat::Ident(id), true) = (&*p.pat, is_hash_type(&p.ty)) {
                hashes.push(id.ident.to_string());
            }
        }
    }
    let mut v = Checker {
        hashes,
        found: Vec::new(),
    };
    v.visit_block_mut(block);
    for err in v.found {
        errors.push(err);
    }
}

/// Removes every `#[allow_nondeterminism]` marker from `block` (checking nothing): for step
/// bodies, and for the function re-emitted beside an error.
pub(crate) fn strip(block: &mut Block) {
    struct Strip;
    impl VisitMut for Strip {
        fn visit_attributes_mut(&mut self, attrs: &mut Vec<Attribute>) {
            attrs.retain(|a| !a.path().is_ident(ALLOW));
        }
    }
    Strip.visit_block_mut(block);
}

struct Checker {
    /// Names bound to a `HashMap`/`HashSet` in the body.
    hashes: Vec<String>,
    found: Vec<syn::Error>,
}

/// Removes the marker from `attrs`; `true` when it was there.
fn allowed(attrs: &mut Vec<Attribute>) -> bool {
    let before = attrs.len();
    attrs.retain(|a| !a.path().is_ident(ALLOW));
    attrs.len() != before
}

const ADVICE: &str = "mark a deliberate use with #[allow_nondeterminism]";

impl VisitMut for Checker {
    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        let attrs = match stmt {
            Stmt::Local(l) => Some(&mut l.attrs),
            Stmt::Macro(m) => Some(&mut m.attrs),
            Stmt::Item(_) => {
                // A nested `fn` or `impl` is not the workflow body.
                return;
            }
            Stmt::Expr(..) => None,
        };
        if let Some(attrs) = attrs {
            if allowed(attrs) {
                return;
            }
        }
        visit_mut::visit_stmt_mut(self, stmt);
    }

    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        if let Some(attrs) = expr_attrs(expr) {
            if allowed(attrs) {
                return;
            }
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_local_mut(&mut self, local: &mut Local) {
        // The initializer first: in `let m = m.into_iter().collect();` it reads the old `m`.
        visit_mut::visit_local_mut(self, local);
        let name = match &local.pat {
            Pat::Ident(id) => Some((id.ident.to_string(), None)),
            Pat::Type(t) => match &*t.pat {
                Pat::Ident(id) => Some((id.ident.to_string(), Some(is_hash_type(&t.ty)))),
                _ => None,
            },
            _ => None,
        };
        if let Some((name, typed)) = name {
            let hash = typed.unwrap_or(false)
                || local
                    .init
                    .as_ref()
                    .is_some_and(|init| builds_hash(&init.expr));
            if hash {
                self.hashes.push(name);
            } else {
                // Shadowed by something else.
                self.hashes.retain(|h| *h != name);
            }
        }
    }

    fn visit_expr_call_mut(&mut self, call: &mut ExprCall) {
        if let Expr::Path(p) = &*call.func {
            let segs: Vec<String> = p
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            if let Some(message) = classify(&segs) {
                self.found
                    .push(syn::Error::new_spanned(&call.func, message));
            }
        }
        visit_mut::visit_expr_call_mut(self, call);
    }

    fn visit_expr_method_call_mut(&mut self, call: &mut ExprMethodCall) {
        let method = call.method.to_string();
        if ORDER_FREE.contains(&method.as_str()) {
            // `m.values().sum()`: the order does not matter. Check the rest of the chain only.
            if let Expr::MethodCall(inner) = &mut *call.receiver {
                if ITERATING.contains(&inner.method.to_string().as_str())
                    && self.hash_named(&inner.receiver).is_some()
                {
                    for arg in inner.args.iter_mut().chain(call.args.iter_mut()) {
                        self.visit_expr_mut(arg);
                    }
                    return;
                }
            }
        }
        let (receiver, method_ident) = (&call.receiver, &call.method);
        if ITERATING.contains(&method.as_str()) {
            if let Some(name) = self.hash_named(&call.receiver) {
                let at = quote::quote!(#receiver.#method_ident);
                self.found.push(syn::Error::new_spanned(
                    at,
                    hash_message(&format!("{name}.{method}()")),
                ));
            }
        }
        visit_mut::visit_expr_method_call_mut(self, call);
    }

    fn visit_expr_for_loop_mut(&mut self, f: &mut ExprForLoop) {
        if let Some(name) = self.hash_named(&f.expr) {
            self.found.push(syn::Error::new_spanned(
                &f.expr,
                hash_message(&format!("for … in {name}")),
            ));
        }
        visit_mut::visit_expr_for_loop_mut(self, f);
    }
}

/// Methods whose result does not depend on the order they visit entries in.
const ORDER_FREE: &[&str] = &[
    "sum", "product", "count", "len", "any", "all", "max", "min", "contains",
];

/// Methods that visit a hash map's or set's entries in its (per-process random) order.
const ITERATING: &[&str] = &[
    "iter",
    "iter_mut",
    "keys",
    "values",
    "values_mut",
    "into_iter",
    "drain",
    "into_keys",
    "into_values",
];

impl Checker {
    /// The hash map or set `expr` names (`m`, `&m`, `&mut m`), if it is one.
    fn hash_named(&self, expr: &Expr) -> Option<String> {
        match expr {
            Expr::Reference(r) => self.hash_named(&r.expr),
            Expr::Paren(p) => self.hash_named(&p.expr),
            Expr::Path(p) if p.path.segments.len() == 1 => {
                let name = p.path.segments[0].ident.to_string();
                self.hashes.contains(&name).then_some(name)
            }
            _ => None,
        }
    }
}

fn hash_message(what: &str) -> String {
    format!(
        "`{what}` iterates a HashMap/HashSet in a workflow body: its order differs from process \
         to process, so operations begun in that order get other positions when the workflow \
         is resumed; use a BTreeMap/BTreeSet or sort the entries first, or {ADVICE}"
    )
}

/// The message for a call to the function at path `segs`, if it breaks replay.
fn classify(segs: &[String]) -> Option<String> {
    let n = segs.len();
    let last = segs.last()?.as_str();
    let prev = if n >= 2 { segs[n - 2].as_str() } else { "" };
    let call = segs.join("::");
    let first = segs.first().map(String::as_str).unwrap_or("");
    if last == "now" && matches!(prev, "SystemTime" | "Instant" | "Utc" | "Local")
        || (prev == "OffsetDateTime" && last == "now_utc")
    {
        return Some(format!(
            "`{call}()` reads the clock in a workflow body: a resumed workflow reads another time \
             and may take another path; use `DBOS::now().await?` (recorded) or call it in a \
             #[step], or {ADVICE}"
        ));
    }
    let seeded = matches!(last, "seed_from_u64" | "from_seed");
    if (prev == "Uuid" && matches!(last, "new_v4" | "now_v7" | "now_v1" | "new_v7"))
        || ((first == "rand" || first == "fastrand") && !seeded)
    {
        return Some(format!(
            "`{call}()` draws a random value in a workflow body: a resumed workflow draws another \
             and may take another path; use `DBOS::random().await?` (recorded) or call it in a \
             #[step], or {ADVICE}"
        ));
    }
    if n >= 2
        && matches!(last, "spawn" | "spawn_blocking" | "spawn_local")
        && matches!(prev, "tokio" | "task" | "thread")
    {
        return Some(format!(
            "`{call}` in a workflow body runs work outside the workflow: it is not recorded or \
             replayed, and a resumed workflow runs it again; use `DBOS::join_all` or \
             `DBOS::select` for concurrency, or start a child workflow, or {ADVICE}"
        ));
    }
    if prev == "env"
        && matches!(
            last,
            "var" | "var_os" | "vars" | "vars_os" | "args" | "args_os" | "current_dir"
        )
    {
        return Some(format!(
            "`{call}()` reads the environment in a workflow body: a resumed workflow may read \
             another value, in another process; read it in a #[step] (or pass it as an argument), \
             or {ADVICE}"
        ));
    }
    // `std::fs::…`, `tokio::fs::…`, or `fs::…` imported from them; not a module of the
    // user's that happens to be called `fs` (`storage::fs::save`).
    let std_fs =
        prev == "fs" && (n == 2 || matches!(segs[n - 3].as_str(), "std" | "tokio" | "async_std"));
    if std_fs || (prev == "File" && matches!(last, "open" | "create")) {
        return Some(format!(
            "`{call}` touches the file system in a workflow body: a resumed workflow may find \
             other contents, in another process; do it in a #[step], or {ADVICE}"
        ));
    }
    None
}

/// Whether `ty` is a `HashMap` or `HashSet` (any path ending so, or a reference to one).
fn is_hash_type(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) => is_hash_type(&r.elem),
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "HashMap" || s.ident == "HashSet"),
        _ => false,
    }
}

/// Whether `expr` builds a hash map or set: `HashMap::new()`, `HashSet::from(..)`,
/// `….collect::<HashMap<…>>()`.
fn builds_hash(expr: &Expr) -> bool {
    match expr {
        Expr::Call(c) => match &*c.func {
            Expr::Path(p) => {
                let segs: Vec<_> = p
                    .path
                    .segments
                    .iter()
                    .map(|s| s.ident.to_string())
                    .collect();
                segs.len() >= 2 && matches!(segs[segs.len() - 2].as_str(), "HashMap" | "HashSet")
            }
            _ => false,
        },
        Expr::MethodCall(m) => {
            m.method == "collect"
                && m.turbofish.as_ref().is_some_and(|t| {
                    t.args
                        .iter()
                        .any(|a| matches!(a, syn::GenericArgument::Type(ty) if is_hash_type(ty)))
                })
        }
        _ => false,
    }
}

/// The attributes of `expr`, for the variants that can carry them.
fn expr_attrs(expr: &mut Expr) -> Option<&mut Vec<Attribute>> {
    Some(match expr {
        Expr::Call(e) => &mut e.attrs,
        Expr::MethodCall(e) => &mut e.attrs,
        Expr::Await(e) => &mut e.attrs,
        Expr::Block(e) => &mut e.attrs,
        Expr::ForLoop(e) => &mut e.attrs,
        Expr::Assign(e) => &mut e.attrs,
        Expr::Macro(e) => &mut e.attrs,
        Expr::Try(e) => &mut e.attrs,
        Expr::Path(e) => &mut e.attrs,
        Expr::If(e) => &mut e.attrs,
        Expr::Match(e) => &mut e.attrs,
        Expr::Async(e) => &mut e.attrs,
        _ => return None,
    })
}
