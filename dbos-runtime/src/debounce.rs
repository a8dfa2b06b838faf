//! Debouncing, as DBOS's `Debouncer`: a burst of triggers with one key starts one workflow,
//! `period` after the last trigger, with the last trigger's arguments; a timeout bounds the
//! wait from the first trigger.
//!
//! The workflow is enqueued `DELAYED` with deduplication ID `<workflow name>-<key>` and marked
//! `is_debounced`, its hard deadline in `debounce_deadline_epoch_ms`. A later trigger moves its
//! due time and replaces its inputs in one `UPDATE` (the bounce), so every trigger of a window,
//! in any process on the database, gets a handle to the same workflow. When it is due, the
//! dispatcher promotes it to `ENQUEUED` and frees the key: the next trigger starts a new window.
//! It is all rows, so a crash in the middle of a window loses nothing: whichever process runs a
//! dispatcher starts it when it is due.

use crate::context::{self, Position};
use crate::error::{Error, Result, WorkflowError};
use crate::queue::{Queue, INTERNAL_QUEUE};
use crate::runtime::Runtime;
use crate::sysdb::{now_ms, NewWorkflow};
use crate::workflow::{WorkflowCall, WorkflowHandle};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

/// Attempts of a trigger that finds the key held (a concurrent trigger opening the window, or
/// a window starting its workflow right then).
const RACE_RETRIES: u32 = 20;

/// Starts one workflow per burst of triggers with the same key (see the module docs).
///
/// ```no_run
/// # use dbos_runtime::prelude::*;
/// # #[workflow] async fn reindex(user: u64) -> Result<(), Error> { Ok(()) }
/// # async fn f() -> Result<(), Error> {
/// static REINDEX: Debouncer = Debouncer::new().with_timeout(Duration::from_secs(60));
/// // Each edit pushes the reindex back; it runs 5 s after the last edit, at most 60 s after
/// // the first.
/// let handle = REINDEX.debounce("user-7", Duration::from_secs(5), reindex(7)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Debouncer {
    queue: Option<&'static Queue>,
    timeout: Option<Duration>,
}

impl Debouncer {
    /// Debounces on DBOS's internal queue, with no timeout.
    pub const fn new() -> Debouncer {
        Debouncer {
            queue: None,
            timeout: None,
        }
    }

    /// Runs the debounced workflows on `queue` (declared with `#[queue]`, not partitioned), so
    /// its limits apply to them.
    pub const fn on_queue(mut self, queue: &'static Queue) -> Debouncer {
        self.queue = Some(queue);
        self
    }

    /// Bounds the wait: a window's workflow starts at most `timeout` after its first trigger,
    /// however often it is triggered.
    pub const fn with_timeout(mut self, timeout: Duration) -> Debouncer {
        self.timeout = Some(timeout);
        self
    }

    /// Triggers `call` under `key`: starts a window whose workflow runs `period` from now, or
    /// pushes the open window's start to `period` from now (capped by the timeout) and gives
    /// it this call's arguments. Returns a handle to the window's workflow.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero period or timeout, a call with enqueue options
    /// of its own, or a call from a workflow body (not supported yet: call it from a step or
    /// outside workflows); [`Error::UnknownQueue`] / [`Error::InvalidQueue`] for the queue;
    /// [`Error::QueueDeduplicated`] when the key is held by a workflow that is not debounced.
    pub async fn debounce<T, E>(
        &self,
        key: &str,
        period: Duration,
        call: WorkflowCall<T, E>,
    ) -> Result<WorkflowHandle<T, E>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        context::runtime()?.debounce(self, key, period, call).await
    }
}

fn millis(d: Duration, what: &str) -> Result<i64> {
    if d.is_zero() {
        return Err(Error::InvalidArgument(format!(
            "a debounce {what} must be positive"
        )));
    }
    i64::try_from(d.as_millis())
        .map_err(|_| Error::InvalidArgument(format!("debounce {what} {d:?} is too long")))
}

