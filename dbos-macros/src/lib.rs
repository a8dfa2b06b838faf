//! Attribute macros of `dbos-runtime`: `#[workflow]`, `#[step]`, `#[transaction]`,
//! `#[scheduled]` and `#[queue]`. Use them through `dbos_runtime` (`use dbos_runtime::prelude::*;`); the code they
//! generate calls `dbos_runtime::__private` and nothing else, so users depend on one crate.
//!
//! Each attribute is parsed (`args.rs`), validated into a typed model (`model/`), then emitted
//! (`expand.rs`); each of these modules uses only the ones before it. A misuse is a compile
//! error on the user's tokens that says what is wrong, why durable execution needs it, and how
//! to fix it.

use proc_macro::TokenStream;

mod args;
mod expand;
mod model;
mod queue;
#[cfg(test)]
mod tests;

use model::Kind;

/// Makes an `async fn` a workflow: once started, it runs to completion, even across crashes.
///
/// The function keeps its name and arguments; calling it returns a
/// `dbos_runtime::WorkflowCall`, which runs the workflow when awaited (or is handed to
/// `DBOS::start_workflow`, optionally with `.with_id(…)`, the idempotency key).
///
/// ```ignore
/// #[workflow]                          // registered as `module::path::checkout`
/// async fn checkout(order: Order) -> Result<Receipt, Error> { … }
///
/// #[workflow(name = "checkout")]       // a stable name that survives a refactor
/// async fn checkout(order: Order) -> Result<Receipt, Error> { … }
/// ```
///
/// # Durability
/// The arguments are stored when the workflow starts. After a crash, recovery decodes them and
/// calls the function again; its steps and transactions that already finished return their
/// recorded results instead of running again. So the arguments must be owned `serde` types and
/// the function may not be generic, take `self`, or borrow.
///
/// # Errors
/// The function must return `Result<T, E>` (or an alias of it): `T` must be `serde`, `E` a
/// `dbos_runtime::WorkflowError`. Errors are recorded and replayed like results.
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::durable(Kind::Workflow, args.into(), item.into()).into()
}

/// Makes an `async fn` a step of a workflow: once it has returned, its result is final.
///
/// ```ignore
/// #[step]
/// async fn charge(card: Card, cents: u64) -> Result<PaymentId, Error> { … }
///
/// #[step(name = "charge", max_attempts = 5, interval = "500ms", backoff = 2.0)]
/// async fn charge(card: Card, cents: u64) -> Result<PaymentId, Error> { … }
/// ```
///
/// # Durability
/// Inside a workflow, the step's result (or error) is recorded before the workflow goes on; a
/// resumed workflow gets the recorded result without running the body again. A crash while the
/// body runs runs it again, so a step runs at least once.
///
/// # Options
/// - `name = "…"`: the recorded step name (default: `module_path!()::fn`).
/// - `max_attempts = N`: tries, counting the first (default 1). With N > 1 the body runs again
///   after an error, with a fresh clone of each argument, so arguments must be owned and `Clone`.
/// - `interval = "1s"`: wait before the first retry (`ms`, `s`, `m`, `h`; default `"1s"`).
/// - `backoff = 2.0`: each wait is this many times the one before (≥ 1.0; default 2.0).
///
/// # Errors
/// The step must return `Result<T, E>` with a `serde` `T` and a `dbos_runtime::WorkflowError`
/// `E`; its last error is recorded and returned.
#[proc_macro_attribute]
pub fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::durable(Kind::Step, args.into(), item.into()).into()
}

/// Makes an `async fn` a database transaction whose effect and checkpoint commit together, so it
/// happens exactly once.
///
/// The first parameter, `tx: &mut Tx`, is the open transaction. Callers leave it out:
/// `reserve(order_id).await`.
///
/// ```ignore
/// #[transaction(isolation = "serializable")]
/// async fn reserve(tx: &mut Tx, order_id: i64) -> Result<bool, Error> { … }
/// ```
///
/// # Durability
/// The application's writes and the transaction's recorded result share one commit; a resumed
/// workflow gets the recorded result and does not run the body again.
///
/// # Options
/// - `name = "…"`: the recorded name (default: `module_path!()::fn`).
/// - `isolation = "serializable" | "repeatable_read" | "read_committed"` (default:
///   `serializable` on Postgres, where conflicts are retried transparently; SQLite transactions
///   are always serializable).
/// - `read_only`: open a read-only transaction.
///
/// # Errors
/// Returns `Result<T, E>` with a `serde` `T` and a `dbos_runtime::WorkflowError` `E`. The body may
/// run again after a serialization failure, with a fresh clone of each argument, so arguments
/// must be owned and `Clone`.
#[proc_macro_attribute]
pub fn transaction(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::durable(Kind::Transaction, args.into(), item.into()).into()
}

/// Runs a `#[workflow]` or `#[transaction]` on a cron schedule, once per tick across restarts
/// and processes.
///
/// The cron string has six fields, seconds first: `"sec min hour day-of-month month
/// day-of-week"`; it is checked at compile time. The function takes the tick's planned time and
/// the time it started:
///
/// ```ignore
/// #[scheduled("0 */5 * * * *")]
/// #[workflow]
/// async fn report(scheduled: DateTime<Utc>, actual: DateTime<Utc>) -> Result<(), Error> { … }
/// ```
///
/// # Durability
/// Each tick is a workflow with an ID made of the function name and the planned time, so a
/// tick runs once even when several processes or a restart see it.
#[proc_macro_attribute]
pub fn scheduled(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::durable(Kind::Scheduled, args.into(), item.into()).into()
}

/// Declares a queue: registers the `static` it marks, so every process of the application
/// knows the queue, checks its settings at launch and dispatches its workflows.
///
/// ```ignore
/// #[queue]
/// static EMAILS: Queue = Queue::new("emails").concurrency(10).worker_concurrency(2);
///
/// EMAILS.enqueue(send_email(to)).await?;
/// ```
///
/// # Errors
/// At compile time: anything but a non-`mut` `static`, or options on the attribute. At
/// launch: a zero limit or a reserved name, or two declarations of one name with different
/// settings (`Error::InvalidQueue` naming the queue).
#[proc_macro_attribute]
pub fn queue(args: TokenStream, item: TokenStream) -> TokenStream {
    queue::expand(args.into(), item.into()).into()
}
