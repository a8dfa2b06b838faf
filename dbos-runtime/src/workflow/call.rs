//! A call of a `#[workflow]` function before it starts: its name, encoded arguments and body,
//! typed ([`WorkflowCall`]) or erased for the registry ([`ErasedCall`]).

use crate::error::{PortableError, Result, WorkflowError};
use crate::queue::EnqueueOptions;
use crate::serialization::{self, ArgsEncoder, Format, FormatCell};
use serde::{de::DeserializeOwned, Serialize};
use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a finished body hands back: the stored form, and the typed value for a local waiter.
pub(crate) struct Finished {
    pub outcome: std::result::Result<String, PortableError>,
    pub typed: Option<Box<dyn Any + Send>>,
    /// The format of the stored output in `outcome`.
    pub format: Format,
}

/// A type-erased workflow call: name, encoded inputs and the body. Not API.
pub struct ErasedCall {
    pub(crate) name: &'static str,
    pub(crate) inputs: Result<String>,
    pub(crate) body: BoxFuture<'static, Finished>,
    pub(crate) id: Option<String>,
    pub(crate) timeout: Option<std::time::Duration>,
    pub(crate) enqueue: EnqueueOptions,
    /// The format of its inputs and output: the function's own for a new workflow; a resumed
    /// one's is set from its row before it runs.
    pub(crate) format: FormatCell,
}

impl std::fmt::Debug for ErasedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErasedCall")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish()
    }
}

/// A call of a `#[workflow]` function, not yet started.
///
/// `.await` it to run the workflow durably and get its result, or pass it to
/// [`crate::DBOS::start_workflow`] to run it in the background. Set the workflow ID (an
/// idempotency key) with [`WorkflowCall::with_id`]; otherwise a fresh UUID is used (or, for a
/// child started from a workflow, `<parent id>-<position>`).
///
/// # Durability
/// Once started, the workflow finishes even if this process dies: recovery resumes it at the
/// next launch, replaying recorded steps. Starting an ID that exists never runs it again; the
/// call returns (or waits for) that workflow's result.
#[must_use = "a workflow call does nothing until awaited or started"]
pub struct WorkflowCall<T, E> {
    erased: ErasedCall,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> std::fmt::Debug for WorkflowCall<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.erased.fmt(f)
    }
}

impl<T, E> WorkflowCall<T, E>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: WorkflowError,
{
    pub(crate) fn new<F>(name: &'static str, args: ArgsEncoder, body: F) -> Self
    where
        F: Future<Output = std::result::Result<T, E>> + Send + 'static,
    {
        let format = FormatCell::new(args.format());
        let cell = format.clone();
        // `map`, not an `async move` block awaiting `body`: such a block keeps room both for the
        // captured `body` and for the awaited copy of it, twice the workflow's own future for
        // every workflow in memory (5.2 KB instead of 2.6 KB for one waiting in `recv`).
        let body = futures_util::FutureExt::map(body, move |result| {
            let format = cell.get();
            let outcome = match &result {
                Ok(v) => serialization::encode(format, v, "the workflow's output")
                    .map_err(|e| e.to_portable()),
                Err(e) => Err(e.to_portable()),
            };
            Finished {
                outcome,
                typed: Some(Box::new(result)),
                format,
            }
        });
        WorkflowCall {
            erased: ErasedCall {
                name,
                inputs: args.finish(),
                body: Box::pin(body),
                id: None,
                timeout: None,
                enqueue: EnqueueOptions::default(),
                format,
            },
            _types: PhantomData,
        }
    }

    /// Runs the workflow under this ID: an idempotency key. Starting an ID that exists joins
    /// that workflow instead of running a second one.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.erased.id = Some(id.into());
        self
    }

    /// Gives the workflow a timeout: its deadline (`now + timeout` when it starts, or when a
    /// dispatcher takes it off its queue) is recorded, survives restarts and is inherited by
    /// the child workflows it starts; when it passes, the workflow and its children are
    /// cancelled (each stops at its next durable operation, and a wait ends at once), and
    /// awaiting one answers [`Error::WorkflowTimedOut`](crate::Error::WorkflowTimedOut).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.erased.timeout = Some(timeout);
        self
    }

    /// Enqueued with this priority (on a queue declared
    /// [`priority_enabled`](crate::Queue::priority_enabled)): lower numbers run first, and a
    /// workflow enqueued without one has priority 0. At most `i32::MAX`.
    pub fn with_priority(mut self, priority: u32) -> Self {
        self.erased.enqueue.priority = Some(priority);
        self
    }

    /// Enqueued with this deduplication ID: while a workflow with the same ID is enqueued or
    /// running on the queue, the enqueue fails with
    /// [`Error::QueueDeduplicated`](crate::Error::QueueDeduplicated); once it finishes (or is
    /// cancelled) the ID is free again.
    pub fn with_dedup_id(mut self, dedup_id: impl Into<String>) -> Self {
        self.erased.enqueue.dedup_id = Some(dedup_id.into());
        self
    }

    /// Enqueued in this partition of a [`partitioned`](crate::Queue::partitioned) queue: the
    /// queue's limits hold for each partition key separately.
    pub fn with_partition(mut self, key: impl Into<String>) -> Self {
        self.erased.enqueue.partition = Some(key.into());
        self
    }

    /// Enqueued `DELAYED`: no dispatcher starts it before `delay` has passed. The due time
    /// (`delay_until_epoch_ms`, from the enqueuing process's clock) is recorded, so it survives
    /// restarts; dispatchers compare it with their own clocks.
    pub fn with_delay(mut self, delay: std::time::Duration) -> Self {
        self.erased.enqueue.delay = Some(delay);
        self
    }

    pub(crate) fn enqueue_options(&self) -> &EnqueueOptions {
        &self.erased.enqueue
    }

    /// The registered name of the workflow function.
    pub fn name(&self) -> &'static str {
        self.erased.name
    }

    pub(crate) fn erase(self) -> ErasedCall {
        self.erased
    }
}
