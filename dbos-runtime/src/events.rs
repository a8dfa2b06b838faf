//! `set_event` and `get_event`: durable key/values a workflow publishes.

use crate::context::{self, Position};
use crate::error::{Error, Result};
use crate::notify::event_key;
use crate::serialization::{self, PORTABLE_JSON};
use crate::sleep::{after, durable_deadline, Stamp};
use crate::sysdb::{now_ms, StepWrite};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;
use tokio::time::Instant;

const SET_EVENT: &str = "DBOS.setEvent";
const GET_EVENT: &str = "DBOS.getEvent";

/// Sets event `key` of the calling workflow to `value`; the last value wins (SYSDB rule 16).
/// From a workflow body it is operation `n` (`DBOS.setEvent`, replayed, never re-run); from a
/// step it writes under the step's ID.
pub(crate) async fn set_event<V: Serialize + ?Sized>(key: &str, value: &V) -> Result<()> {
    let text = serialization::to_json(value, "an event value")?;
    let (rt, ctx, marker) = match context::position()? {
        Position::Workflow(rt, ctx) => {
            let n = ctx.next_id();
            if ctx.recorded(n, SET_EVENT)?.is_some() {
                return Ok(());
            }
            (rt, ctx, Some(n))
        }
        Position::InStep(rt, ctx) => (rt, ctx, None),
        Position::Outside(_) => return Err(Error::NotInWorkflow("DBOS::set_event")),
    };
    let n = marker.unwrap_or_else(|| ctx.current_id());
    let now = now_ms();
    let step = StepWrite {
        workflow_id: &ctx.id,
        function_id: n,
        function_name: SET_EVENT,
        output: None,
        error: None,
        child_workflow_id: None,
        serialization: None,
        started_at_ms: now,
        completed_at_ms: now,
    };
    rt.db()
        .set_event(&ctx.id, n, key, &text, marker.map(|_| &step))
        .await?;
    rt.notifier().notify(&event_key(&ctx.id, key));
    Ok(())
}

/// Reads event `key` of `workflow_id`, waiting up to `timeout` for it to be set (SYSDB rule 16).
/// In a workflow body it takes operations `n` (`DBOS.getEvent`, holding the value or JSON
/// `null`) and `n + 1` (the `DBOS.sleep` of its deadline, written only when it has to wait).
pub(crate) async fn get_event<V: DeserializeOwned>(
    workflow_id: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<V>> {
    let start = Instant::now();
    let (rt, recorded) = match context::position()? {
        Position::Workflow(rt, ctx) => {
            let n = ctx.next_id();
            let m = ctx.next_id();
            if let Some(row) = ctx.recorded(n, GET_EVENT)? {
                let text = row.output.as_deref().unwrap_or("null");
                return serialization::from_json(
                    text,
                    row.serialization.as_deref(),
                    "a recorded event",
                );
            }
            (rt, Some((ctx, n, m)))
        }
        Position::InStep(rt, _) | Position::Outside(rt) => (rt, None),
    };
    let started = now_ms();
    let waiter = rt.notifier().waiter(event_key(workflow_id, key));
    let db = rt.db();
    let read = move || async move { db.get_event(workflow_id, key).await };
    let mut found = read().await?;
    if found.is_none() && !timeout.is_zero() {
        let deadline = match &recorded {
            Some((ctx, _, m)) => durable_deadline(&rt, ctx, *m, timeout, Stamp::AtWrite).await?,
            None => after(start, timeout),
        };
        found = waiter.until(deadline, read).await?;
    }
    drop(waiter);
    if let Some((ctx, n, _)) = recorded {
        let (text, tag) = match &found {
            Some((t, tag)) => (t.as_str(), tag.as_deref().unwrap_or(PORTABLE_JSON)),
            None => ("null", PORTABLE_JSON),
        };
        rt.db()
            .record_step(&StepWrite {
                workflow_id: &ctx.id,
                function_id: n,
                function_name: GET_EVENT,
                output: Some(text),
                error: None,
                child_workflow_id: None,
                serialization: Some(tag),
                started_at_ms: started,
                completed_at_ms: now_ms(),
            })
            .await?;
    }
    match found {
        Some((text, tag)) => {
            serialization::from_json(&text, tag.as_deref(), "an event value").map(Some)
        }
        None => Ok(None),
    }
}
