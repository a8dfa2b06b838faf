//! The runtime and the static `DBOS` API users call.

use crate::config::DbosConfig;
use crate::error::{Error, Result, WorkflowError};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::notify::Notifier;
use crate::registry::Registry;
use crate::sysdb::SysDb;
use crate::workflow::{self, WorkflowCall, WorkflowHandle, WorkflowStatus};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

pub(crate) struct Inner {
    cfg: DbosConfig,
    db: SysDb,
    notifier: Notifier,
    registry: Registry,
    dispatch_wake: Notify,
    /// Workflow executions running in this process.
    running: Mutex<HashMap<String, AbortHandle>>,
    /// Background loops: listener, dispatcher, schedules; `shutdown` aborts and awaits them.
    background: Mutex<Vec<JoinHandle<()>>>,
    /// The tokio runtime `launch` ran on: workflows run there, whichever runtime starts them
    /// (an actix-web worker thread, say).
    tokio: tokio::runtime::Handle,
}

/// A launched runtime: the database, the registry and the background tasks.
///
/// Most programs use the static [`DBOS`] API over one global runtime; tests that need several
/// runtimes in one process launch [`Runtime`]s and run code inside [`Runtime::scope`].
#[derive(Clone)]
pub struct Runtime(Arc<Inner>);

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("app", &self.0.cfg.name)
            .finish()
    }
}

static GLOBAL: RwLock<Option<Runtime>> = RwLock::new(None);

pub(crate) fn global() -> Result<Runtime> {
    let g = match GLOBAL.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    g.clone().ok_or(Error::NotLaunched)
}

impl Runtime {
    /// Connects, migrates, registers, recovers this executor's unfinished workflows and starts
    /// the dispatcher and schedules. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// A malformed configuration, an unreachable database, a database migrated by another SDK
    /// to a state we cannot finish, or two workflows registered under one name.
    pub async fn launch(cfg: DbosConfig) -> Result<Runtime> {
        cfg.validate()?;
        let registry = Registry::collect()?;
        let db = SysDb::open(&cfg).await?;
        let rt = Runtime(Arc::new(Inner {
            cfg,
            db,
            notifier: Notifier::default(),
            registry,
            dispatch_wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            background: Mutex::new(Vec::new()),
            tokio: tokio::runtime::Handle::current(),
        }));
        rt.db().insert_app_version().await?;
        let weak = Arc::downgrade(&rt.0);
        let listener = rt
            .db()
            .listen(rt.notifier().waiting(), move |change| {
                if let Some(inner) = weak.upgrade() {
                    inner.notifier.on_change(change);
                }
            })
            .await?;
        if let Some(l) = listener {
            rt.keep(l);
        }
        crate::recovery::recover_pending(&rt).await?;
        let dispatcher = tokio::spawn(crate::recovery::dispatch_loop(rt.clone()));
        rt.keep(dispatcher);
        for &(name, cron) in &rt.0.registry.schedules {
            let task = tokio::spawn(crate::scheduler::run_schedule(rt.clone(), name, cron));
            rt.keep(task);
        }
        Ok(rt)
    }

    /// Runs `fut` with this runtime as the current one (for code outside workflows).
    pub async fn scope<F: std::future::Future>(&self, fut: F) -> F::Output {
        crate::context::scope(
            crate::context::Current {
                rt: self.clone(),
                wf: None,
                in_step: false,
            },
            fut,
        )
        .await
    }

    /// Stops the background tasks and running workflows (which stay PENDING and are recovered
    /// at the next launch) and closes the database pools.
    pub async fn shutdown(&self) {
        let tasks: Vec<JoinHandle<()>> = lock(&self.0.background).drain(..).collect();
        for t in &tasks {
            t.abort();
        }
        // Wait until each has stopped at an `.await`: no tick or claim of this runtime is in
        // progress after this, and none starts a workflow after `running` is drained below.
        for t in tasks {
            let _ = t.await;
        }
        let running: Vec<AbortHandle> = lock(&self.0.running).drain().map(|(_, h)| h).collect();
        for t in running {
            t.abort();
        }
        self.0.db.close().await;
    }

