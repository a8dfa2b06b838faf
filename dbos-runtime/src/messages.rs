//! `send` and `recv`: messages to a workflow, delivered exactly once.

use crate::context::{self, Position};
use crate::error::{Error, Result};
use crate::notify::message_key;
use crate::serialization::{self, PORTABLE_JSON};
use crate::sleep::{durable_deadline, remaining};
use crate::sysdb::{now_ms, StepWrite, NULL_TOPIC};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

const SEND: &str = "DBOS.send";
const RECV: &str = "DBOS.recv";

pub(crate) async fn send<M: Serialize + ?Sized>(
    destination: &str,
    message: &M,
    topic: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<()> {
    let topic = topic.unwrap_or(NULL_TOPIC);
    let text = serialization::to_json(message, "a message")?;
    let (rt, marker_ctx) = match context::position()? {
        Position::Workflow(rt, ctx) => (rt, Some(ctx)),
        Position::Outside(rt) | Position::InStep(rt, _) => (rt, None),
    };
    match marker_ctx {
        Some(ctx) => {
            let n = ctx.next_id();
            if ctx.recorded(n, SEND)?.is_some() {
                return Ok(());
            }
            let uuid = match idempotency_key {
                Some(k) => format!("{k}::{destination}"),
                None => uuid::Uuid::new_v4().to_string(),
            };
            let now = now_ms();
            let marker = StepWrite {
                workflow_id: &ctx.id,
                function_id: n,
                function_name: SEND,
                output: None,
                error: None,
                child_workflow_id: None,
                serialization: None,
                started_at_ms: now,
                completed_at_ms: now,
            };
            rt.db().send(&uuid, destination, topic, &text, Some(&marker)).await?;
        }
        None => {
            let uuid = match idempotency_key {
                Some(k) => format!("{k}::{destination}"),
                None => uuid::Uuid::new_v4().to_string(),
            };
            rt.db().send(&uuid, destination, topic, &text, None).await?;
        }
    }
    rt.notifier().notify(&message_key(destination, topic));
    Ok(())
}

pub(crate) async fn recv<T: DeserializeOwned>(topic: Option<&str>, timeout: Duration) -> Result<Option<T>> {
    let (rt, ctx) = match context::position()? {
        Position::Workflow(rt, ctx) => (rt, ctx),
        Position::InStep(..) => return Err(Error::InStep("DBOS::recv")),
        Position::Outside(_) => return Err(Error::NotInWorkflow("DBOS::recv")),
    };
    let topic = topic.unwrap_or(NULL_TOPIC);
    let n = ctx.next_id();
    let m = ctx.next_id();
    if let Some(row) = ctx.recorded(n, RECV)? {
        let text = row.output.as_deref().unwrap_or("null");
        return serialization::from_json(text, row.serialization.as_deref(), "a received message");
    }
    let notify = rt.notifier().subscribe(&message_key(&ctx.id, topic));
    let wake = durable_deadline(&rt, &ctx, m, timeout).await?;
    let poll = rt.poll_interval();
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if rt.db().has_message(&ctx.id, topic).await? {
            break;
        }
        let left = remaining(wake);
        if left.is_zero() {
            break;
        }
        crate::notify::wait(notified, left.min(poll)).await;
    }
    let now = now_ms();
    let step = StepWrite {
        workflow_id: &ctx.id,
        function_id: n,
        function_name: RECV,
        output: None,
        error: None,
        child_workflow_id: None,
        serialization: Some(PORTABLE_JSON),
        started_at_ms: now,
        completed_at_ms: now,
    };
    match rt.db().consume_message(&step, topic).await? {
        Some((text, tag)) => serialization::from_json(&text, tag.as_deref(), "a received message"),
        None => Ok(None),
    }
}
