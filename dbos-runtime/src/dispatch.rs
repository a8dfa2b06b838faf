//! Enqueueing onto a [`Queue`], and the dispatcher: it claims queued workflows, within every
//! queue's limits, and runs them.

use crate::error::{Error, Result, WorkflowError};
use crate::queue::{Queue, INTERNAL_QUEUE};
use crate::runtime::Runtime;
use crate::sysdb::QueueLimits;
use crate::workflow::{WorkflowCall, WorkflowHandle};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

/// Workflows claimed from one queue (or partition) per dispatcher pass.
const CLAIM_BATCH: i64 = 100;

impl Queue {
    /// Enqueues a workflow call on this queue of the current runtime (see [`Runtime::enqueue`]).
    pub async fn enqueue<T, E>(&self, call: WorkflowCall<T, E>) -> Result<WorkflowHandle<T, E>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        crate::context::runtime()?.enqueue(self, call).await
    }

    /// The limits the dispatcher enforces, for one partition key (or none).
    fn limits<'a>(&'a self, partition: Option<&'a str>) -> QueueLimits<'a> {
        let (concurrency, worker_concurrency, rate_limit) = self.limit_values();
        QueueLimits {
            name: self.name(),
            partition,
            concurrency: concurrency.map(i64::from),
            worker_concurrency: worker_concurrency.map(i64::from),
            rate_limit: rate_limit.map(|(max, period)| (i64::from(max), period.as_millis() as i64)),
        }
    }
}

impl Runtime {
    /// Enqueues a workflow call on `queue`: records it `ENQUEUED` (or `DELAYED`, with
    /// [`WorkflowCall::with_delay`]) and returns a handle at once; a dispatcher of a launched
    /// runtime claims it when the queue's limits allow.
    ///
    /// # Durability
    /// When this returns `Ok` the workflow is recorded and runs exactly once, whichever
    /// process claims it. From a workflow body the enqueue is a recorded operation with a
    /// deterministic child ID (`<parent>-<position>`): a resumed workflow never enqueues twice.
    /// An ID that exists is not enqueued again; the handle refers to the existing workflow.
    ///
    /// # Errors
    /// [`Error::UnknownQueue`] when this binary does not declare the queue;
    /// [`Error::InvalidQueue`] when the call's options do not fit it;
    /// [`Error::QueueDeduplicated`] while another workflow with the same deduplication ID is
    /// active on it; otherwise as [`Runtime::start_workflow`].
    pub async fn enqueue<T, E>(
        &self,
        queue: &Queue,
        call: WorkflowCall<T, E>,
    ) -> Result<WorkflowHandle<T, E>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        self.declared(queue)?;
        queue.check_enqueue(call.enqueue_options())?;
        let name = call.name();
        let enqueue = crate::context::enter(self, async move {
            let span = crate::operation::op_span!("dbos.enqueue", name, queue = queue.name());
            tracing::Instrument::instrument(crate::workflow::start_on(call, queue.name()), span)
                .await
        });
        Box::pin(enqueue).await
    }

    /// Checks that this binary declares `queue` as given.
    pub(crate) fn declared(&self, queue: &Queue) -> Result<()> {
        match self.registry().queue(queue.name()) {
            Some(q) if q == queue => Ok(()),
            Some(q) => Err(Error::InvalidQueue {
                queue: queue.name().to_owned(),
                why: format!("the queue is declared as {q:?}, but enqueued on as {queue:?}"),
            }),
            None => Err(Error::UnknownQueue(queue.name().to_owned())),
        }
    }
}

/// Claims and runs queued workflows until shutdown.
///
/// Each pass promotes `DELAYED` workflows whose time has come, then, for every queue with work
/// (the runtime's own and each declared one, each partition of a partitioned one), claims what
/// its limits allow in one short transaction and starts it. Between passes it naps until woken
/// (a local enqueue or completion, or on Postgres another process's, by NOTIFY), until the next
/// delayed workflow or rate-limit window is due, or for a fallback poll of 1 s ±5 % (lost
/// notifications; SQLite files shared with other processes). An idle pass only reads.
pub(crate) async fn dispatch_loop(rt: Runtime) {
    while !rt.is_stopping() {
        let mut nap = Duration::from_secs_f64(0.95 + fastrand::f64() * 0.1);
        match dispatch_once(&rt).await {
            Ok(Pass { more: true, .. }) => continue,
            Ok(Pass { due: Some(due), .. }) => nap = nap.min(due),
            Ok(_) => {}
            Err(Error::ShuttingDown) => return,
            Err(e) => tracing::warn!("dispatcher pass failed: {e}"),
        }
        let nap = tokio::time::timeout(nap, rt.dispatcher_woken());
        if rt.unless_stopping(nap).await.is_err() {
            return;
        }
    }
}

/// What one dispatcher pass found.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// Workflows claimed.
    pub claimed: usize,
    /// A batch was full: go again at once.
    pub more: bool,
    /// When something (a delayed workflow, a rate-limit window) is next due.
    pub due: Option<Duration>,
}

/// One pass over every queue (see [`dispatch_loop`]).
pub(crate) async fn dispatch_once(rt: &Runtime) -> Result<Pass> {
    let mut pass = Pass::default();
    let now = crate::sysdb::now_ms();
    if let Some(next) = rt.db().next_delayed().await? {
        if next <= now {
            rt.db().promote_delayed(now).await?;
        } else {
            pass.soonest(next - now);
        }
    }
    static INTERNAL: Queue = Queue::new(INTERNAL_QUEUE);
    let queues = std::iter::once(&INTERNAL).chain(rt.registry().queues());
    let active = rt.db().queues_with_work().await?;
    for queue in queues {
        if !active.iter().any(|q| q == queue.name()) {
            continue;
        }
        let keys: Vec<Option<String>> = if queue.is_partitioned() {
            rt.db()
                .queue_partitions(queue.name())
                .await?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None]
        };
        for key in &keys {
            let claim = rt
                .db()
                .dequeue(&queue.limits(key.as_deref()), CLAIM_BATCH)
                .await?;
            if let Some(window) = claim.window_frees_at {
                pass.soonest((window - now).max(1));
            }
            let n = claim.claimed.len();
            pass.claimed += n;
            pass.more |= n as i64 == CLAIM_BATCH;
            for c in claim.claimed {
                let id = c.id.clone();
                match crate::recovery::resume(rt, c).await {
                    Ok(()) => {}
                    // The rest stay PENDING under this executor: a restart, or a live process
                    // once this one is gone, takes them over.
                    Err(Error::ShuttingDown) => return Err(Error::ShuttingDown),
                    Err(e) => {
                        // (Reading its records failed, say.) Back on its queue, so it does not
                        // hold a slot with nothing running.
                        tracing::error!(workflow_id = %id, "starting a claimed workflow failed: {e}; it goes back on its queue");
                        if let Err(e) = rt.db().release_claim(&id).await {
                            tracing::warn!(workflow_id = %id, "putting it back failed: {e}");
                        }
                    }
                }
            }
        }
    }
    Ok(pass)
}

impl Pass {
    fn soonest(&mut self, in_ms: i64) {
        let d = Duration::from_millis(in_ms.max(1) as u64);
        self.due = Some(self.due.map_or(d, |due| due.min(d)));
    }
}
