//! Queues: the [`Queue`] a user declares (limits, priority, partitions), enqueueing onto it,
//! and the dispatcher that claims queued workflows, within every queue's limits, and runs them.
//!
//! The runtime's own queue (`_dbos_internal_queue`) carries recovered workflows, scheduled ticks
//! and what clients start; it has no limits. A user's queue is a `static` declared with
//! `#[queue]`, so every process of the application knows it and dispatches it.

use crate::error::{Error, Result, WorkflowError};
use crate::runtime::Runtime;
use crate::sysdb::QueueLimits;
use crate::workflow::{WorkflowCall, WorkflowHandle};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

/// The queue DBOS uses for recovered and scheduled workflows, and for workflows a client starts
/// (SYSDB.md).
pub(crate) const INTERNAL_QUEUE: &str = "_dbos_internal_queue";

/// Workflows claimed from one queue (or partition) per dispatcher pass.
pub(crate) const CLAIM_BATCH: i64 = 100;

/// A queue of workflows, with limits that hold across every process on the database.
///
/// Declare it once, as a `static` marked `#[queue]` (which registers it, like a workflow, so
/// every process of the application dispatches it), and enqueue calls onto it:
///
/// ```
/// use dbos_runtime::prelude::*;
///
/// #[queue]
/// static EMAILS: Queue = Queue::new("emails")
///     .concurrency(10)            // at most 10 running, across all processes
///     .worker_concurrency(2)      // at most 2 in any one process
///     .rate_limit(50, Duration::from_secs(30));
///
/// #[workflow]
/// async fn send_email(to: String) -> Result<(), Error> { Ok(()) }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// # DBOS::launch(DbosConfig::new("mail").with_database_url("sqlite::memory:")).await?;
/// let handle = EMAILS.enqueue(send_email("a@example.com".into()).with_id("welcome-a")).await?;
/// handle.get_result().await?;
/// # DBOS::shutdown().await;
/// # Ok(())
/// # }
/// ```
///
/// # Semantics
/// - An enqueued workflow is `ENQUEUED` (`DELAYED` until its delay passes) until a dispatcher
///   claims it; it then runs exactly like a started one, and is recovered like one.
/// - **Concurrency** counts the queue's running (`PENDING`) workflows in every process;
///   **worker concurrency** counts this process's; the **rate limit** counts workflows started
///   in the sliding window. On a partitioned queue each limit holds per partition key.
/// - Order: by priority (lower first, when enabled), then first in, first out.
/// - Many processes on one Postgres database never start one workflow twice, and claims under
///   a shared limit are serialized, so no instant exceeds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    name: &'static str,
    concurrency: Option<u32>,
    worker_concurrency: Option<u32>,
    rate_limit: Option<(u32, Duration)>,
    priority_enabled: bool,
    partitioned: bool,
}

impl Queue {
    /// A queue named `name` without limits.
    pub const fn new(name: &'static str) -> Queue {
        Queue {
            name,
            concurrency: None,
            worker_concurrency: None,
            rate_limit: None,
            priority_enabled: false,
            partitioned: false,
        }
    }

    /// At most `n` of this queue's workflows run at once, across all processes.
    pub const fn concurrency(mut self, n: u32) -> Queue {
        self.concurrency = Some(n);
        self
    }

    /// At most `n` of this queue's workflows run at once in any one process.
    pub const fn worker_concurrency(mut self, n: u32) -> Queue {
        self.worker_concurrency = Some(n);
        self
    }

    /// At most `max` of this queue's workflows start in any window of `period`.
    pub const fn rate_limit(mut self, max: u32, period: Duration) -> Queue {
        self.rate_limit = Some((max, period));
        self
    }

    /// Workflows enqueued with [`WorkflowCall::with_priority`] run in priority order (lower
    /// numbers first; no priority is 0), then first in, first out.
    pub const fn priority_enabled(mut self) -> Queue {
        self.priority_enabled = true;
        self
    }

    /// Every enqueue names a partition ([`WorkflowCall::with_partition`]); the limits hold for
    /// each partition key separately, so one busy key does not hold up the others.
    pub const fn partitioned(mut self) -> Queue {
        self.partitioned = true;
        self
    }

