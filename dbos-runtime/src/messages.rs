//! `send` and `recv`: messages to a workflow, delivered exactly once.

use crate::context::{self, Position};
use crate::error::{Error, Result};
use crate::notify::message_key;
use crate::serialization::{self, PORTABLE_JSON};
use crate::sleep::{durable_deadline, Stamp};
use crate::sysdb::{now_ms, StepWrite, NULL_TOPIC};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

const SEND: &str = "DBOS.send";
const RECV: &str = "DBOS.recv";

/// Sends `message` to `destination` on `topic` (SYSDB rule 13). From a workflow body the insert
/// and the `DBOS.send` marker share one transaction, so a replay never sends again.
pub(crate) async fn send<M: Serialize + ?Sized>(
    destination: &str,
    message: &M,
    topic: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<()> {
    let topic = topic.unwrap_or(NULL_TOPIC);
    let text = serialization::to_json(message, "a message")?;
    let message_uuid = match idempotency_key {
        Some(k) => format!("{k}::{destination}"),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let rt = match context::position()? {
        Position::Workflow(rt, ctx) => {
            let n = ctx.next_id();
            if ctx.recorded(n, SEND)?.is_some() {
                return Ok(());
            }
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
            rt.db()
                .send(&message_uuid, destination, topic, &text, Some(&marker))
                .await?;
            rt
        }
        Position::Outside(rt) | Position::InStep(rt, _) => {
            rt.db()
                .send(&message_uuid, destination, topic, &text, None)
                .await?;
            rt
        }
    };
    rt.notifier().notify(&message_key(destination, topic));
    Ok(())
}

/// Takes the oldest unconsumed message on `topic` for the calling workflow, waiting until the
/// recorded deadline (SYSDB rule 14). Operation `n` is the `DBOS.recv`, `n + 1` the
/// `DBOS.sleep` that holds the deadline; consuming the message and recording `n` are one
/// transaction, so a message is delivered exactly once.
pub(crate) async fn recv<T: DeserializeOwned>(
    topic: Option<&str>,
    timeout: Duration,
) -> Result<Option<T>> {
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
    let started = now_ms();
    let Some(waiter) = rt.notifier().claim(message_key(&ctx.id, topic)) else {
        // Another recv of this workflow waits on this topic: one of them would get nothing.
        return Err(Error::ConcurrentExecution {
            workflow_id: ctx.id.clone(),
            function_id: n,
        });
    };
    let db = rt.db();
    let id = ctx.id.as_str();
    let present = move || async move { Ok(db.has_message(id, topic).await?.then_some(())) };
    // Only a recv that has to wait records its deadline: a ready message costs no extra commit.
    if present().await?.is_none() && !timeout.is_zero() {
        let deadline = durable_deadline(&rt, &ctx, m, timeout, Stamp::AtWrite).await?;
        waiter.until(deadline, present).await?;
    }
    let step = StepWrite {
        workflow_id: &ctx.id,
        function_id: n,
        function_name: RECV,
        output: None,
        error: None,
        child_workflow_id: None,
        serialization: Some(PORTABLE_JSON),
        started_at_ms: started,
        completed_at_ms: now_ms(),
    };
    let taken = db.consume_message(&step, topic).await?;
    drop(waiter);
    match taken {
        Some((text, tag)) => serialization::from_json(&text, tag.as_deref(), "a received message"),
        None => Ok(None),
    }
}
