//! `set_event` and `get_event`: durable key/values a workflow publishes.

use crate::context;
use crate::error::{Error, Result};
use crate::notify::{event_key, Delivered, Value};
use crate::operation::{self, after, Begun, Site};
use crate::runtime::Runtime;
use crate::serialization::{self, PORTABLE_JSON};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

const SET_EVENT: &str = "DBOS.setEvent";
const GET_EVENT: &str = "DBOS.getEvent";

/// Sets event `key` of the calling workflow to `value`; the last value wins (SYSDB rule 16).
/// From a workflow body it is an operation (`DBOS.setEvent`, replayed, never re-run); from a
/// step it writes under the step's position.
pub(crate) async fn set_event<V: Serialize + ?Sized>(key: &str, value: &V) -> Result<()> {
    let span = operation::op_span!("dbos.setEvent", SET_EVENT, key = key);
    set_event_here(key, value).instrument(span).await
}

async fn set_event_here<V: Serialize + ?Sized>(key: &str, value: &V) -> Result<()> {
    let text = serialization::to_json(value, "an event value")?;
    match operation::begin(SET_EVENT)? {
        Site::Workflow(Begun::Recorded(_)) => Ok(()),
        Site::Workflow(Begun::Run(op)) => {
            let (id, n) = (op.workflow_id(), op.position());
            let marker = op.write(None, None, None);
            op.settle(
                op.rt()
                    .db()
                    .set_event(id, n, key, &text, Some(&marker))
                    .await,
            )?;
            notify_set(op.rt(), id, key, &text);
            Ok(())
        }
        Site::InStep(rt, ctx) => {
            rt.db()
                .set_event(&ctx.id, context::last_position(&ctx), key, &text, None)
                .await?;
            notify_set(&rt, &ctx.id, key, &text);
            Ok(())
        }
        Site::Outside(_) => Err(Error::NotInWorkflow("DBOS::set_event")),
    }
}

/// Wakes this process's waiters of event `key` of `workflow`, just set to `text`. On Postgres
/// they take the value with the wake-up (stored as portable JSON) instead of reading it back.
fn notify_set(rt: &Runtime, workflow: &str, key: &str, text: &str) {
    let notifier = rt.notifier();
    if rt.db().reads_are_local() {
        notifier.notify(&event_key(workflow, key));
        return;
    }
    notifier.notify_value(&event_key(workflow, key), || {
        std::sync::Arc::new(Value {
            workflow: workflow.to_owned(),
            key: key.to_owned(),
            text: text.to_owned(),
            serialization: Some(PORTABLE_JSON.to_owned()),
        })
    });
}

/// Reads event `key` of `workflow_id`, waiting up to `timeout` for it to be set (SYSDB rule 16).
/// In a workflow body it is an operation (`DBOS.getEvent`, holding the value or JSON `null`)
/// whose deadline is recorded at the next position (written only when it has to wait).
pub(crate) async fn get_event<V: DeserializeOwned>(
    workflow_id: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<V>> {
    let span = operation::op_span!("dbos.getEvent", GET_EVENT, key = key);
    get_event_here(workflow_id, key, timeout)
        .instrument(span)
        .await
}

async fn get_event_here<V: DeserializeOwned>(
    workflow_id: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<V>> {
    let start = Instant::now();
    let (rt, op) = match operation::begin_with_deadline(GET_EVENT)? {
        Site::Workflow(Begun::Recorded(row)) => {
            let text = row.output.as_deref().unwrap_or("null");
            return serialization::from_json(
                text,
                row.serialization.as_deref(),
                "a recorded event",
            );
        }
        Site::Workflow(Begun::Run(op)) => (op.rt().clone(), Some(op)),
        Site::InStep(rt, _) | Site::Outside(rt) => (rt, None),
    };
    let db = rt.db();
    // The database calls are boxed: a waiting get_event keeps only the one in flight, not
    // space for every call it might make (10,000 waiting callers held 21 KB each unboxed).
    let waiter = rt.notifier().waiter(event_key(workflow_id, key));
    let found = if db.reads_are_local() {
        // SQLite: a read costs no round trip. A first read, then a wait that reads again once
        // armed, as before issue 13: the single armed read below measured slower here (the
        // store's flows/s at 16 and 64 customers; see issue 13's note).
        let read = move || Box::pin(db.get_event(workflow_id, key));
        let mut found = read().await?;
        if found.is_none() && !timeout.is_zero() {
            found = match &op {
                Some(op) => {
                    let deadline = Box::pin(op.deadline(timeout)).await?;
                    op.wait(waiter.until(deadline, read)).await??
                }
                None => waiter.until(after(start, timeout), read).await?,
            };
        }
        found
    } else if timeout.is_zero() {
        Box::pin(db.get_event(workflow_id, key)).await?
    } else {
        // Postgres: the wait is armed before its first read, so one read (one round trip)
        // decides whether the operation waits, and a value set by this process comes with
        // its wake-up instead of being read back.
        let read = move |delivered: Option<Delivered>| async move {
            match delivered {
                // Set after the last read found nothing: the newest value then.
                Some(v) if v.workflow == workflow_id && v.key == key => {
                    Ok(Some((v.text.clone(), v.serialization.clone())))
                }
                _ => Box::pin(db.get_event(workflow_id, key)).await,
            }
        };
        match &op {
            // The deadline is written between naps: only the naps are interrupted.
            Some(op) => {
                waiter
                    .until_lazy(|| Box::pin(op.deadline(timeout)), read, || op.interrupted())
                    .await?
            }
            None => {
                let end = after(start, timeout);
                waiter
                    .until_lazy(
                        || async move { Ok(end) },
                        read,
                        std::future::pending::<Error>,
                    )
                    .await?
            }
        }
    };
    drop(waiter);
    if let Some(op) = op {
        let (text, tag) = match &found {
            Some((t, tag)) => (t.as_str(), tag.as_deref().unwrap_or(PORTABLE_JSON)),
            None => ("null", PORTABLE_JSON),
        };
        Box::pin(op.record(Some(text), None, None, Some(tag))).await?;
    }
    match found {
        Some((text, tag)) => {
            serialization::from_json(&text, tag.as_deref(), "an event value").map(Some)
        }
        None => Ok(None),
    }
}