    /// Counters of database work done so far.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        self.0.db.metrics_snapshot()
    }

    /// The configuration this runtime was launched with.
    pub fn config(&self) -> &DbosConfig {
        &self.0.cfg
    }

    /// How many workflow executions run in this process now.
    pub fn running_workflows(&self) -> usize {
        lock(&self.0.running).len()
    }

    pub(crate) fn db(&self) -> &SysDb {
        &self.0.db
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.0.db.metrics
    }

    pub(crate) fn notifier(&self) -> &Notifier {
        &self.0.notifier
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.0.registry
    }

    /// Spawns a task on the runtime's own tokio runtime.
    pub(crate) fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.tokio.spawn(fut)
    }

    pub(crate) fn wake_dispatcher(&self) {
        self.0.dispatch_wake.notify_one();
    }

    pub(crate) async fn dispatcher_woken(&self) {
        self.0.dispatch_wake.notified().await
    }

    pub(crate) fn track_task(&self, id: String, handle: AbortHandle) {
        let mut running = lock(&self.0.running);
        if !handle.is_finished() {
            running.insert(id, handle);
        }
    }

    pub(crate) fn task_done(&self, id: &str) {
        lock(&self.0.running).remove(id);
    }

    fn keep(&self, handle: JoinHandle<()>) {
        lock(&self.0.background).push(handle);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The static API: launch the runtime, start and inspect workflows, messages, events, sleep.
#[derive(Debug)]
pub struct DBOS;

impl DBOS {
    /// Launches the global runtime (see [`Runtime::launch`]).
    ///
    /// # Errors
    /// [`Error::AlreadyLaunched`] on a second call; otherwise what [`Runtime::launch`] returns.
    pub async fn launch(cfg: DbosConfig) -> Result<()> {
        if global().is_ok() {
            return Err(Error::AlreadyLaunched);
        }
        let rt = Runtime::launch(cfg).await?;
        let lost_race = {
            let mut g = match GLOBAL.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            match *g {
                Some(_) => Some(rt),
                None => {
                    *g = Some(rt);
                    None
                }
            }
        };
        match lost_race {
            Some(rt) => {
                rt.shutdown().await;
                Err(Error::AlreadyLaunched)
            }
            None => Ok(()),
        }
    }

    /// Shuts the global runtime down; running workflows stay PENDING and resume at the next launch.
    pub async fn shutdown() {
        let rt = {
            let mut g = match GLOBAL.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            g.take()
        };
        if let Some(rt) = rt {
            rt.shutdown().await;
        }
    }

    /// Records the workflow and runs it in the background; returns a handle at once.
    ///
    /// # Durability
    /// When this returns `Ok`, the workflow is recorded: it finishes even if the process dies.
    /// An ID that exists is never run twice: the handle refers to the existing workflow.
    ///
    /// # Errors
    /// [`Error::WorkflowConflict`] when the ID belongs to another function; database errors.
    pub async fn start_workflow<T, E>(call: WorkflowCall<T, E>) -> Result<WorkflowHandle<T, E>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        workflow::start(call).await
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
        let rt = crate::context::runtime()?;
        if rt.db().get_workflow(workflow_id).await?.is_none() {
            return Err(Error::NonExistentWorkflow(workflow_id.to_owned()));
        }
        Ok(WorkflowHandle::new(workflow_id.to_owned(), rt, None))
    }

    /// The status of a workflow, or `None` when no workflow has this ID.
    pub async fn get_status(workflow_id: &str) -> Result<Option<WorkflowStatus>> {
        let rt = crate::context::runtime()?;
        Ok(rt
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
    pub async fn workflow_exists(workflow_id: &str) -> Result<bool> {
        Ok(Self::get_status(workflow_id).await?.is_some())
    }

    /// The ID of the calling workflow.
    ///
    /// # Errors
    /// [`Error::NotInWorkflow`] outside a workflow.
    pub fn workflow_id() -> Result<String> {
        match crate::context::position() {
            Ok(crate::context::Position::Workflow(_, ctx))
            | Ok(crate::context::Position::InStep(_, ctx)) => Ok(ctx.id.clone()),
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

    /// Sleeps durably: in a workflow the wake-up time is recorded, so a workflow recovered after
    /// a crash sleeps only the remainder. Elsewhere it is a plain sleep.
    pub async fn sleep(duration: Duration) -> Result<()> {
        crate::sleep::sleep(duration).await
    }

    /// Counters of the current runtime's database work.
    pub fn metrics() -> Result<MetricsSnapshot> {
        Ok(crate::context::runtime()?.metrics_snapshot())
    }
}
