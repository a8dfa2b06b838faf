//! Unloading: a workflow that has waited long in `recv` or `DBOS::sleep` leaves memory, and is
//! loaded again by replaying its records when its message comes or its wake-up time passes.
//!
//! A waiting workflow in memory holds its whole body's future, its task and its context
//! (about 5 KiB). Once a wait has lasted [`DbosConfig::unload_waiting_after`], the wait asks
//! its execution to drop the body ([`request`]); the execution ends without an outcome (the
//! row stays `PENDING`, under this executor) and the notifier parks the workflow: its ID, the
//! topic it waits on and its wake-up time. The keeper ([`keeper`]) loads it again when one of
//! them comes: it reads the row, and resumes it from its records as recovery would. The wait's
//! deadline is recorded before the wait begins, so the replayed wait ends when the first one
//! would have; a message that came meanwhile is taken by the replayed `recv`.
//!
//! [`DbosConfig::unload_waiting_after`]: crate::DbosConfig::unload_waiting_after

use crate::context::WfCtx;
use crate::error::Result;
use crate::notify::SAFETY_NET;
use crate::runtime::Runtime;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

/// How many parked `recv`s one probe query looks up.
const PROBE_CHUNK: usize = 500;

/// What brings an unloaded workflow back: a message on `topic` (for a `recv`), or the time
/// `at` (its wait's deadline, or a sleep's end).
#[derive(Debug, Clone)]
pub(crate) struct Wakeup {
    pub topic: Option<String>,
    pub at: Instant,
}

/// An execution's side of unloading: whether its body may be dropped, and the request to do it.
#[derive(Debug, Default)]
pub(crate) struct UnloadSlot {
    /// Set by the execution task that can drop the body (a body run any other way, by a replay
    /// check say, never unloads).
    allowed: std::sync::atomic::AtomicBool,
    /// The wake-up asked for, and how many operations the asking wait has under way itself.
    request: Mutex<Option<(Wakeup, u32)>>,
    requested: Notify,
    /// The execution found other operations under way: the wait goes on in memory.
    refused: Notify,
}

