//! Launching or connecting a runtime, and the API users call: methods of [`Runtime`], and the
//! static [`DBOS`] API, sugar over the current runtime.

use crate::config::DbosConfig;
use crate::context;
use crate::error::{Error, Result, WorkflowError};
use crate::manage::{ForkOptions, StepInfo, WorkflowFilter, WorkflowInfo};
use crate::metrics::MetricsSnapshot;
use crate::runtime::{Mode, Runtime};
use crate::workflow::{self, WorkflowCall, WorkflowHandle, WorkflowStatus};
use serde::{de::DeserializeOwned, Serialize};
use std::time::Duration;

impl Runtime {
    /// Connects, migrates, registers, recovers this executor's unfinished workflows and starts
    /// the dispatcher and schedules. Must be called inside a tokio runtime. With
    /// [`REPLAY_CHECK_ENV`](crate::REPLAY_CHECK_ENV) set it runs the replay check instead and
    /// exits the process (see [`Runtime::check_replay`]).
    ///
    /// # Errors
    /// A malformed configuration, an unreachable database, a database migrated by another SDK
    /// to a state we cannot finish, or two workflows registered under one name.
    pub async fn launch(cfg: DbosConfig) -> Result<Runtime> {
        if let Ok(spec) = std::env::var(crate::replay::REPLAY_CHECK_ENV) {
            // `dbos workflow replay`: check this build against the records, print, exit.
            crate::replay::run_from_env(cfg, &spec).await;
        }
        let rt = Runtime::open(cfg, Mode::Launched).await?;
        start_admin(&rt).await?;
        rt.db().insert_app_version().await?;
        rt.listen().await?;
        crate::liveness::start(&rt).await?;
        crate::recovery::recover_pending(&rt).await?;
        rt.keep(tokio::spawn(crate::dispatch::dispatch_loop(rt.clone())));
        rt.keep(tokio::spawn(crate::recovery::reload_parked(rt.clone())));
        for &(name, cron) in &rt.registry().schedules {
            rt.keep(tokio::spawn(crate::scheduler::run_schedule(
                rt.clone(),
                name,
                cron,
            )));
        }
        Ok(rt)
    }

    /// Opens the system database (creating and migrating it when needed) as a client: no
    /// recovery, no dispatcher, no schedules, and no workflow runs in this process.
    ///
    /// A client reads and writes what a launched runtime would: it starts workflows by
    /// enqueueing them (a launched runtime of the same application version runs them), sends
    /// messages, reads events, statuses and results. Use it for a CLI, an admin tool or another
    /// service that shares the database.
    ///
    /// # Errors
    /// As for [`Runtime::launch`].
    pub async fn connect(cfg: DbosConfig) -> Result<Runtime> {
        let rt = Runtime::open(cfg, Mode::Connected).await?;
        rt.listen().await?;
        Ok(rt)
    }

