//! Unloading: a workflow that has waited long in `recv`, `DBOS::sleep` or a child's `get_result`
//! leaves memory, and is loaded again by replaying its records when its message comes, the
//! child ends or its wake-up time passes.
//!
//! A waiting workflow in memory holds its whole body's future, its task and its context
//! (about 5 KiB). Once a wait has lasted [`DbosConfig::unload_waiting_after`], the wait asks
//! its execution to drop the body ([`request`]); the execution ends without an outcome (the
//! row stays `PENDING`, under this executor) and the notifier parks the workflow: its ID, what
//! it waits on (a topic, a child) and its wake-up time. `recovery::reload_parked` loads it again when one of
//! them comes: it reads the row, and resumes it from its records as recovery would. The wait's
//! deadline is recorded before the wait begins, so the replayed wait ends when the first one
//! would have; a message that came meanwhile is taken by the replayed `recv`.
//!
//! [`DbosConfig::unload_waiting_after`]: crate::DbosConfig::unload_waiting_after

use crate::context::{Wakeup, WfCtx};
use crate::runtime::Runtime;
use std::sync::Mutex;
use tokio::time::Instant;

/// When a wait of `ctx` that lasts until `until` may unload its workflow: the configured time
/// from now, if unloading is on, the execution allows it, the wait is in the body itself (not
/// in a branch of a `DBOS::join` or `DBOS::select`) and it lasts beyond that time.
pub(crate) fn unload_at(rt: &Runtime, ctx: &WfCtx, until: Option<Instant>) -> Option<Instant> {
    let after = rt.config().unload_waiting_after?;
    if !ctx.unload.allowed() || ctx.replay_only || crate::context::in_branch() || ctx.in_group() {
        return None;
    }
    let at = crate::operation::after(Instant::now(), after);
    match until {
        Some(until) if until <= at => None,
        _ => Some(at),
    }
}

/// Sleeps until `at` (forever for `None`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Unloads the workflow of `ctx` once its wait has lasted until `at` (see [`unload_at`]), with
/// `wakeup` as what brings it back, and never resolves. The caller is a wait with `own`
/// operations under way (its own, or none); while anything else is under way in the body the
/// request is refused, and `at` moves on by the configured time to try again. Callers box it, so
/// that a waiting workflow's future keeps room only for a pointer to it.
pub(crate) async fn after_waiting(
    rt: &Runtime,
    ctx: &WfCtx,
    at: &Mutex<Option<Instant>>,
    wakeup: impl Fn() -> Wakeup,
    own: u32,
) -> std::convert::Infallible {
    loop {
        let next = *lock(at);
        sleep_until(next).await;
        // The body is dropped while this waits, unless the request is refused.
        ctx.ask_unload(wakeup(), own).await;
        *lock(at) = retry_at(rt);
    }
}

/// The next time a wait refused now tries to unload again.
fn retry_at(rt: &Runtime) -> Option<Instant> {
    let after = rt.config().unload_waiting_after?;
    Some(crate::operation::after(Instant::now(), after))
}

/// Parks workflow `id`, whose execution just ended unloaded, until `wakeup` (or its own
/// deadline, `deadline_ms`, where its timeout cancels it). Once parked it looks at its row: a
/// message (or a child's end) that came while the execution was ending woke nobody, and a
/// cancel in that moment found nothing to stop.
pub(crate) async fn park(rt: &Runtime, id: &str, wakeup: Wakeup, deadline_ms: Option<i64>) {
    let at = match deadline_ms {
        Some(ms) => wakeup.at.min(crate::operation::instant_at(ms)),
        None => wakeup.at,
    };
    if !rt.notifier().park(id, wakeup.on.clone(), at) {
        return;
    }
    tracing::debug!(workflow_id = %id, "workflow unloaded while it waits");
    match rt.db().parked_state(id, &wakeup.on).await {
        Ok((true, false)) => {}
        // Finished or cancelled meanwhile: nothing to load again.
        Ok((false, _)) => {
            rt.notifier().unpark(id);
        }
        Ok((true, true)) => rt.notifier().wake_parked(id),
        // Unsure: load it again; its wait looks for itself.
        Err(e) => {
            tracing::debug!(workflow_id = %id, "looking at a parked workflow's row: {e}");
            rt.notifier().wake_parked(id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
