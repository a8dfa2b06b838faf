//! `set_event` and `get_event`: durable key/values a workflow publishes.

use crate::context::{self, Position};
use crate::error::{Error, Result};
use crate::notify::event_key;
use crate::serialization::{self, PORTABLE_JSON};
use crate::sleep::{durable_deadline, remaining};
use crate::sysdb::{now_ms, StepWrite};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

const SET_EVENT: &str = "DBOS.setEvent";
const GET_EVENT: &str = "DBOS.getEvent";

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

pub(crate) async fn get_event<V: DeserializeOwned + Serialize>(
    workflow_id: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<V>> {
    let (rt, recorded) = match context::position()? {
        Position::Workflow(rt, ctx) => {
            let n = ctx.next_id();
            let m = ctx.next_id();
            if let Some(row) = ctx.recorded(n, GET_EVENT)? {
                let text = row.output.as_deref().unwrap_or("null");
                return serialization::from_json(text, row.serialization.as_deref(), "a recorded event");
            }
            let wake = durable_deadline(&rt, &ctx, m, timeout).await?;
            (rt, Some((ctx, n, wake)))
        }
        Position::InStep(rt, _) | Position::Outside(rt) => (rt, None),
    };
    let wake = match &recorded {
        Some((_, _, wake)) => *wake,
        None => now_ms().saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 2)),
    };
    let notify = rt.notifier().subscribe(&event_key(workflow_id, key));
    let poll = rt.poll_interval();
    let found = loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(v) = rt.db().get_event(workflow_id, key).await? {
            break Some(v);
        }
        let left = remaining(wake);
        if left.is_zero() {
            break None;
        }
        crate::notify::wait(notified, left.min(poll)).await;
    };
    if let Some((ctx, n, _)) = recorded {
        let now = now_ms();
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
                started_at_ms: now,
                completed_at_ms: now,
            })
            .await?;
    }
    match found {
        Some((text, tag)) => serialization::from_json(&text, tag.as_deref(), "an event value").map(Some),
        None => Ok(None),
    }
}
