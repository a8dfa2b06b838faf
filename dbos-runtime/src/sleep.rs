//! Durable sleep, and the recorded deadlines that `recv` and `get_event` wait for.

use crate::context::{self, Position, WfCtx};
use crate::dbos::Runtime;
use crate::error::{Error, Result};
use crate::serialization::{self, PORTABLE_JSON};
use crate::sysdb::{now_ms, StepRow, StepWrite};
use std::time::Duration;
use tokio::time::Instant;

pub(crate) const SLEEP: &str = "DBOS.sleep";

/// A deadline far enough away to mean "never" without overflowing a clock.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Sleeps `d`. In a workflow body the wake-up time is recorded (SYSDB rule 18), so a workflow
/// resumed after a crash sleeps only what remains; elsewhere it is a plain sleep.
pub(crate) async fn sleep(d: Duration) -> Result<()> {
    match context::position()? {
        Position::Workflow(rt, ctx) if !d.is_zero() => {
            let n = ctx.next_id();
            let wake = durable_deadline(&rt, &ctx, n, d, Stamp::AtWake).await?;
            rt.unless_stopping(tokio::time::sleep_until(wake)).await?;
        }
        Position::Workflow(..) => {}
        Position::InStep(..) | Position::Outside(_) => tokio::time::sleep(d).await,
    }
    Ok(())
}

/// Which time a new `DBOS.sleep` row carries in `completed_at_epoch_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// The wake-up time: a `DBOS::sleep`.
    AtWake,
    /// The time of the write: the timeout of a `recv` or `get_event`.
    AtWrite,
}

/// Records (or replays) operation `n` as a `DBOS.sleep` whose wake-up is `now + d`, and returns
/// that wake-up on the tokio clock. A resumed workflow gets the recorded wake-up, so it waits
/// only for what remained when it stopped.
pub(crate) async fn durable_deadline(
    rt: &Runtime,
    ctx: &WfCtx,
    n: i32,
    d: Duration,
    stamp: Stamp,
) -> Result<Instant> {
    if let Some(row) = ctx.recorded(n, SLEEP)? {
        return Ok(instant_at(recorded_wake_ms(&row)?));
    }
    let start = Instant::now();
    let now = now_ms();
    let wake_ms = now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2));
    let output = serde_json::Number::from_f64(wake_ms as f64 / 1000.0)
        .map(|n| n.to_string())
        .ok_or_else(|| Error::BadInputs("sleep duration out of range".into()))?;
    rt.db()
        .record_step(&StepWrite {
            workflow_id: &ctx.id,
            function_id: n,
            function_name: SLEEP,
            output: Some(&output),
            error: None,
            child_workflow_id: None,
            serialization: Some(PORTABLE_JSON),
            started_at_ms: now,
            completed_at_ms: match stamp {
                Stamp::AtWake => wake_ms,
                Stamp::AtWrite => now,
            },
        })
        .await?;
    Ok(after(start, d))
}

/// `start + d`, or "never" when that does not fit the clock.
pub(crate) fn after(start: Instant, d: Duration) -> Instant {
    start.checked_add(d.min(FOREVER)).unwrap_or(start)
}

/// The wake-up a `DBOS.sleep` row holds: epoch seconds as a JSON number.
fn recorded_wake_ms(row: &StepRow) -> Result<i64> {
    let secs: f64 = serialization::from_json(
        row.output.as_deref().unwrap_or("0"),
        row.serialization.as_deref(),
        "a recorded sleep",
    )?;
    Ok((secs * 1000.0).round() as i64)
}

/// The tokio instant of the epoch time `wake_ms` (now, when it has passed).
fn instant_at(wake_ms: i64) -> Instant {
    let left = Duration::from_millis(u64::try_from(wake_ms.saturating_sub(now_ms())).unwrap_or(0));
    after(Instant::now(), left)
}
