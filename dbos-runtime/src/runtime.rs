//! The runtime handle: the system database, the registry, the notifier, the tasks running on
//! its behalf, and shutdown. Opening it does nothing in the background; launching it
//! (recovery, dispatch, schedules) and the user-facing API are in `dbos.rs`.

use crate::cancel::CancelFlag;
use crate::config::DbosConfig;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::notify::Notifier;
use crate::registry::Registry;
use crate::sysdb::SysDb;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

/// Whether a runtime runs workflows or only reads and writes the system database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// [`Runtime::launch`]: recovers, dispatches, runs schedules, runs workflows it starts.
    Launched,
    /// [`Runtime::connect`]: a client; workflows it starts are enqueued for a launched runtime.
    Connected,
}

pub(crate) struct Inner {
    cfg: DbosConfig,
    mode: Mode,
    db: SysDb,
    notifier: Notifier,
    registry: Registry,
    dispatch_wake: Notify,
    /// Workflow executions running in this process, by a serial number (a workflow resumed
    /// right after a cancel may briefly have two: the cancelled one on its way out).
    running: Mutex<HashMap<u64, Execution>>,
    next_execution: AtomicU64,
    /// Notified when `running` becomes empty.
    idle: Notify,
    /// Notified whenever an execution ends.
    execution_ended: Notify,
    /// Background loops that write: dispatcher, schedules. They stop on their own at shutdown.
    background: Mutex<Vec<JoinHandle<()>>>,
    /// The change feed (LISTEN, or the SQLite watcher): it only reads, and is aborted at shutdown.
    listener: Mutex<Option<JoinHandle<()>>>,
    /// Set once `shutdown` begins.
    stopping: tokio::sync::watch::Sender<bool>,
    /// A check for cancelled running workflows is under way.
    checking_cancels: std::sync::atomic::AtomicBool,
    /// Set by the admin server's `/deactivate`: schedules start no new ticks.
    deactivated: std::sync::atomic::AtomicBool,
    /// The admin server, when one runs: stopped at shutdown.
    admin: Mutex<Option<AdminHandle>>,
    /// Where the admin server listens.
    admin_addr: Mutex<Option<std::net::SocketAddr>>,
    /// Set once `shutdown` has finished.
    stopped: tokio::sync::watch::Sender<bool>,
    /// A checkpoint cut planned by [`crate::testing`].
    cut: std::sync::OnceLock<Arc<crate::cut::Plan>>,
    /// Set when that cut happened: the runtime behaves as a killed process, beginning nothing.
    cut_down: std::sync::atomic::AtomicBool,
    /// The tokio runtime `launch` ran on: workflows run there, whichever runtime starts them
    /// (an actix-web worker thread, say).
    tokio: tokio::runtime::Handle,
    /// On a SQLite file, the lock on this executor's slot (see `config::resolve_executor_id`),
    /// released at shutdown.
    slot: Mutex<Option<std::fs::File>>,
}

/// Stops a running admin server.
pub(crate) type AdminHandle =
    Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

/// One workflow execution running in this process.
struct Execution {
    id: String,
    cancelled: CancelFlag,
    /// Set once its task is spawned.
    task: Option<AbortHandle>,
}

/// A handle to the system database and what runs on it: the whole API of the library.
///
/// [`Runtime::launch`] makes a runtime that recovers, dispatches and runs workflows;
/// [`Runtime::connect`] a client that only reads and writes the system database (it starts
/// workflows by enqueueing them for a launched runtime). Most programs use the static
/// [`DBOS`](crate::DBOS) API, sugar over the current runtime (the global one that
/// [`DBOS::launch`](crate::DBOS::launch) made, or one entered with [`Runtime::scope`]).
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

impl Runtime {
    /// Validates the configuration, collects the registry and opens (and migrates) the
    /// system database; starts nothing.
    pub(crate) async fn open(mut cfg: DbosConfig, mode: Mode) -> Result<Runtime> {
        cfg.validate()?;
        let slot = if mode == Mode::Launched {
            crate::config::resolve_executor_id(&mut cfg)
        } else {
            None
        };
        let registry = Registry::collect()?;
        let db = SysDb::open(&cfg).await?;
        Ok(Runtime(Arc::new(Inner {
            cfg,
            mode,
            db,
            notifier: Notifier::default(),
            registry,
            dispatch_wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            next_execution: AtomicU64::new(0),
            idle: Notify::new(),
            execution_ended: Notify::new(),
            background: Mutex::new(Vec::new()),
            listener: Mutex::new(None),
            stopping: tokio::sync::watch::Sender::new(false),
            stopped: tokio::sync::watch::Sender::new(false),
            deactivated: std::sync::atomic::AtomicBool::new(false),
            checking_cancels: std::sync::atomic::AtomicBool::new(false),
            admin: Mutex::new(None),
            admin_addr: Mutex::new(None),
            tokio: tokio::runtime::Handle::current(),
            slot: Mutex::new(slot),
            cut: std::sync::OnceLock::new(),
            cut_down: std::sync::atomic::AtomicBool::new(false),
        })))
    }

