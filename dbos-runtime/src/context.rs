//! The task-local context (which runtime, which workflow, which operation comes next) and the
//! global runtime that code outside any context uses.

use crate::cancel::CancelFlag;
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::sysdb::StepRow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The runtime `DBOS::launch` made.
static GLOBAL: RwLock<Option<Runtime>> = RwLock::new(None);

/// The global runtime.
///
/// # Errors
/// [`Error::NotLaunched`] before `DBOS::launch` and after `DBOS::shutdown`.
pub(crate) fn global() -> Result<Runtime> {
    let g = match GLOBAL.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    g.clone().ok_or(Error::NotLaunched)
}

/// Installs `rt` as the global runtime unless one is installed; gives it back otherwise.
pub(crate) fn set_global(rt: Runtime) -> std::result::Result<(), Runtime> {
    let mut g = match GLOBAL.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    match *g {
        Some(_) => Err(rt),
        None => {
            *g = Some(rt);
            Ok(())
        }
    }
}

/// Removes the global runtime.
pub(crate) fn take_global() -> Option<Runtime> {
    let mut g = match GLOBAL.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    g.take()
}

tokio::task_local! {
    static CURRENT: Current;
}

/// What the running task is: a workflow body, a step body, or plain code under a runtime.
#[derive(Clone)]
pub(crate) struct Current {
    pub rt: Runtime,
    pub wf: Option<Arc<WfCtx>>,
    pub in_step: bool,
}

/// One execution of one workflow.
pub(crate) struct WfCtx {
    pub id: String,
    next: AtomicI32,
    /// Operations recorded by earlier executions (loaded once when a workflow is resumed).
    recorded: Mutex<HashMap<i32, StepRow>>,
    /// Whether this execution resumes an earlier one (so records may exist).
    pub resumed: bool,
    /// Another execution recorded one of our operations first: it owns the outcome.
    handed_off: std::sync::atomic::AtomicBool,
    /// Set when the workflow is cancelled (by a call here, a notification from another
    /// process, its deadline, or a write that found the row CANCELLED): no operation begins
    /// after it, every wait ends, and this execution records no outcome.
    pub cancelled: CancelFlag,
    /// The workflow's deadline (`workflow_deadline_epoch_ms`), inherited by its children.
    pub deadline_ms: Option<i64>,
}

impl WfCtx {
    pub(crate) fn new(
        id: String,
        recorded: Vec<StepRow>,
        resumed: bool,
        deadline_ms: Option<i64>,
    ) -> WfCtx {
        WfCtx {
            id,
            next: AtomicI32::new(0),
            recorded: Mutex::new(recorded.into_iter().map(|r| (r.function_id, r)).collect()),
            resumed,
            handed_off: std::sync::atomic::AtomicBool::new(false),
            cancelled: CancelFlag::default(),
            deadline_ms,
        }
    }

    /// Replaces the records read when this execution began (they were read again).
    pub(crate) fn set_recorded(&self, recorded: Vec<StepRow>) {
        let mut guard = match self.recorded.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *guard = recorded.into_iter().map(|r| (r.function_id, r)).collect();
    }

    /// The next operation's position (SYSDB rule 7: numbered from 1).
    pub(crate) fn next_id(&self) -> i32 {
        self.next.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The current position (the last one handed out).
    pub(crate) fn current_id(&self) -> i32 {
        self.next.load(Ordering::SeqCst)
    }

    /// The record at `n`, if an earlier execution wrote one; a record under another name is a
    /// determinism failure (SYSDB rule 9).
    pub(crate) fn recorded(&self, n: i32, name: &str) -> Result<Option<StepRow>> {
        if !self.resumed {
            return Ok(None);
        }
        let guard = match self.recorded.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match guard.get(&n) {
            None => Ok(None),
            Some(row) if row.function_name == name => Ok(Some(row.clone())),
            Some(row) => Err(Error::NonDeterministic {
                workflow_id: self.id.clone(),
                function_id: n,
                recorded: row.function_name.clone(),
                current: name.to_owned(),
            }),
        }
    }
}

impl WfCtx {
    /// Whether another execution took this workflow over: it owns the outcome.
    pub(crate) fn handed_off(&self) -> bool {
        self.handed_off.load(Ordering::SeqCst)
    }

    /// Marks this execution as handed off (another one recorded one of its operations first).
    pub(crate) fn hand_off(&self) {
        self.handed_off.store(true, Ordering::SeqCst);
    }

    /// Marks the workflow cancelled: operations refuse to begin and waits end.
    pub(crate) fn cancel(&self) {
        self.cancelled.set();
    }

    /// Whether the workflow was cancelled while this execution ran.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.is_set()
    }

    /// Resolves once the workflow is cancelled.
    pub(crate) async fn cancelled(&self) {
        self.cancelled.wait().await
    }
}

/// Where the caller stands.
pub(crate) enum Position {
    /// Not in a workflow.
    Outside(Runtime),
    /// Inside a step (or transaction) body: nested operations are plain calls.
    InStep(Runtime, Arc<WfCtx>),
    /// In a workflow body: operations are checkpointed.
    Workflow(Runtime, Arc<WfCtx>),
}

pub(crate) fn position() -> Result<Position> {
    match CURRENT.try_with(|c| c.clone()) {
        Ok(Current {
            rt,
            wf: Some(wf),
            in_step: false,
        }) => Ok(Position::Workflow(rt, wf)),
        Ok(Current {
            rt,
            wf: Some(wf),
            in_step: true,
        }) => Ok(Position::InStep(rt, wf)),
        Ok(Current { rt, wf: None, .. }) => Ok(Position::Outside(rt)),
        Err(_) => Ok(Position::Outside(global()?)),
    }
}

/// The runtime of the calling task (a scoped one, else the global one).
pub(crate) fn runtime() -> Result<Runtime> {
    match CURRENT.try_with(|c| c.rt.clone()) {
        Ok(rt) => Ok(rt),
        Err(_) => global(),
    }
}

/// Runs `fut` under `rt`: in the caller's context when that is already `rt`'s (so an
/// operation inside a workflow body stays recorded), else as code outside any workflow.
pub(crate) async fn enter<F: std::future::Future>(rt: &Runtime, fut: F) -> F::Output {
    let current = CURRENT.try_with(|c| c.rt.same(rt)).unwrap_or(false);
    if current {
        fut.await
    } else {
        rt.scope(fut).await
    }
}

impl Runtime {
    /// Runs `fut` with this runtime as the current one, outside any workflow: the static
    /// [`DBOS`](crate::DBOS) API called inside it uses this runtime.
    pub async fn scope<F: std::future::Future>(&self, fut: F) -> F::Output {
        scope(
            Current {
                rt: self.clone(),
                wf: None,
                in_step: false,
            },
            fut,
        )
        .await
    }
}

/// Runs `fut` with `current` as the task's context.
pub(crate) async fn scope<F: std::future::Future>(current: Current, fut: F) -> F::Output {
    CURRENT.scope(current, fut).await
}

/// Runs `fut` as a step body of `wf`.
pub(crate) async fn in_step<F: std::future::Future>(
    rt: &Runtime,
    wf: &Arc<WfCtx>,
    fut: F,
) -> F::Output {
    scope(
        Current {
            rt: rt.clone(),
            wf: Some(wf.clone()),
            in_step: true,
        },
        fut,
    )
    .await
}
