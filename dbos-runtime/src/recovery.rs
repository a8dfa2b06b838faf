//! Recovery: PENDING workflows of this executor go back to their queue at launch; a workflow
//! the dispatcher claimed resumes from its records.

use crate::error::{Error, Result, WorkflowError};
use crate::notify::{WaitsOn, SAFETY_NET};
use crate::queue::INTERNAL_QUEUE;
use crate::runtime::Runtime;
use crate::serialization::{self, Inputs};
use crate::sysdb::{Claimed, Outcome};
use crate::workflow::{spawn_execution, Resumed};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How many parked workflows one probe query looks up.
const PROBE_CHUNK: usize = 500;
/// How often the rows of the workflows parked workflows wait for are looked at (an end in
/// another process notifies nobody here; an in-memory handle looks as often).
const DONE_POLL: Duration = Duration::from_secs(1);

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

// Workflows unloaded while they wait (see `unload.rs`) are loaded again here.

/// Loads parked workflows again when their message comes or their time passes, and looks at
/// their rows when the database changed unseen (and every [`SAFETY_NET`]), until shutdown.
pub(crate) async fn reload_parked(rt: Runtime) {
    // Loads run a few at a time: a burst of wake-ups must not take every connection.
    let loads = Arc::new(Semaphore::new(
        (rt.config().max_connections / 2).max(1) as usize
    ));
    // One probe at a time: one over many parked workflows may take longer than a second.
    let probing = Arc::new(AtomicBool::new(false));
    let mut last_probe = Instant::now();
    let mut last_poll = Instant::now();
    while !rt.is_stopping() {
        let now = Instant::now();
        let free = !probing.load(Ordering::SeqCst);
        let probe_due = free && now >= last_probe + SAFETY_NET;
        let poll_due = free && now >= last_poll + DONE_POLL;
        if poll_due {
            last_poll = now;
        }
        let work = rt.notifier().take_parked(now, probe_due, poll_due, free);
        for id in work.woken {
            reload(&rt, &loads, id);
        }
        if work.full_probe || probe_due {
            last_probe = now;
        }
        if !work.probe.is_empty() {
            // In a task of its own: the keeper goes on taking wake-ups meanwhile.
            probing.store(true, Ordering::SeqCst);
            let (rt2, probing) = (rt.clone(), probing.clone());
            let full = work.full_probe;
            rt.spawn(async move {
                probe(&rt2, work.probe, full).await;
                probing.store(false, Ordering::SeqCst);
                rt2.notifier().nudge_parked();
            });
        }
        let mut next = work
            .next
            .map_or(last_probe + SAFETY_NET, |n| n.min(last_probe + SAFETY_NET));
        if work.on_done {
            next = next.min(last_poll + DONE_POLL);
        }
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

/// Looks at the rows of the parked workflows in `parked` (ID, and what each waits on): wakes the
/// `recv`s whose message is there and those whose child has ended; a `full` probe also forgets
/// those cancelled. A child that runs or is parked here announces its end itself: its row is
/// not read.
async fn probe(rt: &Runtime, parked: Vec<(String, WaitsOn)>, full: bool) {
    for chunk in parked.chunks(PROBE_CHUNK) {
        if full {
            let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
            match rt.db().cancelled_among(&ids).await {
                Ok(cancelled) => cancelled.iter().for_each(|id| {
                    rt.notifier().unpark(id);
                }),
                Err(e) => tracing::debug!("looking for cancelled parked workflows: {e}"),
            }
        }
        let recvs: Vec<(String, String)> = chunk
            .iter()
            .filter_map(|(id, on)| match on {
                WaitsOn::Message(topic) => Some((id.clone(), topic.clone())),
                _ => None,
            })
            .collect();
        match rt.db().messages_waiting(&recvs).await {
            Ok(found) => found.iter().for_each(|id| rt.notifier().wake_parked(id)),
            Err(e) => tracing::debug!("looking for the messages of parked workflows: {e}"),
        }
        let mut children: Vec<String> = chunk
            .iter()
            .filter_map(|(_, on)| match on {
                WaitsOn::Done(child) if !rt.runs(child) && !rt.notifier().is_parked(child) => {
                    Some(child.clone())
                }
                _ => None,
            })
            .collect();
        children.sort_unstable();
        children.dedup();
        if children.is_empty() {
            continue;
        }
        match rt.db().finished_among(&children).await {
            Ok(ended) => chunk
                .iter()
                .filter(|(_, on)| matches!(on, WaitsOn::Done(c) if ended.contains(c)))
                .for_each(|(id, _)| rt.notifier().wake_parked(id)),
            Err(e) => tracing::debug!("looking for the ends parked workflows wait for: {e}"),
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
            rt.notifier().park(&id, WaitsOn::Time, at);
        }
    });
}

async fn reload_now(rt: &Runtime, id: &str) -> Result<()> {
    match rt.db().reloadable(id).await? {
        Some(c) => start(rt, c, Start::Reload).await,
        // Finished, cancelled, or taken over by another process meanwhile.
        None => Ok(()),
    }
}
