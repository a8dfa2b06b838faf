//! Durable sleep, and the recorded deadlines that `recv` and `get_event` wait for.

use crate::context::WfCtx;
use crate::dbos::Runtime;
use crate::error::{Error, Result};
use crate::serialization::{self, PORTABLE_JSON};
use crate::sysdb::{now_ms, StepWrite};
use std::time::Duration;

pub(crate) const SLEEP: &str = "DBOS.sleep";

/// Records (or replays) operation `n` as a `DBOS.sleep` whose wake-up is `now + d`; returns the
/// wake-up time in epoch milliseconds. A resumed workflow gets the original wake-up.
pub(crate) async fn durable_deadline(rt: &Runtime, ctx: &WfCtx, n: i32, d: Duration) -> Result<i64> {
    if let Some(row) = ctx.recorded(n, SLEEP)? {
        let secs: f64 = serialization::from_json(row.output.as_deref().unwrap_or("0"), row.serialization.as_deref(), "a recorded sleep")?;
        return Ok((secs * 1000.0).round() as i64);
    }
    let now = now_ms();
    let wake = now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2));
    let output = serde_json::Number::from_f64(wake as f64 / 1000.0)
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
            completed_at_ms: wake,
        })
        .await?;
    Ok(wake)
}

/// Time left until `wake_ms`.
pub(crate) fn remaining(wake_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(wake_ms - now_ms()).unwrap_or(0))
}