    /// Records the workflow and starts it; returns a handle at once. A launched runtime runs
    /// it in this process; a connected one enqueues it for a launched runtime.
    ///
    /// # Durability
    /// When this returns `Ok`, the workflow is recorded: it finishes even if the process dies.
    /// An ID that exists is never run twice: the handle refers to the existing workflow.
    /// Called from a workflow body of this runtime, the workflow is a recorded child.
    ///
    /// # Errors
    /// [`Error::WorkflowConflict`] when the ID belongs to another function;
    /// [`Error::InvalidWorkflowId`]; database errors.
    pub async fn start_workflow<T, E>(
        &self,
        call: WorkflowCall<T, E>,
    ) -> Result<WorkflowHandle<T, E>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        // Boxed, so a caller's future stays small however many workflows it starts.
        Box::pin(context::enter(self, workflow::start(call))).await
    }

    /// A handle to an existing workflow.
    ///
    /// # Errors
    /// [`Error::NonExistentWorkflow`] when no workflow has this ID.
    pub async fn retrieve_workflow<T, E>(&self, workflow_id: &str) -> Result<WorkflowHandle<T, E>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        if self.db().get_workflow(workflow_id).await?.is_none() {
            return Err(Error::NonExistentWorkflow(workflow_id.to_owned()));
        }
        Ok(WorkflowHandle::new(
            workflow_id.to_owned(),
            self.clone(),
            None,
        ))
    }

    /// The status of a workflow, or `None` when no workflow has this ID.
    pub async fn get_status(&self, workflow_id: &str) -> Result<Option<WorkflowStatus>> {
        Ok(self
            .db()
            .get_workflow(workflow_id)
            .await?
            .map(|row| WorkflowStatus {
                workflow_id: workflow_id.to_owned(),
                status: row.status,
                name: row.name,
            }))
    }

    /// Whether a workflow with this ID exists.
    pub async fn workflow_exists(&self, workflow_id: &str) -> Result<bool> {
        Ok(self.get_status(workflow_id).await?.is_some())
    }

    /// Sends `message` to workflow `destination_id` on `topic` (see [`DBOS::send`]).
    pub async fn send<'a, M: Serialize + ?Sized>(
        &self,
        destination_id: &str,
        message: &M,
        topic: impl Into<Option<&'a str>>,
    ) -> Result<()> {
        let send = crate::messages::send(destination_id, message, topic.into(), None);
        context::enter(self, send).await
    }

    /// Like [`Runtime::send`], with an idempotency key: sends with one key deliver one message.
    pub async fn send_with_key<'a, M: Serialize + ?Sized>(
        &self,
        destination_id: &str,
        message: &M,
        topic: impl Into<Option<&'a str>>,
        idempotency_key: &str,
    ) -> Result<()> {
        let send =
            crate::messages::send(destination_id, message, topic.into(), Some(idempotency_key));
        context::enter(self, send).await
    }

    /// Reads event `key` of workflow `workflow_id`, waiting up to `timeout` (see
    /// [`DBOS::get_event`]).
    pub async fn get_event<V: DeserializeOwned + Serialize>(
        &self,
        workflow_id: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<V>> {
        context::enter(self, crate::events::get_event(workflow_id, key, timeout)).await
    }

    /// Every value of stream `key` of workflow `workflow_id`, in order, live (see
    /// [`DBOS::read_stream`]); works on a connected client too.
    pub fn read_stream<T: DeserializeOwned + Send + 'static>(
        &self,
        workflow_id: &str,
        key: &str,
    ) -> impl futures_util::Stream<Item = Result<T>> + Send + Unpin + 'static {
        crate::streams::read_stream(self.clone(), workflow_id, key)
    }
}

