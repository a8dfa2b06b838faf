//! Recovery and dispatch: PENDING workflows of this executor go back to the internal queue at
//! launch; the dispatcher claims queued workflows and resumes them from their records.

use crate::error::{Error, Result, WorkflowError};
use crate::queue::INTERNAL_QUEUE;
use crate::runtime::Runtime;
use crate::serialization::{self, Inputs};
use crate::sysdb::{Claimed, Outcome};
use crate::workflow::spawn_execution;
use std::time::Duration;

/// Workflows claimed per dispatcher pass.
const CLAIM_BATCH: i64 = 100;

/// Moves this executor's unfinished workflows (of this version) to the queue.
pub(crate) async fn recover_pending(rt: &Runtime) -> Result<u64> {
    let n = rt.db().recover_pending(INTERNAL_QUEUE).await?;
    if n > 0 {
        tracing::info!("recovering {n} pending workflow(s)");
    }
    Ok(n)
}

/// Claims and runs queued workflows until shutdown: every second (±5 %), or at once when woken.
/// A pass under way when shutdown begins finishes (its claim commits or not); none starts after.
pub(crate) async fn dispatch_loop(rt: Runtime) {
    while !rt.is_stopping() {
        match dispatch_once(&rt).await {
            Ok(n) if n as i64 == CLAIM_BATCH => continue,
            Ok(_) => {}
            Err(Error::ShuttingDown) => return,
            Err(e) => tracing::warn!("dispatcher pass failed: {e}"),
        }
        let jitter = 0.95 + fastrand::f64() * 0.1;
        let nap = tokio::time::timeout(Duration::from_secs_f64(jitter), rt.dispatcher_woken());
        if rt.unless_stopping(nap).await.is_err() {
            return;
        }
    }
}

/// One pass: claims up to a batch and starts each claimed workflow. Returns how many were claimed.
pub(crate) async fn dispatch_once(rt: &Runtime) -> Result<usize> {
    let claimed = rt.db().claim(INTERNAL_QUEUE, CLAIM_BATCH).await?;
    let count = claimed.len();
    for c in claimed {
        match resume(rt, c).await {
            Ok(()) => {}
            // The rest stay PENDING under this executor and resume at its next launch.
            Err(Error::ShuttingDown) => return Err(Error::ShuttingDown),
            Err(e) => tracing::error!("resuming a workflow failed: {e}"),
        }
    }
    Ok(count)
}

async fn resume(rt: &Runtime, c: Claimed) -> Result<()> {
    let limit = i64::from(rt.config().max_recovery_attempts);
    if c.recovery_attempts > limit + 1 {
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
    let call =
        Inputs::parse(c.inputs.as_deref(), c.serialization.as_deref()).and_then(entry.resume);
    match call {
        Ok(call) => {
            let recorded = rt.db().load_steps(&c.id).await?;
            if c.recovery_attempts > 1 || !recorded.is_empty() {
                // Attempted before, or with records already: a recovery (the first run of a
                // queued workflow is not).
                rt.metrics().workflow_recovered();
            }
            drop(spawn_execution(
                rt,
                &name,
                c.id,
                call.body,
                recorded,
                true,
                c.deadline_ms,
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
