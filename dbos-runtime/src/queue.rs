//! Queues: the [`Queue`] a user declares (limits, priority, partitions) and what one enqueue
//! asks of it. Enqueueing and the dispatcher are in `dispatch.rs`.
//!
//! The runtime's own queue (`_dbos_internal_queue`) carries recovered workflows, scheduled ticks
//! and what clients start; it has no limits. A user's queue is a `static` declared with
//! `#[queue]`, so every process of the application knows it and dispatches it.

use crate::error::{Error, Result};
use std::time::Duration;

/// The queue DBOS uses for recovered and scheduled workflows, and for workflows a client starts
/// (SYSDB.md).
pub(crate) const INTERNAL_QUEUE: &str = "_dbos_internal_queue";

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

    pub(crate) fn is_partitioned(&self) -> bool {
        self.partitioned
    }

    pub(crate) fn limit_values(&self) -> (Option<u32>, Option<u32>, Option<(u32, Duration)>) {
        (self.concurrency, self.worker_concurrency, self.rate_limit)
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