impl Runtime {
    /// [`Debouncer::debounce`] on this runtime (a launched one or a client).
    pub async fn debounce<T, E>(
        &self,
        debouncer: &Debouncer,
        key: &str,
        period: Duration,
        call: WorkflowCall<T, E>,
    ) -> Result<WorkflowHandle<T, E>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        let period_ms = millis(period, "period")?;
        let timeout_ms = debouncer
            .timeout
            .map(|t| millis(t, "timeout"))
            .transpose()?;
        if !call.enqueue_options().is_empty() {
            return Err(Error::InvalidArgument(
                "a debounced call takes no priority, deduplication ID, partition or delay of \
                 its own"
                    .into(),
            ));
        }
        if let Ok(Position::Workflow(..)) = context::position() {
            return Err(Error::InvalidArgument(
                "debouncing from a workflow body is not supported yet: call it from a step or \
                 outside workflows"
                    .into(),
            ));
        }
        let queue = match debouncer.queue {
            Some(q) => {
                self.declared(q)?;
                if q.is_partitioned() {
                    return Err(Error::InvalidQueue {
                        queue: q.name().to_owned(),
                        why: "a partitioned queue cannot hold debounced workflows".into(),
                    });
                }
                q.name()
            }
            None => INTERNAL_QUEUE,
        };
        let name = call.name();
        let dedup = format!("{name}-{key}");
        let call = call.erase();
        let inputs = call.inputs?;
        let tag = call.format.get().tag();
        let timeout = crate::workflow::timeout_ms(call.timeout)?;
        if let Some(id) = &call.id {
            crate::workflow::validate_id(id)?;
        }
        let start = now_ms();
        let deadline = timeout_ms.map(|t| start.saturating_add(t));
        let due = |now: i64| {
            let due = now.saturating_add(period_ms);
            deadline.map_or(due, |d| due.min(d).max(now + 1))
        };
        let attributes = crate::otel::current_attributes();
        let mut refused = None;
        for attempt in 0..RACE_RETRIES {
            // The open window, if there is one, takes this trigger.
            let bounced = self
                .db()
                .bounce(name, queue, &dedup, due(now_ms()), &inputs, tag)
                .await?;
            if let Some(id) = bounced {
                // Its due time moved: the dispatcher's timer must look again.
                self.wake_dispatcher();
                return self.retrieve_workflow(&id).await;
            }
            // Otherwise this trigger opens one. A concurrent trigger may open it first (the
            // deduplication index refuses this one; then bounce into it), or the window may
            // just have started its workflow (then the next attempt opens a new one).
            let id = call
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let owner = uuid::Uuid::new_v4().to_string();
            let now = now_ms();
            let inserted = self
                .db()
                .insert_workflow(&NewWorkflow {
                    id: &id,
                    name,
                    inputs: &inputs,
                    owner_xid: &owner,
                    parent_id: None,
                    queue: Some(queue),
                    timeout_ms: timeout,
                    deadline_ms: None,
                    priority: 0,
                    dedup_id: Some(&dedup),
                    partition: None,
                    delay_ms: Some((due(now) - now).max(1)),
                    serialization: tag,
                    attributes: attributes.as_deref(),
                    debounce: Some(deadline),
                })
                .await;
            match inserted {
                Ok(row) => {
                    if row.owner_xid.as_deref() == Some(owner.as_str()) {
                        self.wake_dispatcher();
                    } else if row.name.as_deref() != Some(name) {
                        return Err(Error::WorkflowConflict {
                            id,
                            existing: row.name.unwrap_or_default(),
                            requested: name.to_owned(),
                        });
                    }
                    return self.retrieve_workflow(&id).await;
                }
                Err(e @ Error::QueueDeduplicated { .. }) => {
                    refused = Some(e);
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt) + 1)).await;
                }
                Err(e) => return Err(e),
            }
        }
        // The key stayed held by a workflow that is not a debounced one.
        Err(refused.unwrap_or_else(|| Error::QueueDeduplicated {
            queue: queue.to_owned(),
            deduplication_id: dedup,
            workflow_id: String::new(),
        }))
    }
}
