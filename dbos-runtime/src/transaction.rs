//! `#[transaction]`: the application's writes and their checkpoint in one commit.

use crate::context::{self, Position, WfCtx};
use crate::dbos::Runtime;
use crate::error::{Error, WorkflowError};
use crate::serialization::{self, PORTABLE_JSON};
use crate::sysdb::{now_ms, StepWrite, Tx};
use crate::workflow::{panic_message, replay_step, BoxFuture};
use futures_util::FutureExt;
use serde::{de::DeserializeOwned, Serialize};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

/// Isolation level of a `#[transaction]` on Postgres. SQLite transactions are always serializable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// `SERIALIZABLE`: the default; conflicts are retried transparently.
    Serializable,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `READ COMMITTED`.
    ReadCommitted,
}

/// Options of a `#[transaction]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TxOptions {
    /// `None`: the default, `SERIALIZABLE` on Postgres.
    pub isolation: Option<Isolation>,
    /// A read-only transaction (`READ ONLY` on Postgres; a reader connection on SQLite).
    pub read_only: bool,
}

/// How many times a conflicting transaction is retried before its conflict is returned.
const MAX_CONFLICT_RETRIES: u32 = 60;

enum Attempt<T, E> {
    Done(Result<T, E>),
    Retry,
}

/// Runs a transaction function. In a workflow: exactly once, its checkpoint committed with its
/// writes. Elsewhere: once, in its own transaction, without a checkpoint.
pub async fn run_transaction<T, E, F>(name: &'static str, opts: TxOptions, mut body: F) -> Result<T, E>
where
    F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, E>> + Send,
    T: Serialize + DeserializeOwned + Send,
    E: WorkflowError,
{
    let (rt, wf) = match context::position().map_err(E::from)? {
        Position::Outside(rt) | Position::InStep(rt, _) => (rt, None),
        Position::Workflow(rt, ctx) => (rt, Some(ctx)),
    };
    let n = match &wf {
        Some(ctx) => {
            let n = ctx.next_id();
            if let Some(row) = ctx.recorded(n, name).map_err(E::from)? {
                return replay_step(&row);
            }
            Some(n)
        }
        None => None,
    };
    let started = now_ms();
    let mut delay = 0.001_f64;
    for attempt in 0.. {
        let step = wf.as_ref().zip(n);
        let outcome = match step {
            Some((ctx, n)) => attempt_in_workflow(&rt, ctx, n, name, opts, started, &mut body).await,
            None => attempt_plain(&rt, opts, &mut body).await,
        };
        match outcome {
            Ok(Attempt::Done(r)) => return r,
            Ok(Attempt::Retry) if attempt < MAX_CONFLICT_RETRIES => {
                rt.metrics().add_retry();
                let jittered = delay * (0.5 + fastrand::f64());
                tokio::time::sleep(Duration::from_secs_f64(jittered)).await;
                delay = (delay * 1.5).min(2.0);
            }
            Ok(Attempt::Retry) => {
                return Err(E::from(Error::Config(format!(
                    "transaction `{name}` still conflicted after {MAX_CONFLICT_RETRIES} retries"
                ))))
            }
            Err(e) if e.is_conflict() && attempt < MAX_CONFLICT_RETRIES => {
                rt.metrics().add_retry();
                tokio::time::sleep(Duration::from_secs_f64(delay * (0.5 + fastrand::f64()))).await;
                delay = (delay * 1.5).min(2.0);
            }
            Err(e) => return Err(E::from(e)),
        }
    }
    Err(E::from(Error::Config("unreachable retry loop".into())))
}

async fn run_body<T, E, F>(tx: &mut Tx, body: &mut F) -> Result<Result<T, E>, String>
where
    F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, E>> + Send,
{
    AssertUnwindSafe(body(tx)).catch_unwind().await.map_err(|p| panic_message(&p))
}

async fn attempt_plain<T, E, F>(rt: &Runtime, opts: TxOptions, body: &mut F) -> crate::Result<Attempt<T, E>>
where
    F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, E>> + Send,
    E: WorkflowError,
{
    let mut tx = rt.db().begin_app(&opts).await?;
    match run_body(&mut tx, body).await {
        Err(panic) => {
            tx.rollback().await?;
            Ok(Attempt::Done(Err(E::from(Error::Panic(panic)))))
        }
        Ok(Ok(v)) => {
            tx.commit().await?;
            rt.metrics().add_commit();
            Ok(Attempt::Done(Ok(v)))
        }
        Ok(Err(e)) => {
            let conflicted = tx.conflicted;
            tx.rollback().await?;
            Ok(if conflicted { Attempt::Retry } else { Attempt::Done(Err(e)) })
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt_in_workflow<T, E, F>(
    rt: &Runtime,
    ctx: &Arc<WfCtx>,
    n: i32,
    name: &'static str,
    opts: TxOptions,
    started: i64,
    body: &mut F,
) -> crate::Result<Attempt<T, E>>
where
    F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T, E>> + Send,
    T: Serialize + DeserializeOwned + Send,
    E: WorkflowError,
{
    let db = rt.db();
    let mut tx = db.begin_app(&opts).await?;
    if !db.shared && ctx.resumed {
        // Separate databases: a commit whose system record was lost is found here.
        if let Some((recorded_name, output, error)) = db.read_transaction_output(&mut tx, &ctx.id, n).await? {
            tx.rollback().await?;
            if recorded_name != name {
                return Err(Error::NonDeterministic {
                    workflow_id: ctx.id.clone(),
                    function_id: n,
                    recorded: recorded_name,
                    current: name.to_owned(),
                });
            }
            let row = step_write(ctx, n, name, output.as_deref(), error.as_deref(), started);
            db.record_step(&row).await?;
            let rec = crate::sysdb::StepRow {
                function_id: n,
                function_name: name.to_owned(),
                output,
                error,
                child_workflow_id: None,
                serialization: Some(PORTABLE_JSON.to_owned()),
            };
            return Ok(Attempt::Done(replay_step(&rec)));
        }
    }
    let result = context::in_step(rt, ctx, run_body(&mut tx, body)).await;
    match result {
        Err(panic) => {
            tx.rollback().await?;
            let err = E::from(Error::Panic(panic));
            record_error(rt, ctx, n, name, started, &err).await?;
            Ok(Attempt::Done(Err(err)))
        }
        Ok(Ok(v)) => {
            let output = serialization::to_json(&v, "a transaction's output")?;
            let row = step_write(ctx, n, name, Some(&output), None, started);
            if let Err(e) = db.write_checkpoint_in(&mut tx, &row).await {
                let conflicted = tx.conflicted;
                tx.rollback().await?;
                return if conflicted { Ok(Attempt::Retry) } else { Err(e) };
            }
            tx.commit().await?;
            rt.metrics().add_commit();
            if !db.shared {
                db.record_step(&row).await?;
            }
            Ok(Attempt::Done(Ok(v)))
        }
        Ok(Err(e)) => {
            let conflicted = tx.conflicted;
            tx.rollback().await?;
            if conflicted {
                return Ok(Attempt::Retry);
            }
            record_error(rt, ctx, n, name, started, &e).await?;
            Ok(Attempt::Done(Err(e)))
        }
    }
}

fn step_write<'a>(
    ctx: &'a WfCtx,
    n: i32,
    name: &'a str,
    output: Option<&'a str>,
    error: Option<&'a str>,
    started: i64,
) -> StepWrite<'a> {
    StepWrite {
        workflow_id: &ctx.id,
        function_id: n,
        function_name: name,
        output,
        error,
        child_workflow_id: None,
        serialization: Some(PORTABLE_JSON),
        started_at_ms: started,
        completed_at_ms: now_ms(),
    }
}

async fn record_error<E: WorkflowError>(
    rt: &Runtime,
    ctx: &WfCtx,
    n: i32,
    name: &str,
    started: i64,
    err: &E,
) -> crate::Result<()> {
    let text = serialization::to_json(&err.to_portable(), "a transaction's error")?;
    let row = step_write(ctx, n, name, None, Some(&text), started);
    rt.db().write_transaction_error(&row).await?;
    rt.db().record_step(&row).await?;
    Ok(())
}
