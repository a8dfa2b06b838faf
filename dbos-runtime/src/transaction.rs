//! `#[transaction]`: the application's writes and their checkpoint in one commit.
//!
//! Inside a workflow a transaction is an operation at position `n` (SYSDB.md rule 19):
//! - recorded already → replayed, the body does not run;
//! - shared database (the default) → the body runs in a transaction on the application
//!   database, and the `operation_outputs` row `n` is inserted in that same transaction: one
//!   commit makes the writes and the checkpoint durable together;
//! - separate system database → a `transaction_outputs` row in the application database plays
//!   that part, and `operation_outputs` is written after the commit. A crash in between is
//!   healed on replay: the transaction finds its `transaction_outputs` row first.
//!
//! A body `Err` (or panic) rolls back and is recorded, so replays return it without running
//! the body. Serialization failures, deadlocks and SQLite busy errors roll back and retry the
//! whole body with jittered exponential backoff. Outside a workflow a transaction is a plain
//! database transaction: it commits once and records nothing.

use crate::error::{Error, WorkflowError};
use crate::operation::{self, Begun, Operation, Site};
use crate::runtime::Runtime;
use crate::serialization::{self, Format, PORTABLE_JSON};
pub use crate::sysdb::{Isolation, TxOptions};
use crate::sysdb::{StepRow, StepWrite, Tx};
use crate::workflow::{panic_message, replay_step, BoxFuture};
use futures_util::FutureExt;
use serde::{de::DeserializeOwned, Serialize};
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// Conflict retries before a transaction gives up and returns the conflict.
const MAX_CONFLICT_RETRIES: u32 = 40;
/// The first backoff, its growth and its ceiling (SYSDB.md rule 19).
const FIRST_BACKOFF_SECS: f64 = 0.001;
const BACKOFF_FACTOR: f64 = 1.5;
const MAX_BACKOFF_SECS: f64 = 2.0;

tokio::task_local! {
    /// Set while a transaction body runs: a nested `#[transaction]` is refused.
    static IN_TRANSACTION: ();
}

/// What one attempt came to.
enum Attempt<T, E> {
    /// Final: return this.
    Done(Result<T, E>),
    /// Rolled back after a conflict; retry, or return this error once the retries are spent.
    Retry(E),
}

type Body<'f, T, E> = dyn for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, E>> + Send + 'f;

/// Runs a `#[transaction]` function's body (`body` makes a fresh future per attempt).
///
/// # Durability
/// In a workflow body: exactly once. The body's writes and its recorded result commit
/// together; a crash before the commit leaves nothing (the body runs again on recovery), a
/// crash after it replays the recorded result. Called anywhere else (outside workflows, inside
/// a step): a plain transaction that commits once and records nothing.
///
/// The body itself may run more than once before one run commits (a conflict rolls it back
/// and retries it; a crash before the commit re-runs it on recovery), so it should do nothing
/// but SQL on `tx`. A `read_only` transaction commits nothing: in a workflow its result is
/// recorded after it ends (one commit on the system database, no `transaction_outputs` row).
///
/// # Errors
/// The body's own error (recorded in a workflow), after rolling back; [`Error::Panic`] when it
/// panicked (rolled back, recorded, the process stays up); a conflict error once
/// 40 retries (about 45 s of backoff) have failed; [`Error::InStep`] inside another
/// transaction's body; database errors; [`Error::NonDeterministic`] and
/// [`Error::ConcurrentExecution`] as for steps.
pub async fn run_transaction<T, E, F>(
    name: &'static str,
    opts: TxOptions,
    mut body: F,
) -> Result<T, E>
where
    F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, E>> + Send,
    T: Serialize + DeserializeOwned + Send,
    E: WorkflowError,
{
    if IN_TRANSACTION.try_with(|_| ()).is_ok() {
        return Err(E::from(Error::InStep("#[transaction]")));
    }
    let body: &mut Body<'_, T, E> = &mut body;
    match operation::begin(name).map_err(E::from)? {
        Site::Workflow(Begun::Recorded(row)) => replay_step(&row),
        Site::Workflow(Begun::Run(op)) => {
            let op = Op { op: &op, opts };
            let mut retries = Retries::new(op.op.rt(), name);
            loop {
                if let Some(result) = retries.settle(op.attempt(body).await).await {
                    return result;
                }
            }
        }
        Site::Outside(rt) | Site::InStep(rt, _) => {
            let mut retries = Retries::new(&rt, name);
            loop {
                if let Some(result) = retries
                    .settle(attempt_plain(&rt, name, opts, body).await)
                    .await
                {
                    return result;
                }
            }
        }
    }
}

/// The retry budget of one transaction call: `1 ms × 1.5^k` between attempts (±50 % jitter,
/// at most 2 s), at most [`MAX_CONFLICT_RETRIES`] times.
struct Retries<'a> {
    rt: &'a Runtime,
    name: &'a str,
    backoff: f64,
    done: u32,
}

impl<'a> Retries<'a> {
    fn new(rt: &'a Runtime, name: &'a str) -> Self {
        Retries {
            rt,
            name,
            backoff: FIRST_BACKOFF_SECS,
            done: 0,
        }
    }