/// Starts the admin server when one is configured (feature `admin`).
async fn start_admin(rt: &Runtime) -> Result<()> {
    if rt.config().admin_port.is_none() {
        return Ok(());
    }
    #[cfg(feature = "admin")]
    {
        // A process killed a moment ago may still hold the port for a few milliseconds.
        let mut delay = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        loop {
            match crate::admin::start(rt) {
                Ok(()) => return Ok(()),
                Err(e) if waited < Duration::from_secs(2) => {
                    tracing::info!("{e}; retrying");
                    tokio::time::sleep(delay).await;
                    waited += delay;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }
    #[cfg(not(feature = "admin"))]
    {
        Err(Error::Config(
            "admin_port is set, but dbos-runtime was built without its `admin` feature".into(),
        ))
    }
}

/// The static API: launch the runtime, start and inspect workflows, messages, events, sleep.
///
/// Each call works on the current runtime: the one running the calling workflow, else one
/// entered with [`Runtime::scope`], else the global one [`DBOS::launch`] made.
#[derive(Debug)]
pub struct DBOS;

impl DBOS {
    /// Launches the global runtime (see [`Runtime::launch`]).
    ///
    /// # Errors
    /// [`Error::AlreadyLaunched`] on a second call; otherwise what [`Runtime::launch`] returns.
    pub async fn launch(cfg: DbosConfig) -> Result<()> {
        if context::global().is_ok() {
            return Err(Error::AlreadyLaunched);
        }
        let rt = Runtime::launch(cfg).await?;
        match context::set_global(rt) {
            Ok(()) => Ok(()),
            Err(lost_race) => {
                lost_race.shutdown().await;
                Err(Error::AlreadyLaunched)
            }
        }
    }

    /// Shuts the global runtime down (see [`Runtime::shutdown`]); running workflows stay
    /// PENDING and resume at the next launch.
    pub async fn shutdown() {
        if let Some(rt) = context::take_global() {
            rt.shutdown().await;
        }
    }

    /// Records the workflow and runs it in the background; returns a handle at once (see
    /// [`Runtime::start_workflow`]).
    pub async fn start_workflow<T, E>(call: WorkflowCall<T, E>) -> Result<WorkflowHandle<T, E>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        context::runtime()?.start_workflow(call).await
    }

    /// A handle to an existing workflow.
    ///
    /// # Errors
    /// [`Error::NonExistentWorkflow`] when no workflow has this ID.
    pub async fn retrieve_workflow<T, E>(workflow_id: &str) -> Result<WorkflowHandle<T, E>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        context::runtime()?.retrieve_workflow(workflow_id).await
    }

    /// The status of a workflow, or `None` when no workflow has this ID.
    pub async fn get_status(workflow_id: &str) -> Result<Option<WorkflowStatus>> {
        context::runtime()?.get_status(workflow_id).await
    }

    /// Whether a workflow with this ID exists.
    pub async fn workflow_exists(workflow_id: &str) -> Result<bool> {
        context::runtime()?.workflow_exists(workflow_id).await
    }

    /// The ID of the calling workflow.
    ///
    /// # Errors
    /// [`Error::NotInWorkflow`] outside a workflow.
    pub fn workflow_id() -> Result<String> {
        match context::position() {
            Ok(context::Position::Workflow(_, ctx)) | Ok(context::Position::InStep(_, ctx)) => {
                Ok(ctx.id.clone())
            }
            _ => Err(Error::NotInWorkflow("DBOS::workflow_id")),
        }
    }

    /// Sends `message` to workflow `destination_id` on `topic`.
    ///
    /// # Durability
    /// From a workflow body the send is an operation: a replay does not send again. From
    /// elsewhere, use [`DBOS::send_with_key`] to make a retried send deliver once.
    ///
    /// # Errors
    /// [`Error::NonExistentWorkflow`] at once when no workflow has that ID.
    pub async fn send<'a, M: Serialize + ?Sized>(
        destination_id: &str,
        message: &M,
        topic: impl Into<Option<&'a str>>,
    ) -> Result<()> {
        crate::messages::send(destination_id, message, topic.into(), None).await
    }

    /// Like [`DBOS::send`], with an idempotency key: sends with one key deliver one message.
    pub async fn send_with_key<'a, M: Serialize + ?Sized>(
        destination_id: &str,
        message: &M,
        topic: impl Into<Option<&'a str>>,
        idempotency_key: &str,
    ) -> Result<()> {
        crate::messages::send(destination_id, message, topic.into(), Some(idempotency_key)).await
    }

    /// Takes the oldest message on `topic` for the calling workflow, waiting up to `timeout`;
    /// `None` when none came in time.
    ///
    /// # Durability
    /// Taking the message and recording it are one transaction: a message is delivered exactly
    /// once across crashes. The deadline is recorded: after a crash the workflow waits only for
    /// what remains.
    ///
    /// # Errors
    /// [`Error::NotInWorkflow`] outside a workflow, [`Error::InStep`] inside a step, and
    /// [`Error::ConcurrentExecution`] while another `recv` of this workflow waits on `topic`.
    pub async fn recv<'a, T: DeserializeOwned>(
        topic: impl Into<Option<&'a str>>,
        timeout: Duration,
    ) -> Result<Option<T>> {
        crate::messages::recv(topic.into(), timeout).await
    }

    /// Publishes `value` under `key` for the calling workflow (the last value wins).
    ///
    /// # Errors
    /// [`Error::NotInWorkflow`] outside a workflow.
    pub async fn set_event<V: Serialize + ?Sized>(key: &str, value: &V) -> Result<()> {
        crate::events::set_event(key, value).await
    }

    /// Reads event `key` of workflow `workflow_id`, waiting up to `timeout` for it to be set;
    /// `None` when it was not set in time. An unknown workflow ID waits like any other; use
    /// [`DBOS::workflow_exists`] to tell the difference at once.
    pub async fn get_event<V: DeserializeOwned + Serialize>(
        workflow_id: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<V>> {
        crate::events::get_event(workflow_id, key, timeout).await
    }

    /// Appends `value` to the calling workflow's stream `key` (portable JSON, at the next
    /// offset). From a workflow body it is an operation (`DBOS.writeStream`): the value and its
    /// record commit together and a resumed workflow never writes it twice. From a step it is
    /// part of the step: a step that runs again writes again.
    ///
    /// # Errors
    /// [`Error::NotInWorkflow`] outside a workflow; [`Error::WorkflowCancelled`] when the
    /// workflow was cancelled; database errors.
    pub async fn write_stream<V: Serialize + ?Sized>(key: &str, value: &V) -> Result<()> {
        crate::streams::write_stream(key, value).await
    }

    /// Closes the calling workflow's stream `key`: readers end after the values written before.
    /// Recorded like [`DBOS::write_stream`]. A stream also ends for its readers when its
    /// workflow stops running, closed or not.
    ///
    /// # Errors
    /// As [`DBOS::write_stream`].
    pub async fn close_stream(key: &str) -> Result<()> {
        crate::streams::close_stream(key).await
    }

    /// Every value of stream `key` of workflow `workflow_id`, in order: what was written so far
    /// at once, then each new value as it is written (readers wake on the write's notification,
    /// across processes on Postgres), until the stream is closed or the workflow is no longer
    /// running and its last value was read. An error (unknown workflow, a value that is not a
    /// `T`, shutdown) is the stream's last item. Reads are not recorded as operations.
    ///
    /// ```no_run
    /// # use dbos_runtime::prelude::*;
    /// # async fn f() -> Result<(), Error> {
    /// use dbos_runtime::StreamExt;
    /// let mut tokens = DBOS::read_stream::<String>("chat-42", "tokens")?;
    /// while let Some(token) = tokens.next().await {
    ///     print!("{}", token?);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotLaunched`] without a runtime.
    pub fn read_stream<T: DeserializeOwned + Send + 'static>(
        workflow_id: &str,
        key: &str,
    ) -> Result<impl futures_util::Stream<Item = Result<T>> + Send + Unpin + 'static> {
        Ok(context::runtime()?.read_stream(workflow_id, key))
    }

    /// Runs `branches` at once and returns all their outputs, in order (a durable
    /// `join_all`).
    ///
    /// # Durability
    /// In a workflow body each branch numbers its operations in a sequence of its own, so a
    /// branch's operations keep their positions whatever order the branches run or finish in:
    /// a workflow resumed halfway replays the branches' recorded operations and runs only the
    /// rest. A branch may be any async code made of durable operations (steps, transactions,
    /// `recv`, `sleep`, child workflows, nested joins and selects). Use this, not
    /// `tokio::join!`, for concurrency in a workflow body: operations joined by tokio take
    /// positions in the order they happen to begin. Outside a workflow it is a plain join.
    ///
    /// # Errors
    /// Only the join's own: a workflow with more positions than fit an `i32`. Each branch's
    /// output is its own (a step's `Result` and so on).
    pub async fn join_all<'a, I, F>(branches: I) -> Result<Vec<F::Output>>
    where
        I: IntoIterator<Item = F>,
        F: std::future::Future + Send + 'a,
        F::Output: Send + 'a,
    {
        crate::concurrency::join(crate::concurrency::boxed(branches)).await
    }

    /// [`DBOS::join_all`] of two branches of different types.
    pub async fn join<'a, A, B>(a: A, b: B) -> Result<(A::Output, B::Output)>
    where
        A: std::future::Future + Send + 'a,
        B: std::future::Future + Send + 'a,
        A::Output: Send + 'a,
        B::Output: Send + 'a,
    {
        crate::concurrency::join2(a, b).await
    }

    /// Runs `branches` at once until the first finishes; returns its index and output and
    /// drops the others (a durable `select`).
    ///
    /// # Durability
    /// In a workflow body the winner is recorded (a `DBOS.select` operation): a resumed
    /// workflow runs only that branch again, which replays its recorded outcome, so it takes
    /// the same branch whatever happened since (a message that came after the timeout won
    /// stays unread). A `recv` branch records the select's outcome in the transaction that
    /// takes its message, so a message is never taken by a branch that lost. Each branch must
    /// be a single durable operation: a step, a transaction, `recv`, `sleep`, `get_event`, or
    /// a child workflow's `get_result`. A losing step or transaction may have run (or be
    /// running when it is dropped); only its outcome is discarded. Outside a workflow it is a
    /// plain select.
    ///
    /// # Errors
    /// [`Error::BadInputs`] for no branches, or a branch that begins a second durable operation
    /// (longer work belongs in a child workflow); [`Error::ShuttingDown`],
    /// [`Error::WorkflowCancelled`] and [`Error::ConcurrentExecution`] as for any operation,
    /// with nothing recorded.
    pub async fn select_all<'a, I, F>(branches: I) -> Result<(usize, F::Output)>
    where
        I: IntoIterator<Item = F>,
        F: std::future::Future + Send + 'a,
        F::Output: Send + 'a,
    {
        crate::concurrency::select(crate::concurrency::boxed(branches)).await
    }

    /// [`DBOS::select_all`] of two branches of different types: `Left` when `a` won, `Right`
    /// when `b` did. "The payment, or a timeout":
    ///
    /// ```no_run
    /// # use dbos_runtime::prelude::*;
    /// # async fn body() -> Result<(), Error> {
    /// match DBOS::select(
    ///     DBOS::recv::<String>("payment", Duration::from_secs(24 * 3600)),
    ///     DBOS::sleep(Duration::from_secs(15 * 60)),
    /// )
    /// .await?
    /// {
    ///     Either::Left(payment) => println!("paid: {:?}", payment?),
    ///     Either::Right(slept) => {
    ///         slept?;
    ///         println!("no payment within 15 minutes");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn select<'a, A, B>(a: A, b: B) -> Result<crate::Either<A::Output, B::Output>>
    where
        A: std::future::Future + Send + 'a,
        B: std::future::Future + Send + 'a,
        A::Output: Send + 'a,
        B::Output: Send + 'a,
    {
        crate::concurrency::select2(a, b).await
    }

    /// Whether this execution of the calling workflow takes the new path of patch `name`
    /// (DBOS's `DBOS.patch`): `true` for executions that started on code with the patch or had
    /// not reached it, `false` for those that recorded the old code's operation at this point.
    ///
    /// ```no_run
    /// # use dbos_runtime::prelude::*;
    /// # #[step] async fn charge_v1() -> Result<(), Error> { Ok(()) }
    /// # #[step] async fn charge_v2() -> Result<(), Error> { Ok(()) }
    /// # async fn body() -> Result<(), Error> {
    /// if DBOS::patch("charge-v2").await? {
    ///     charge_v2().await?;
    /// } else {
    ///     charge_v1().await?; // in-flight executions of the old code
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Durability
    /// The new path records a `DBOS.patch-<name>` marker at its position, so a resumed
    /// execution decides the same way; the old path takes no position, so the old code's
    /// records replay as before.
    ///
    /// # Errors
    /// [`Error::Config`] unless [`DbosConfig::with_patching`](crate::DbosConfig::with_patching);
    /// [`Error::NotInWorkflow`] outside a workflow, [`Error::InStep`] in a step;
    /// [`Error::BadInputs`] for an empty name.
    pub async fn patch(name: &str) -> Result<bool> {
        crate::patch::patch(name).await
    }

    /// Retires patch `name` once no execution of the code before it is left: returns `true`,
    /// skips the marker an execution of the patched code recorded, and records none. Once no
    /// execution holds a marker either, the call can be deleted.
    ///
    /// # Errors
    /// As [`DBOS::patch`].
    pub async fn deprecate_patch(name: &str) -> Result<bool> {
        crate::patch::deprecate_patch(name).await
    }

    /// The current time, recorded: in a workflow body it is an operation (`DBOS.now`) whose
    /// value a resumed workflow replays, so code that branches on it takes the same path.
    /// Elsewhere it is the clock. `#[workflow]` refuses `Utc::now()` and the like in a body and
    /// points here.
    ///
    /// # Errors
    /// As any operation: [`Error::ShuttingDown`], [`Error::WorkflowCancelled`], a database error.
    pub async fn now() -> Result<chrono::DateTime<chrono::Utc>> {
        crate::step::run_step_once("DBOS.now", crate::Format::Json, async {
            Ok::<_, Error>(chrono::Utc::now())
        })
        .await
    }

    /// A random `u64`, recorded: in a workflow body it is an operation (`DBOS.random`) whose
    /// value a resumed workflow replays. Elsewhere a fresh random value.
    ///
    /// # Errors
    /// As [`DBOS::now`].
    pub async fn random() -> Result<u64> {
        crate::step::run_step_once("DBOS.random", crate::Format::Json, async {
            Ok::<_, Error>(uuid::Uuid::new_v4().as_u64_pair().0)
        })
        .await
    }

    /// Sleeps durably: in a workflow the wake-up time is recorded, so a workflow recovered after
    /// a crash sleeps only the remainder. Elsewhere it is a plain sleep.
    pub async fn sleep(duration: Duration) -> Result<()> {
        crate::sleep::sleep(duration).await
    }

    /// Counters of the current runtime's database work.
    pub fn metrics() -> Result<MetricsSnapshot> {
        Ok(context::runtime()?.metrics_snapshot())
    }
}