    /// The queue's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Enqueues a workflow call on this queue of the current runtime (see [`Runtime::enqueue`]).
    pub async fn enqueue<T, E>(&self, call: WorkflowCall<T, E>) -> Result<WorkflowHandle<T, E>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        crate::context::runtime()?.enqueue(self, call).await
    }

    /// Checks the declaration: a usable name and non-zero limits.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |why: &str| {
            Err(Error::InvalidQueue {
                queue: self.name.to_owned(),
                why: why.to_owned(),
            })
        };
        if self.name.trim().is_empty() {
            return bad("a queue name must not be empty");
        }
        if self.name.starts_with("_dbos") {
            return bad("names starting with `_dbos` are reserved for DBOS's own queues");
        }
        if self.concurrency == Some(0) {
            return bad("concurrency must be at least 1");
        }
        if self.worker_concurrency == Some(0) {
            return bad("worker_concurrency must be at least 1");
        }
        if let (Some(w), Some(c)) = (self.worker_concurrency, self.concurrency) {
            if w > c {
                return bad(&format!(
                    "worker_concurrency ({w}) exceeds concurrency ({c}); it could never be reached"
                ));
            }
        }
        if let Some((max, period)) = self.rate_limit {
            if max == 0 {
                return bad("a rate limit must allow at least 1 start per period");
            }
            if period.as_millis() == 0 {
                return bad("a rate limit's period must be at least 1 ms");
            }
        }
        Ok(())
    }

    /// Checks one enqueue's options against the queue.
    pub(crate) fn check_enqueue(&self, opts: &EnqueueOptions) -> Result<()> {
        let bad = |why: String| {
            Err(Error::InvalidQueue {
                queue: self.name.to_owned(),
                why,
            })
        };
        if opts.priority.is_some() && !self.priority_enabled {
            return bad(
                "a priority was given, but the queue is not declared with .priority_enabled()"
                    .into(),
            );
        }
        match (&opts.partition, self.partitioned) {
            (None, true) => {
                return bad(
                    "the queue is partitioned: give each enqueue .with_partition(key)".into(),
                )
            }
            (Some(k), false) => {
                return bad(format!(
                    "partition key `{k}` was given, but the queue is not declared .partitioned()"
                ))
            }
            _ => {}
        }
        if opts.partition.is_some() && opts.dedup_id.is_some() {
            return bad("deduplication IDs are not supported on partitioned queues".into());
        }
        if let Some(d) = &opts.dedup_id {
            if d.is_empty() {
                return bad("a deduplication ID must not be empty".into());
            }
        }
        Ok(())
    }

    /// The limits the dispatcher enforces, for one partition key (or none).
    pub(crate) fn limits<'a>(&'a self, partition: Option<&'a str>) -> QueueLimits<'a> {
        QueueLimits {
            name: self.name,
            partition,
            concurrency: self.concurrency.map(i64::from),
            worker_concurrency: self.worker_concurrency.map(i64::from),
            rate_limit: self
                .rate_limit
                .map(|(max, period)| (i64::from(max), period.as_millis() as i64)),
        }
    }

    pub(crate) fn is_partitioned(&self) -> bool {
        self.partitioned
    }
}

/// What an enqueue asks of its queue, set on the call ([`WorkflowCall::with_priority`] and
/// its siblings).
#[derive(Debug, Clone, Default)]
pub(crate) struct EnqueueOptions {
    pub priority: Option<u32>,
    pub dedup_id: Option<String>,
    pub partition: Option<String>,
    pub delay: Option<Duration>,
}

impl EnqueueOptions {
    pub(crate) fn is_empty(&self) -> bool {
        self.priority.is_none()
            && self.dedup_id.is_none()
            && self.partition.is_none()
            && self.delay.is_none()
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
        Box::pin(crate::context::enter(
            self,
            crate::workflow::start_on(call, queue.name),
        ))
        .await
    }

    /// Checks that this binary declares `queue` as given.
    pub(crate) fn declared(&self, queue: &Queue) -> Result<()> {
        match self.registry().queue(queue.name) {
            Some(q) if q == queue => Ok(()),
            Some(q) => Err(Error::InvalidQueue {
                queue: queue.name.to_owned(),
                why: format!("the queue is declared as {q:?}, but enqueued on as {queue:?}"),
            }),
            None => Err(Error::UnknownQueue(queue.name.to_owned())),
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
        if !active.iter().any(|q| q == queue.name) {
            continue;
        }
        let keys: Vec<Option<String>> = if queue.is_partitioned() {
            rt.db()
                .queue_partitions(queue.name)
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
                match crate::recovery::resume(rt, c).await {
                    Ok(()) => {}
                    // The rest stay PENDING under this executor and resume at its next launch.
                    Err(Error::ShuttingDown) => return Err(Error::ShuttingDown),
                    Err(e) => tracing::error!("starting a claimed workflow failed: {e}"),
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