    /// The final result of an attempt, or `None` after sleeping before the next one.
    async fn settle<T, E: WorkflowError>(
        &mut self,
        attempt: crate::Result<Attempt<T, E>>,
    ) -> Option<Result<T, E>> {
        let conflict = match attempt {
            Ok(Attempt::Done(result)) => return Some(result),
            Ok(Attempt::Retry(e)) => e,
            Err(e) if e.is_conflict() => E::from(e),
            Err(e) => return Some(Err(E::from(e))),
        };
        if self.done == MAX_CONFLICT_RETRIES {
            tracing::warn!(
                transaction = self.name,
                "still conflicting after {} retries; giving up",
                self.done
            );
            return Some(Err(conflict));
        }
        self.done += 1;
        self.rt.metrics().add_retry();
        let wait = self.backoff * (0.5 + fastrand::f64());
        tracing::debug!(
            transaction = self.name,
            retry = self.done,
            "conflict; retrying in {:.1} ms",
            wait * 1e3
        );
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        self.backoff = (self.backoff * BACKOFF_FACTOR).min(MAX_BACKOFF_SECS);
        None
    }
}

/// Runs the body on `tx` with nested transactions refused; a panic becomes `Err(message)`.
async fn run_body<T, E>(tx: &mut Tx, body: &mut Body<'_, T, E>) -> Result<Result<T, E>, String> {
    let fut = AssertUnwindSafe(async move { body(tx).await }).catch_unwind();
    IN_TRANSACTION
        .scope((), fut)
        .await
        .map_err(|p| panic_message(&p))
}

fn panic_error(name: &str, message: &str) -> Error {
    Error::Panic(format!(
        "{message} (in transaction `{name}`; its writes were rolled back)"
    ))
}

/// Ends a transaction whose writes must not stay. Dropping it would roll back too; an error
/// here only means the connection is gone, which rolls back as well.
async fn discard(tx: Tx) {
    if let Err(e) = tx.rollback().await {
        tracing::debug!("rolling back a transaction failed: {e}");
    }
}

async fn attempt_plain<T, E>(
    rt: &Runtime,
    name: &str,
    opts: TxOptions,
    body: &mut Body<'_, T, E>,
) -> crate::Result<Attempt<T, E>>
where
    E: WorkflowError,
{
    let mut tx = rt.db().begin_app(&opts).await?;
    match run_body(&mut tx, body).await {
        Err(panic) => {
            discard(tx).await;
            tracing::error!(transaction = name, "transaction panicked: {panic}");
            Ok(Attempt::Done(Err(E::from(panic_error(name, &panic)))))
        }
        Ok(Err(e)) => {
            let conflicted = tx.conflicted;
            discard(tx).await;
            Ok(if conflicted {
                Attempt::Retry(e)
            } else {
                Attempt::Done(Err(e))
            })
        }
        Ok(Ok(v)) => {
            if let Some(err) = tx.aborted().await {
                let conflicted = tx.conflicted;
                discard(tx).await;
                let e = E::from(err);
                return Ok(if conflicted {
                    Attempt::Retry(e)
                } else {
                    Attempt::Done(Err(e))
                });
            }
            if opts.read_only {
                discard(tx).await;
            } else if tx.began() {
                let enqueued = tx.enqueued > 0;
                tx.commit().await?;
                rt.metrics().add_commit();
                if enqueued {
                    rt.wake_dispatcher();
                }
            } else {
                discard(tx).await;
            }
            Ok(Attempt::Done(Ok(v)))
        }
    }
}

/// One transaction operation of one workflow execution.
struct Op<'a> {
    op: &'a Operation,
    opts: TxOptions,
}

