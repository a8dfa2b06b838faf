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
    /// Notified when `running` becomes empty.
    idle: Notify,
    /// Background loops that write: dispatcher, schedules. They stop on their own at shutdown.
    background: Mutex<Vec<JoinHandle<()>>>,
    /// The change feed (LISTEN, or the SQLite watcher): it only reads, and is aborted at shutdown.
    listener: Mutex<Option<JoinHandle<()>>>,
    /// Set once `shutdown` begins.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Set once `shutdown` has finished.
    stopped: tokio::sync::watch::Sender<bool>,
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

/// How long shutdown waits for the runtime's own loops, and then for database connections in
/// use, before it cuts them off (each is normally a matter of milliseconds).
const INTERNAL_DRAIN: Duration = Duration::from_secs(5);

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
            idle: Notify::new(),
            background: Mutex::new(Vec::new()),
            listener: Mutex::new(None),
            stopping: tokio::sync::watch::Sender::new(false),
            stopped: tokio::sync::watch::Sender::new(false),
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
        *lock(&rt.0.listener) = listener;
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

    /// Stops the runtime: when this returns, nothing this runtime started changes the database
    /// any more, and running workflows (which stay `PENDING`) resume at the next launch.
    ///
    /// # Durability
    /// No operation starts once shutdown has begun: each fails with [`Error::ShuttingDown`],
    /// and every wait (`recv`, `get_event`, `sleep`, a result) ends with it at once. Operations
    /// already under way (a checkpoint on its way to the database, a transaction, a scheduled
    /// tick being enqueued, a dispatcher claim) finish first, and workflow bodies run on to
    /// their next durable operation, for at most [`DbosConfig::shutdown_timeout`]; workflows
    /// still running then are cut off with a warning naming them. Calling it again, or from
    /// several tasks, waits for the same shutdown.
    pub async fn shutdown(&self) {
        if self.0.stopping.send_replace(true) {
            // Another call is shutting down: return when it does.
            let mut done = self.0.stopped.subscribe();
            let _ = done.wait_for(|done| *done).await;
            return;
        }
        // Order matters: the database refuses new work before any wait ends with
        // `ShuttingDown`, so no workflow can record that error as its outcome.
        self.0.db.begin_close();
        self.0.notifier.close();
        self.wake_dispatcher();
        let listener = lock(&self.0.listener).take();
        if let Some(listener) = listener {
            // It only reads, and holds a pool connection that `close` would wait for.
            listener.abort();
            let _ = listener.await;
        }
        // Our own loops stop at their next wait; what they have under way finishes.
        let background: Vec<JoinHandle<()>> = lock(&self.0.background).drain(..).collect();
        let aborts: Vec<AbortHandle> = background.iter().map(JoinHandle::abort_handle).collect();
        let ours = tokio::time::timeout(INTERNAL_DRAIN, async {
            for task in background {
                let _ = task.await;
            }
        });
        if ours.await.is_err() {
            tracing::warn!("shutdown: a background task did not stop within {INTERNAL_DRAIN:?}; cutting it off");
            aborts.iter().for_each(AbortHandle::abort);
        }
        // Workflow bodies run on to their next durable operation, where they stop.
        let bound = self.0.cfg.shutdown_timeout;
        if tokio::time::timeout(bound, self.workflows_stopped())
            .await
            .is_err()
        {
            let running: Vec<(String, AbortHandle)> = lock(&self.0.running).drain().collect();
            let ids: Vec<&str> = running.iter().map(|(id, _)| id.as_str()).collect();
            tracing::warn!(
                timeout = ?bound,
                workflows = ?ids,
                "shutdown: cutting off workflows still running; they resume at the next launch, and a statement one of them already sent may commit after shutdown returns"
            );
            running.iter().for_each(|(_, task)| task.abort());
        }
        // Every statement under way has ended on the server when the connections are closed.
        if tokio::time::timeout(INTERNAL_DRAIN, self.0.db.close())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: database connections still in use after {INTERNAL_DRAIN:?}");
        }
        self.0.stopped.send_replace(true);
    }

    /// Waits until no workflow execution runs in this process.
    async fn workflows_stopped(&self) {
        loop {
            let idle = self.0.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if lock(&self.0.running).is_empty() {
                return;
            }
            idle.await;
        }
    }

    /// Whether shutdown has begun.
    pub(crate) fn is_stopping(&self) -> bool {
        *self.0.stopping.borrow()
    }

    /// Runs `fut` unless shutdown begins first: then [`Error::ShuttingDown`] (for waits that
    /// must not hold a shutdown up: sleeps, retry backoffs, the dispatcher's nap).
    pub(crate) async fn unless_stopping<F: std::future::Future>(
        &self,
        fut: F,
    ) -> Result<F::Output> {
        tokio::select! {
            out = fut => Ok(out),
            () = self.stopping() => Err(Error::ShuttingDown),
        }
    }

    /// Resolves once shutdown has begun.
    pub(crate) async fn stopping(&self) {
        let mut stopping = self.0.stopping.subscribe();
        let _ = stopping.wait_for(|s| *s).await;
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
        let mut running = lock(&self.0.running);
        running.remove(id);
        if running.is_empty() {
            self.0.idle.notify_waiters();
        }
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