impl UnloadSlot {
    /// Lets waits of this execution unload it (only its execution task can).
    pub(crate) fn allow(&self) {
        self.allowed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl WfCtx {
    /// Resolves with the wake-up once a wait asked to unload this execution while nothing else
    /// was under way in it (a request made beside another operation is refused, and the wait
    /// goes on).
    pub(crate) async fn unload_requested(&self) -> Wakeup {
        loop {
            let notified = self.unload.requested.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let request = lock(&self.unload.request).take();
            match request {
                Some((wakeup, own)) if self.in_flight() == own => return wakeup,
                Some(_) => self.unload.refused.notify_one(),
                None => {}
            }
            notified.await;
        }
    }
}

/// When a wait of `ctx` that lasts until `until` may unload its workflow: the configured time
/// from now, if unloading is on, the execution allows it, the wait is in the body itself (not
/// in a branch of a `DBOS::join` or `DBOS::select`) and it lasts beyond that time.
pub(crate) fn unload_at(rt: &Runtime, ctx: &WfCtx, until: Option<Instant>) -> Option<Instant> {
    let after = rt.config().unload_waiting_after?;
    if !ctx.unload.allowed.load(std::sync::atomic::Ordering::SeqCst)
        || ctx.replay_only
        || crate::context::in_branch()
        || ctx.in_group()
    {
        return None;
    }
    let at = crate::operation::after(Instant::now(), after);
    match until {
        Some(until) if until <= at => None,
        _ => Some(at),
    }
}

/// Sleeps until `at` (forever for `None`).
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Asks the execution of `ctx` to drop its body and park the workflow until `wakeup`. The
/// caller is a wait with `own` operations under way (its own, or none) and nothing else running
/// in it. When nothing else is under way in the body either, the body is dropped while it waits
/// here and this never resolves; otherwise it resolves at once, refused, and the wait goes on.
pub(crate) async fn request(ctx: &WfCtx, wakeup: Wakeup, own: u32) {
    if ctx.in_flight() != own {
        return;
    }
    let refused = ctx.unload.refused.notified();
    tokio::pin!(refused);
    refused.as_mut().enable();
    *lock(&ctx.unload.request) = Some((wakeup, own));
    ctx.unload.requested.notify_one();
    refused.await;
}

/// The next time a wait refused at `now` tries to unload again.
pub(crate) fn retry_at(rt: &Runtime) -> Option<Instant> {
    let after = rt.config().unload_waiting_after?;
    Some(crate::operation::after(Instant::now(), after))
}

/// Parks workflow `id`, whose execution just ended unloaded, until `wakeup` (or its own
/// deadline, `deadline_ms`, where its timeout cancels it). Once parked it looks at its row: a
/// message that came while the execution was ending woke nobody, and a cancel in that moment
/// found nothing to stop.
pub(crate) async fn park(rt: &Runtime, id: &str, wakeup: Wakeup, deadline_ms: Option<i64>) {
    let at = match deadline_ms {
        Some(ms) => wakeup.at.min(crate::operation::instant_at(ms)),
        None => wakeup.at,
    };
    if !rt.notifier().park(id, wakeup.topic.as_deref(), at) {
        return;
    }
    tracing::debug!(workflow_id = %id, "workflow unloaded while it waits");
    match rt.db().parked_state(id, wakeup.topic.as_deref()).await {
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

/// Loads parked workflows again when their message comes or their time passes, and looks at
/// their rows when the database changed unseen (and every [`SAFETY_NET`]), until shutdown.
pub(crate) async fn keeper(rt: Runtime) {
    // Loads run a few at a time: a burst of wake-ups must not take every connection.
    let loads = Arc::new(Semaphore::new(
        (rt.config().max_connections / 2).max(1) as usize
    ));
    let probing = Arc::new(AtomicBool::new(false));
    let mut last_probe = Instant::now();
    while !rt.is_stopping() {
        let now = Instant::now();
        let probe_due = now >= last_probe + SAFETY_NET;
        let work = rt.notifier().take_parked(now, probe_due);
        for id in work.woken {
            reload(&rt, &loads, id);
        }
        if !work.probe.is_empty() {
            last_probe = now;
            // In a task of its own: the keeper goes on taking wake-ups meanwhile.
            if !probing.swap(true, Ordering::SeqCst) {
                let (rt2, probing) = (rt.clone(), probing.clone());
                rt.spawn(async move {
                    probe(&rt2, work.probe).await;
                    probing.store(false, Ordering::SeqCst);
                });
            }
        } else if probe_due {
            last_probe = now;
        }
        let next = work
            .next
            .map_or(last_probe + SAFETY_NET, |n| n.min(last_probe + SAFETY_NET));
        let wait = async {
            tokio::select! {
                () = rt.notifier().parked_changed() => {}
                () = tokio::time::sleep_until(next) => {}
            }
        };
        if rt.unless_stopping(wait).await.is_err() {
            return;
        }
    }
}

/// Looks at the rows of the parked workflows in `parked` (ID, and the topic of a `recv`):
/// forgets those cancelled, wakes the `recv`s whose message is there.
async fn probe(rt: &Runtime, parked: Vec<(String, Option<String>)>) {
    for chunk in parked.chunks(PROBE_CHUNK) {
        let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
        match rt.db().cancelled_among(&ids).await {
            Ok(cancelled) => cancelled.iter().for_each(|id| {
                rt.notifier().unpark(id);
            }),
            Err(e) => tracing::debug!("looking for cancelled parked workflows: {e}"),
        }
        let recvs: Vec<(String, String)> = chunk
            .iter()
            .filter_map(|(id, topic)| Some((id.clone(), topic.clone()?)))
            .collect();
        match rt.db().messages_waiting(&recvs).await {
            Ok(found) => found.iter().for_each(|id| rt.notifier().wake_parked(id)),
            Err(e) => tracing::debug!("looking for the messages of parked workflows: {e}"),
        }
    }
}

/// Loads workflow `id` again, in a task of its own (at most `loads` at once): resumes it from
/// its records when its row is still `PENDING` under this executor and no execution of it runs
/// here. When the row cannot be read, it is parked again and retried about a second later.
fn reload(rt: &Runtime, loads: &Arc<Semaphore>, id: String) {
    let (rt2, loads) = (rt.clone(), loads.clone());
    rt.spawn(async move {
        let rt = rt2;
        let Ok(_permit) = rt.unless_stopping(loads.acquire_owned()).await else {
            return;
        };
        if rt.is_stopping() || rt.runs(&id) {
            return;
        }
        if let Err(e) = reload_now(&rt, &id).await {
            if rt.is_stopping() {
                return;
            }
            tracing::warn!(workflow_id = %id, "loading a parked workflow again failed: {e}; retrying in about 1 s");
            let jitter = Duration::from_millis(fastrand::u64(0..500));
            let at = Instant::now() + Duration::from_secs(1) + jitter;
            rt.notifier().park(&id, None, at);
        }
    });
}

async fn reload_now(rt: &Runtime, id: &str) -> Result<()> {
    match rt.db().reloadable(id).await? {
        Some(c) => crate::recovery::start(rt, c, crate::recovery::Start::Reload).await,
        // Finished, cancelled, or taken over by another process meanwhile.
        None => Ok(()),
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
