//! Recovery: PENDING workflows of this executor go back to their queue at launch; a workflow
//! the dispatcher claimed resumes from its records.

use crate::error::{Error, Result, WorkflowError};
use crate::queue::INTERNAL_QUEUE;
use crate::runtime::Runtime;
use crate::serialization::{self, Inputs};
use crate::sysdb::{Claimed, Outcome};
use crate::workflow::{spawn_execution, Resumed};

/// Moves this executor's unfinished workflows (of this version) to the queue.
pub(crate) async fn recover_pending(rt: &Runtime) -> Result<u64> {
    let n = rt.db().recover_pending(INTERNAL_QUEUE).await?;
    if n > 0 {
        tracing::info!("recovering {n} pending workflow(s)");
    }
    Ok(n)
}

/// Why a workflow's execution starts from its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Claimed off a queue (its first run, or a recovery).
    Claimed,
    /// Loaded again after it was unloaded while it waited (`unload.rs`): not a recovery, and
    /// not when an execution of it already runs here.
    Reload,
}

/// Starts a claimed workflow: resumes it from its records (or sets it aside after too many
/// attempts, or fails it when its inputs cannot be decoded).
pub(crate) async fn resume(rt: &Runtime, c: Claimed) -> Result<()> {
    start(rt, c, Start::Claimed).await
}

/// Starts workflow `c` from its row (see [`Start`]).
pub(crate) async fn start(rt: &Runtime, c: Claimed, why: Start) -> Result<()> {
    let limit = i64::from(rt.config().max_recovery_attempts);
    if why == Start::Claimed && c.recovery_attempts > limit + 1 {
        tracing::warn!(workflow_id = %c.id, attempts = c.recovery_attempts, "too many recovery attempts; setting the workflow aside");
        rt.db().dead_letter(&c.id, c.recovery_attempts).await?;
        rt.notifier().notify(&crate::notify::done_key(&c.id));
        return Ok(());
    }
    let name = c.name.clone().unwrap_or_default();
    let Some(entry) = rt.registry().get(&name) else {
        tracing::error!(workflow_id = %c.id, "{}", Error::NotRegistered { name });
        return Ok(());
    };
    let tag = c.serialization.as_deref();
    let call = Inputs::parse(c.inputs.as_deref(), tag)
        .and_then(entry.resume)
        .and_then(|call| {
            // The output is written in the format the row was started with.
            call.format.set(serialization::Format::of_tag(tag)?);
            Ok(call)
        });
    match call {
        Ok(call) => {
            let recorded = if c.has_steps {
                rt.db().load_steps(&c.id).await?
            } else {
                Vec::new()
            };
            if why == Start::Reload && (rt.runs(&c.id) || rt.is_stopping()) {
                // Started here meanwhile (resumed by an operator, say), or shutting down (the
                // next launch recovers it).
                return Ok(());
            }
            if why == Start::Claimed && (c.recovery_attempts > 1 || !recorded.is_empty()) {
                // Attempted before, or with records already: a recovery (the first run of a
                // queued workflow is not).
                rt.metrics().workflow_recovered();
            }
            drop(spawn_execution(
                rt,
                &name,
                c.id,
                call.body,
                Resumed {
                    recorded,
                    resumed: true,
                    deadline_ms: c.deadline_ms,
                    trace: c.attributes.as_deref(),
                },
            ));
        }
        Err(e) => {
            // Undecodable inputs never succeed: fail the workflow at once.
            tracing::error!(workflow_id = %c.id, "cannot rebuild the workflow's arguments: {e}");
            let text = serialization::to_json(&e.to_portable(), "an error")?;
            rt.db()
                .complete_workflow(&c.id, &Outcome::Error(text))
                .await?;
            rt.notifier().notify(&crate::notify::done_key(&c.id));
        }
    }
    Ok(())
}