impl Op<'_> {
    fn write<'s>(&'s self, output: Option<&'s str>, error: Option<&'s str>) -> StepWrite<'s> {
        // An error row is portable JSON whatever the transaction's format.
        let tag = match error {
            Some(_) => PORTABLE_JSON,
            None => self.opts.format.tag(),
        };
        self.op.write(output, error, Some(tag))
    }

    async fn attempt<T, E>(&self, body: &mut Body<'_, T, E>) -> crate::Result<Attempt<T, E>>
    where
        T: Serialize + DeserializeOwned + Send,
        E: WorkflowError,
    {
        let db = self.op.rt().db();
        let mut tx = db.begin_app(&self.opts).await?;
        if !db.shared && self.op.ctx().resumed && !self.opts.read_only {
            // Separate databases: a commit whose system record was lost is found here.
            if let Some(found) = db
                .read_transaction_output(&mut tx, self.op.workflow_id(), self.op.position())
                .await?
            {
                discard(tx).await;
                return self.heal(found).await.map(Attempt::Done);
            }
        }
        let started = std::time::Instant::now();
        let result = self
            .op
            .run_body("transaction", run_body(&mut tx, body))
            .await;
        self.op
            .rt()
            .metrics()
            .step_ran(self.op.name(), started.elapsed());
        match result {
            Err(panic) => {
                discard(tx).await;
                tracing::error!(workflow_id = %self.op.workflow_id(), transaction = self.op.name(), "transaction panicked: {panic}");
                let err = E::from(panic_error(self.op.name(), &panic));
                self.record_error(&err).await?;
                Ok(Attempt::Done(Err(err)))
            }
            Ok(Err(e)) => {
                let conflicted = tx.conflicted;
                discard(tx).await;
                if conflicted {
                    return Ok(Attempt::Retry(e));
                }
                self.record_error(&e).await?;
                Ok(Attempt::Done(Err(e)))
            }
            Ok(Ok(v)) => {
                if let Some(err) = tx.aborted().await {
                    let conflicted = tx.conflicted;
                    discard(tx).await;
                    let e = E::from(err);
                    if conflicted {
                        return Ok(Attempt::Retry(e));
                    }
                    self.record_error(&e).await?;
                    return Ok(Attempt::Done(Err(e)));
                }
                let output =
                    match serialization::encode(self.opts.format, &v, "a transaction's output") {
                        Ok(output) => output,
                        Err(e) => {
                            discard(tx).await;
                            return Err(e);
                        }
                    };
                if self.opts.read_only {
                    discard(tx).await;
                    self.op
                        .settle(db.record_step(&self.write(Some(&output), None)).await)?;
                    return Ok(Attempt::Done(Ok(v)));
                }
                let row = self.write(Some(&output), None);
                if let Err(e) = self
                    .op
                    .settle_quiet(db.write_checkpoint_in(&mut tx, &row).await)
                {
                    discard(tx).await;
                    return Err(e);
                }
                let enqueued = tx.enqueued > 0;
                tx.commit().await?;
                self.op.committed();
                self.op.rt().metrics().add_commit();
                if enqueued {
                    // What it enqueued is committed: the dispatcher may claim it.
                    self.op.rt().wake_dispatcher();
                }
                if !db.shared {
                    self.record_after_commit(&row).await?;
                }
                Ok(Attempt::Done(Ok(v)))
            }
        }
    }

    /// Separate databases: writes `operation_outputs` once the app transaction committed. The
    /// effect is durable already, so a failure here is only logged: a replay finds the
    /// `transaction_outputs` row and records it then.
    async fn record_after_commit(&self, row: &StepWrite<'_>) -> crate::Result<()> {
        let mut wait = Duration::from_millis(10);
        for attempt in 1..=4 {
            match self
                .op
                .settle_quiet(self.op.rt().db().record_step(row).await)
            {
                Ok(()) => return Ok(()),
                Err(e @ Error::ConcurrentExecution { .. }) => return Err(e),
                // Shutting down: the replay after the next launch records it.
                Err(Error::ShuttingDown) => return Ok(()),
                Err(e) if attempt == 4 => {
                    tracing::warn!(workflow_id = %self.op.workflow_id(), function_id = self.op.position(),
                        "transaction committed but its step record failed ({e}); a replay will record it");
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 4;
                }
            }
        }
        Ok(())
    }

    /// Records the body's error: in `transaction_outputs` (separate databases, read-write
    /// only) and `operation_outputs`, so a replay returns it without running the body.
    async fn record_error<E: WorkflowError>(&self, err: &E) -> crate::Result<()> {
        let text = serialization::to_json(&err.to_portable(), "a transaction's error")?;
        let row = self.write(None, Some(&text));
        if !self.opts.read_only {
            self.op
                .settle_quiet(self.op.rt().db().write_transaction_error(&row).await)?;
        }
        self.op.settle(self.op.rt().db().record_step(&row).await)
    }

    /// Copies a `transaction_outputs` row found on replay to `operation_outputs`, returns it.
    async fn heal<T, E>(
        &self,
        (recorded, output, error): (String, Option<String>, Option<String>),
    ) -> crate::Result<Result<T, E>>
    where
        T: DeserializeOwned,
        E: WorkflowError,
    {
        if recorded != self.op.name() {
            return Err(Error::NonDeterministic {
                workflow_id: self.op.workflow_id().to_owned(),
                function_id: self.op.position(),
                recorded,
                current: self.op.name().to_owned(),
            });
        }
        // `transaction_outputs` has no tag: the output is in this function's format, unless
        // the format changed since it was written; then it reads in the other one.
        let tag = match (&output, &error) {
            (Some(text), None) => {
                let mine = self.opts.format;
                let other = match mine {
                    Format::Json => Format::Bincode,
                    Format::Bincode => Format::Json,
                };
                let reads = |f: Format| f.decode::<T>(text).is_ok();
                if !reads(mine) && reads(other) {
                    other.tag()
                } else {
                    mine.tag()
                }
            }
            _ => PORTABLE_JSON,
        };
        let written = self
            .op
            .rt()
            .db()
            .record_step(
                &self
                    .op
                    .write(output.as_deref(), error.as_deref(), Some(tag)),
            )
            .await;
        self.op.settle(written)?;
        let serialization = Some(tag.to_owned());
        Ok(replay_step(&StepRow {
            function_id: self.op.position(),
            function_name: recorded,
            output,
            error,
            child_workflow_id: None,
            serialization,
        }))
    }
}
