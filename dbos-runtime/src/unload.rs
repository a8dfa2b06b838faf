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
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
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
    request: Mutex<Option<Wakeup>>,
    requested: Notify,
}

impl UnloadSlot {
    /// Lets waits of this execution unload it (only its execution task can).
    pub(crate) fn allow(&self) {
        self.allowed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Resolves with the wake-up once a wait asked to unload the execution.
    pub(crate) async fn requested(&self) -> Wakeup {
        loop {
            let notified = self.requested.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(w) = lock(&self.request).take() {
                return w;
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

/// Asks the execution of `ctx` to drop its body and park the workflow until `wakeup`; never
/// resolves (the body is dropped while it waits here). Call it only while nothing is under way
/// in the body but this wait.
pub(crate) async fn request(ctx: &WfCtx, wakeup: Wakeup) -> std::convert::Infallible {
    *lock(&ctx.unload.request) = Some(wakeup);
    ctx.unload.requested.notify_one();
    std::future::pending().await
}

/// Parks workflow `id`, whose execution just ended unloaded, until `wakeup` (or its own
/// deadline, `deadline_ms`, where its timeout cancels it). A `recv` looks for its message once
/// parked: one that came while the execution was ending woke nobody.
pub(crate) async fn park(rt: &Runtime, id: &str, wakeup: Wakeup, deadline_ms: Option<i64>) {
    let at = match deadline_ms {
        Some(ms) => wakeup.at.min(crate::operation::instant_at(ms)),
        None => wakeup.at,
    };
    if !rt.notifier().park(id, wakeup.topic.as_deref(), at) {
        return;
    }
    tracing::debug!(workflow_id = %id, "workflow unloaded while it waits");
    if let Some(topic) = &wakeup.topic {
        match rt.db().has_message(id, topic).await {
            Ok(false) => {}
            Ok(true) => rt.notifier().wake_parked(id),
            // Unsure: load it again, its recv looks for itself.
            Err(e) => {
                tracing::debug!(workflow_id = %id, "looking for a parked workflow's message: {e}");
                rt.notifier().wake_parked(id);
            }
        }
    }
}

/// Loads parked workflows again when their message comes or their time passes, looks for their
/// messages when the database changed unseen (and every [`SAFETY_NET`]), until shutdown.
pub(crate) async fn keeper(rt: Runtime) {
    let mut last_probe = Instant::now();
    while !rt.is_stopping() {
        let changed = rt.notifier().parked_changed();
        tokio::pin!(changed);
        let now = Instant::now();
        let probe_due = now >= last_probe + SAFETY_NET;
        if probe_due {
            last_probe = now;
        }
        let work = rt.notifier().take_parked(now, probe_due);
        for id in work.woken {
            reload(&rt, id);
        }
        if !work.probe.is_empty() {
            last_probe = now;
            probe(&rt, work.probe).await;
        }
        let next = work
            .next
            .map_or(last_probe + SAFETY_NET, |n| n.min(last_probe + SAFETY_NET));
        let wait = async {
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep_until(next) => {}
            }
        };
        if rt.unless_stopping(wait).await.is_err() {
            return;
        }
    }
}

/// Wakes the parked `recv`s among `waiting` whose message is there.
async fn probe(rt: &Runtime, waiting: Vec<(String, String)>) {
    for chunk in waiting.chunks(PROBE_CHUNK) {
        match rt.db().messages_waiting(chunk).await {
            Ok(found) => found.iter().for_each(|id| rt.notifier().wake_parked(id)),
            Err(e) => {
                tracing::debug!("looking for the messages of parked workflows: {e}");
                return;
            }
        }
    }
}

/// Loads workflow `id` again, in a task of its own: resumes it from its records when its row
/// is still `PENDING` under this executor and no execution of it runs here. When the row
/// cannot be read, it is parked again and retried a second later.
fn reload(rt: &Runtime, id: String) {
    let rt2 = rt.clone();
    rt.spawn(async move {
        let rt = rt2;
        if rt.is_stopping() || rt.runs(&id) {
            return;
        }
        if let Err(e) = reload_now(&rt, &id).await {
            if rt.is_stopping() {
                return;
            }
            tracing::warn!(workflow_id = %id, "loading a parked workflow again failed: {e}; retrying in 1 s");
            let retry = Wakeup {
                topic: None,
                at: Instant::now() + Duration::from_secs(1),
            };
            rt.notifier().park(&id, retry.topic.as_deref(), retry.at);
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