/// Operating workflows from the static API: see `manage.rs`.
impl DBOS {
    /// [`Runtime::list_workflows`] on the current runtime.
    pub async fn list_workflows(filter: &WorkflowFilter) -> Result<Vec<WorkflowInfo>> {
        crate::context::runtime()?.list_workflows(filter).await
    }

    /// [`Runtime::list_queued_workflows`] on the current runtime.
    pub async fn list_queued_workflows(filter: &WorkflowFilter) -> Result<Vec<WorkflowInfo>> {
        crate::context::runtime()?
            .list_queued_workflows(filter)
            .await
    }

    /// [`Runtime::get_workflow_steps`] on the current runtime.
    pub async fn get_workflow_steps(workflow_id: &str) -> Result<Vec<StepInfo>> {
        crate::context::runtime()?
            .get_workflow_steps(workflow_id)
            .await
    }

    /// [`Runtime::cancel_workflow`] on the current runtime.
    pub async fn cancel_workflow(workflow_id: &str) -> Result<bool> {
        if context::in_replay_check() {
            // A replay check runs workflow bodies but must change nothing.
            return Err(Error::ShuttingDown);
        }
        crate::context::runtime()?
            .cancel_workflow(workflow_id)
            .await
    }

    /// [`Runtime::resume_workflow`] on the current runtime.
    pub async fn resume_workflow(workflow_id: &str) -> Result<bool> {
        if context::in_replay_check() {
            // A replay check runs workflow bodies but must change nothing.
            return Err(Error::ShuttingDown);
        }
        crate::context::runtime()?
            .resume_workflow(workflow_id)
            .await
    }

    /// [`Runtime::fork_workflow`] on the current runtime.
    pub async fn fork_workflow(
        workflow_id: &str,
        start_step: i32,
        options: ForkOptions,
    ) -> Result<String> {
        if context::in_replay_check() {
            // A replay check runs workflow bodies but must change nothing.
            return Err(Error::ShuttingDown);
        }
        crate::context::runtime()?
            .fork_workflow(workflow_id, start_step, options)
            .await
    }
}