    /// Starts the database's change feed, which wakes local waiters for writes made elsewhere.
    pub(crate) async fn listen(&self) -> Result<()> {
        let weak = Arc::downgrade(&self.0);
        let listener = self
            .db()
            .listen(self.notifier().waiting(), move |change| {
                if let Some(inner) = weak.upgrade() {
                    match change {
                        crate::sysdb::Change::Cancelled(id) => {
                            Runtime(inner.clone()).cancel_local(id);
                        }
                        crate::sysdb::Change::Unknown => {
                            Runtime(inner.clone()).check_cancelled();
                            inner.dispatch_wake.notify_one();
                        }
                        crate::sysdb::Change::Queue(_) => inner.dispatch_wake.notify_one(),
                        _ => {}
                    }
                    inner.notifier.on_change(change);
                }
            })
            .await?;
        *lock(&self.0.listener) = listener;
        Ok(())
    }

    /// Whether this runtime runs workflows (launched) or is a client (connected).
    pub(crate) fn mode(&self) -> Mode {
        self.0.mode
    }

    /// Whether `other` is a handle to this same runtime.
    pub(crate) fn same(&self, other: &Runtime) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
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
        // Order matters: the database refuses new work (both calls are idempotent) before
        // `stopping` ends any wait with `ShuttingDown`, so no workflow woken by it can record
        // that error as its outcome: its write finds the database closed.
        self.0.db.begin_close();
        self.0.notifier.close();
        if self.0.stopping.send_replace(true) {
            // Another call is shutting down: return when it does.
            let mut done = self.0.stopped.subscribe();
            let _ = done.wait_for(|done| *done).await;
            return;
        }
        self.wake_dispatcher();
        let admin = lock(&self.0.admin).take();
        if let Some(stop) = admin {
            stop().await;
        }
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
            let running: Vec<Execution> = lock(&self.0.running).drain().map(|(_, e)| e).collect();
            let ids: Vec<&str> = running.iter().map(|e| e.id.as_str()).collect();
            tracing::warn!(
                timeout = ?bound,
                workflows = ?ids,
                "shutdown: cutting off workflows still running; they resume at the next launch, and a statement one of them already sent may commit after shutdown returns"
            );
            running
                .iter()
                .filter_map(|e| e.task.as_ref())
                .for_each(AbortHandle::abort);
        }
        // Nothing of ours runs any more: our unfinished workflows may be taken over at once.
        if self.0.mode == Mode::Launched {
            if let Err(e) = self.0.db.expire_self().await {
                tracing::debug!("expiring the liveness record: {e}");
            }
        }
        // Every statement under way has ended on the server when the connections are closed.
        if tokio::time::timeout(INTERNAL_DRAIN, self.0.db.close())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: database connections still in use after {INTERNAL_DRAIN:?}");
        }
        // The slot is free for the next process (or launch) once nothing of ours runs.
        drop(lock(&self.0.slot).take());
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
        *self.0.stopping.borrow() || self.0.cut_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A planned cut happened ([`crate::testing`]): no write commits from now on and no
    /// operation begins, as if the process had been killed at this instant.
    pub(crate) fn cut_down(&self) {
        self.0
            .cut_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.db.begin_close();
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

    /// Plans a checkpoint cut ([`crate::testing`]).
    pub(crate) fn set_cut(&self, plan: Arc<crate::cut::Plan>) {
        // One plan per runtime: the harness launches a fresh runtime for every run.
        let _ = self.0.cut.set(plan);
    }

    /// The checkpoint cut planned by [`crate::testing`], if any (read without a lock: it is
    /// consulted at every checkpoint).
    pub(crate) fn cut(&self) -> Option<&Arc<crate::cut::Plan>> {
        self.0.cut.get()
    }

    /// The configuration this runtime was launched with.
    pub fn config(&self) -> &DbosConfig {
        &self.0.cfg
    }

    /// How many workflow executions run in this process now.
    pub fn running_workflows(&self) -> usize {
        lock(&self.0.running).len()
    }

    /// How many waiting workflows this process has unloaded from memory (see
    /// [`DbosConfig::unload_waiting_after`]); they are not among
    /// [`Runtime::running_workflows`] until their wait ends.
    pub fn unloaded_workflows(&self) -> usize {
        self.0.notifier.parked()
    }

    /// Whether an execution of workflow `id` runs in this process.
    pub(crate) fn runs(&self, id: &str) -> bool {
        lock(&self.0.running).values().any(|e| e.id == id)
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

    /// Registers an execution about to be spawned; returns its serial number.
    pub(crate) fn execution_starts(&self, id: &str, cancelled: CancelFlag) -> u64 {
        let serial = self.0.next_execution.fetch_add(1, Ordering::Relaxed);
        let e = Execution {
            id: id.to_owned(),
            cancelled,
            task: None,
        };
        lock(&self.0.running).insert(serial, e);
        serial
    }

    /// Gives the registered execution its task, so shutdown can cut it off.
    pub(crate) fn execution_spawned(&self, serial: u64, task: AbortHandle) {
        if let Some(e) = lock(&self.0.running).get_mut(&serial) {
            e.task = Some(task);
        }
    }

    /// Unregisters an execution (its task is ending).
    pub(crate) fn execution_done(&self, serial: u64) {
        let mut running = lock(&self.0.running);
        running.remove(&serial);
        if running.is_empty() {
            self.0.idle.notify_waiters();
        }
        self.0.execution_ended.notify_waiters();
    }

    /// Waits until no earlier execution of workflow `id` runs here. One may, when the workflow
    /// was cancelled (by another process: this one learns of it only at the next checkpoint or
    /// check) and then resumed: the earlier one is told to stop, and stops at its next
    /// operation without an outcome, so the resumed execution (`serial`) runs alone.
    /// Returns whether there was one to wait for (it may have recorded operations since the
    /// resumed execution read its records).
    pub(crate) async fn earlier_executions_stopped(&self, id: &str, serial: u64) -> bool {
        let mut waited = false;
        loop {
            let ended = self.0.execution_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let mut earlier = false;
            for (s, e) in lock(&self.0.running).iter() {
                if *s < serial && e.id == id {
                    e.cancelled.set();
                    earlier = true;
                }
            }
            if !earlier {
                return waited;
            }
            tracing::info!(workflow_id = %id, "an earlier execution of this workflow still runs here; it stops first");
            waited = true;
            ended.await;
        }
    }

    /// Cancels `id` (and, with `children`, every descendant): the rows become CANCELLED (and
    /// other processes on Postgres are told), and executions in this process stop at once.
    /// Returns whether `id`'s row changed (`false`: it had finished).
    pub(crate) async fn cancel_workflows(&self, id: &str, children: bool) -> Result<bool> {
        let changed = self.db().cancel_workflow(id).await?;
        self.cancel_local(id);
        if children {
            // Descendants form a tree: a child's parent is fixed when it starts.
            let mut frontier = vec![id.to_owned()];
            while let Some(parent) = frontier.pop() {
                for child in self.db().children_of(&parent).await? {
                    self.db().cancel_workflow(&child).await?;
                    self.cancel_local(&child);
                    frontier.push(child);
                }
            }
        }
        Ok(changed)
    }

    /// Checks whether any workflow running here was cancelled by a write the change feed
    /// could not name (another process on the SQLite file, which sends no notification; or a
    /// lost `LISTEN` connection), and stops those. One check at a time.
    pub(crate) fn check_cancelled(&self) {
        if self.0.checking_cancels.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut ids: Vec<String> = lock(&self.0.running)
            .values()
            .map(|e| e.id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids.truncate(1000);
        let rt = self.clone();
        self.spawn(async move {
            match rt.db().cancelled_among(&ids).await {
                Ok(cancelled) => cancelled.iter().for_each(|id| {
                    rt.cancel_local(id);
                }),
                Err(e) => tracing::debug!("checking for cancelled workflows: {e}"),
            }
            rt.0.checking_cancels.store(false, Ordering::SeqCst);
        });
    }

    /// Marks every execution of workflow `id` in this process cancelled, and wakes whoever
    /// waits for its outcome here. Returns whether one was running.
    pub(crate) fn cancel_local(&self, id: &str) -> bool {
        let mut found = false;
        for e in lock(&self.0.running).values() {
            if e.id == id {
                e.cancelled.set();
                found = true;
            }
        }
        self.0.notifier.notify(&crate::notify::done_key(id));
        // Unloaded while it waited: nothing is left to stop, and nothing to load again.
        self.0.notifier.unpark(id);
        found
    }

    /// Stops starting scheduled ticks (DBOS's `/deactivate`); queued and running work goes on.
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn deactivate(&self) {
        self.0.deactivated.store(true, Ordering::SeqCst);
    }

    /// Whether [`Runtime::deactivate`] was called.
    pub(crate) fn is_deactivated(&self) -> bool {
        self.0.deactivated.load(Ordering::SeqCst)
    }

    /// Keeps the admin server's address and stop function: shutdown calls it first.
    #[cfg_attr(not(feature = "admin"), allow(dead_code))]
    pub(crate) fn keep_admin(&self, addr: Option<std::net::SocketAddr>, stop: AdminHandle) {
        *lock(&self.0.admin_addr) = addr;
        *lock(&self.0.admin) = Some(stop);
    }

    /// The address the admin server listens on (useful with port 0), if one runs.
    pub fn admin_address(&self) -> Option<std::net::SocketAddr> {
        *lock(&self.0.admin_addr)
    }

    /// Keeps a background loop that writes: shutdown waits for it to stop.
    pub(crate) fn keep(&self, handle: JoinHandle<()>) {
        lock(&self.0.background).push(handle);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
