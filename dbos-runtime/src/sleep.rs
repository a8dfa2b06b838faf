//! `DBOS::sleep`: a durable sleep. In a workflow body its wake-up time is recorded (SYSDB.md
//! rule 18), so a workflow resumed after a crash sleeps only what remains.

use crate::context::Wakeup;
use crate::context::{self, Position};
use crate::error::Result;
use crate::notify::WaitsOn;
use crate::operation::{self, Begun, Site, Stamp, SLEEP};
use crate::unload;
use std::time::Duration;
use tracing::Instrument;

/// Sleeps `d`: recorded in a workflow body, a plain sleep elsewhere. A shutdown ends a
/// recorded sleep at once with [`crate::Error::ShuttingDown`], a cancel of the workflow with
/// [`crate::Error::WorkflowCancelled`].
pub(crate) async fn sleep(d: Duration) -> Result<()> {
    let span = operation::op_span!("dbos.sleep", SLEEP, duration_ms = d.as_millis());
    sleep_here(d).instrument(span).await
}

async fn sleep_here(d: Duration) -> Result<()> {
    if d.is_zero() {
        // Never waits, so nothing is recorded and no position is taken.
        context::position()?;
        return Ok(());
    }
    let wake = match operation::begin(SLEEP)? {
        Site::Workflow(Begun::Recorded(row)) => {
            operation::instant_at(operation::recorded_wake_ms(&row)?)
        }
        Site::Workflow(Begun::Run(op)) => op.record_wake(d, Stamp::AtWake).await?,
        Site::InStep(..) | Site::Outside(_) => {
            tokio::time::sleep(d).await;
            return Ok(());
        }
    };
    match context::position()? {
        // A replay check only follows the records: what comes after the sleep is recorded,
        // or the records end there.
        Position::Workflow(_, ctx) if ctx.replay_only => Ok(()),
        Position::Workflow(rt, ctx) => {
            // A long sleep unloads the workflow (see `unload.rs`), when nothing else is under
            // way.
            let unload_at = std::sync::Mutex::new(unload::unload_at(&rt, &ctx, Some(wake)));
            let wakeup = || Wakeup {
                on: WaitsOn::Time,
                at: wake,
            };
            // The sleep counts as under way (a recv beside it must not unload the workflow).
            let _holding = ctx.hold();
            let long = Box::pin(unload::after_waiting(&rt, &ctx, &unload_at, wakeup, 1));
            let slept = operation::interruptible(&rt, &ctx, async {
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => {}
                    never = long => match never {},
                }
            });
            slept.await
        }
        Position::InStep(rt, _) | Position::Outside(rt) => {
            rt.unless_stopping(tokio::time::sleep_until(wake)).await
        }
    }
}
