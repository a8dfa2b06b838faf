//! `send` and `recv`: messages to a workflow, delivered exactly once.

use crate::context;
use crate::context::Wakeup;
use crate::error::{Error, Result};
use crate::notify::message_key;
use crate::notify::WaitsOn;
use crate::operation::{self, Begun, Site, SELECT};
use crate::serialization::{self, PORTABLE_JSON};
use crate::sysdb::{now_ms, StepWrite, NULL_TOPIC};
use crate::unload;
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;
use tracing::Instrument;

const SEND: &str = "DBOS.send";
const RECV: &str = "DBOS.recv";

/// Sends `message` to `destination` on `topic` (SYSDB rule 13). From a workflow body the insert
/// and the `DBOS.send` record share one transaction, so a replay never sends again.
pub(crate) async fn send<M: Serialize + ?Sized>(
    destination: &str,
    message: &M,
    topic: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<()> {
    let span = operation::op_span!("dbos.send", SEND, destination = destination);
    send_here(destination, message, topic, idempotency_key)
        .instrument(span)
        .await
}

async fn send_here<M: Serialize + ?Sized>(
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
    let rt = match operation::begin(SEND)? {
        Site::Workflow(Begun::Recorded(_)) => return Ok(()),
        Site::Workflow(Begun::Run(op)) => {
            let marker = op.write(None, None, None);
            let sent = op
                .rt()
                .db()
                .send(&message_uuid, destination, topic, &text, Some(&marker))
                .await;
            op.settle(sent)?;
            op.rt().clone()
        }
        Site::Outside(rt) | Site::InStep(rt, _) => {
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
/// recorded deadline (SYSDB rule 14). The operation is the `DBOS.recv`; the next position holds
/// the `DBOS.sleep` of its deadline. Consuming the message and recording the `DBOS.recv` are
/// one transaction, so a message is delivered exactly once.
pub(crate) async fn recv<T: DeserializeOwned>(
    topic: Option<&str>,
    timeout: Duration,
) -> Result<Option<T>> {
    let span = operation::op_span!("dbos.recv", RECV, topic = topic.unwrap_or(NULL_TOPIC));
    recv_here(topic, timeout).instrument(span).await
}

async fn recv_here<T: DeserializeOwned>(
    topic: Option<&str>,
    timeout: Duration,
) -> Result<Option<T>> {
    let op = match operation::begin_with_deadline(RECV)? {
        Site::Workflow(Begun::Recorded(row)) => {
            let text = row.output.as_deref().unwrap_or("null");
            return serialization::from_json(
                text,
                row.serialization.as_deref(),
                "a received message",
            );
        }
        Site::Workflow(Begun::Run(op)) => op,
        Site::InStep(..) => return Err(Error::InStep("DBOS::recv")),
        Site::Outside(_) => return Err(Error::NotInWorkflow("DBOS::recv")),
    };
    let topic = topic.unwrap_or(NULL_TOPIC);
    let rt = op.rt();
    let Some(waiter) = rt.notifier().claim(op.workflow_id(), topic) else {
        if context::in_branch() {
            // Two branches of one join or select wait on one topic: which message goes to
            // which would depend on timing.
            let why = format!(
                "workflow {}: two recvs on topic {topic:?} at once (branches of a DBOS::join or \
                 DBOS::select); receive on one topic from one branch",
                op.workflow_id()
            );
            context::branch_fault(&why);
            return Err(Error::BadInputs(why));
        }
        // Another recv of this workflow waits on this topic: one of them would get nothing.
        return Err(Error::ConcurrentExecution {
            workflow_id: op.workflow_id().to_owned(),
            function_id: op.position(),
        });
    };
    let db = rt.db();
    // The database calls are boxed, so that a parked workflow's future keeps no room for them
    // (a workflow waiting in recv held 15 KB unboxed).
    let id = op.workflow_id();
    let select = context::current_select();
    if timeout.is_zero() {
        // No wait: the transaction below takes a message that is there or records none.
    } else if select.is_none() && db.takes_messages_in_one_statement() {
        // Postgres: each look takes the message and records the recv in one statement, so a
        // message that is there costs one round trip and no probe. The first look also
        // records the deadline when nothing is there (unless an earlier execution did).
        let mut first = op.unrecorded_deadline()?;
        let wake = operation::wake(timeout)?;
        let recorded_first = std::sync::atomic::AtomicBool::new(false);
        let take = |_| {
            let first = first.take();
            let (op, wake, recorded_first) = (&op, &wake, &recorded_first);
            async move {
                let step = op.write(None, None, None);
                let deadline = first.as_ref().map(|sleep| {
                    let mut d = sleep.write(Some(&wake.output), None, Some(PORTABLE_JSON));
                    (d.started_at_ms, d.completed_at_ms) = (wake.now_ms, wake.now_ms);
                    d
                });
                let taken = Box::pin(db.take_message(&step, topic, deadline.as_ref())).await;
                if let (Some(sleep), Ok(None)) = (&first, &taken) {
                    sleep.committed();
                    recorded_first.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                match taken {
                    Ok(Some(taken)) => {
                        op.committed();
                        Ok(Some(taken))
                    }
                    other => op.settle_quiet(other),
                }
            }
        };
        let seen = std::sync::OnceLock::new();
        let deadline = || async {
            let at = if recorded_first.load(std::sync::atomic::Ordering::Relaxed) {
                wake.at
            } else {
                Box::pin(op.deadline(timeout)).await?
            };
            let _ = seen.set(at);
            Ok(at)
        };
        // A long wait unloads the workflow (see `unload.rs`): during a nap, when nothing but
        // this recv is under way.
        let unload_at = std::sync::Mutex::new(unload::unload_at(rt, op.ctx(), Some(wake.at)));
        let wakeup = || Wakeup {
            on: WaitsOn::Message(topic.to_owned()),
            at: seen.get().copied().unwrap_or(wake.at),
        };
        let interrupt = || async {
            let long = Box::pin(unload::after_waiting(rt, op.ctx(), &unload_at, wakeup, 1));
            tokio::select! {
                e = op.interrupted() => e,
                never = long => match never {},
            }
        };
        // Each look and the deadline write are statements that must finish once sent: only
        // the naps between them are interrupted.
        let taken = waiter.until_lazy(deadline, take, interrupt).await?;
        if let Some((text, tag)) = taken {
            drop(waiter);
            return serialization::from_json(&text, tag.as_deref(), "a received message");
        }
    } else {
        // SQLite (or a select's branch): probe, and only a recv that has to wait records its
        // deadline (a ready message costs no extra commit), then waits, probing again once
        // armed. The probes cost no round trip on SQLite.
        let present =
            move || async move { Ok(Box::pin(db.has_message(id, topic)).await?.then_some(())) };
        if present().await?.is_none() {
            let deadline = Box::pin(op.deadline(timeout)).await?;
            // A long wait unloads the workflow (see `unload.rs`), when nothing but this recv
            // is under way; the checks only read.
            let unload_at = std::sync::Mutex::new(unload::unload_at(rt, op.ctx(), Some(deadline)));
            let wakeup = || Wakeup {
                on: WaitsOn::Message(topic.to_owned()),
                at: deadline,
            };
            let long = Box::pin(unload::after_waiting(rt, op.ctx(), &unload_at, wakeup, 1));
            op.wait(async {
                tokio::select! {
                    waited = waiter.until(deadline, present) => waited,
                    never = long => match never {},
                }
            })
            .await??;
        }
    }
    let record = op.write(None, None, Some(PORTABLE_JSON));
    // The deadline passed (or, on SQLite, a message is there): take it, or record that none
    // came. A recv that is a branch of a DBOS::select records the select's outcome (this
    // branch won) in the transaction that takes the message: a message is never taken by a
    // losing branch.
    let claim_output = match &select {
        Some((claim, index)) => match claim.close_for_self(*index) {
            Some(output) => Some(output),
            // Another branch won the select: this one is about to be dropped and must not take
            // the message.
            None => return std::future::pending().await,
        },
        None => None,
    };
    let claim = match (&select, &claim_output) {
        (Some((claim, _)), Some(output)) => Some(StepWrite {
            workflow_id: op.workflow_id(),
            function_id: claim.at,
            function_name: SELECT,
            output: Some(output),
            error: None,
            child_workflow_id: None,
            serialization: Some(PORTABLE_JSON),
            started_at_ms: claim.started_ms,
            completed_at_ms: now_ms(),
        }),
        _ => None,
    };
    let taken = op.settle(Box::pin(db.consume_message(&record, topic, claim.as_ref())).await)?;
    if let Some((claim, index)) = &select {
        claim.won_by(*index);
    }
    drop(waiter);
    match taken {
        Some((text, tag)) => serialization::from_json(&text, tag.as_deref(), "a received message"),
        None => Ok(None),
    }
}
