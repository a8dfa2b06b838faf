//! The task-local context (which runtime, which workflow, which operation comes next) and the
//! global runtime that code outside any context uses.

use crate::cancel::CancelFlag;
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::sysdb::StepRow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Notify;
use tokio::time::Instant;

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
    /// In a step body: the step's position (what `set_event` and stream writes inside it use).
    pub step_at: i32,
    /// In a branch of a `DBOS::join` or `DBOS::select`: how the branch numbers its operations.
    pub branch: Option<Arc<Branch>>,
}

impl Current {
    /// Plain code under `rt`, outside any workflow.
    pub(crate) fn outside(rt: Runtime) -> Current {
        Current {
            rt,
            wf: None,
            in_step: false,
            step_at: 0,
            branch: None,
        }
    }

    /// The body of workflow `wf` (its own numbering, not in any branch).
    pub(crate) fn workflow(rt: Runtime, wf: Arc<WfCtx>) -> Current {
        Current {
            rt,
            wf: Some(wf),
            in_step: false,
            step_at: 0,
            branch: None,
        }
    }
}

/// The numbering of one branch of a `DBOS::join` or `DBOS::select`.
///
/// A workflow body numbers its operations 1, 2, 3, ... in the order they begin. Branches that
/// run at once would take those numbers in the order they happen to get there, which a resumed
/// workflow need not repeat. So a group of `width` branches opened when its parent sequence
/// had taken `base` numbers gives branch `index` the parent's indices
/// `base + k·width + index` for its `k`-th position: every branch has its own sequence, fixed
/// whatever order the branches run or finish in, and a group nested in a branch takes its
/// indices from that branch's sequence the same way. When the group ends, the parent has
/// taken `base + span·width`, `span` being the most positions any branch took.
pub(crate) struct Branch {
    /// The enclosing branch; `None` when the group was opened in the workflow body itself.
    parent: Option<Arc<Branch>>,
    base: i32,
    width: i32,
    index: i32,
    /// Positions this branch has taken.
    taken: Arc<AtomicI32>,
    /// Groups open in this branch: while one runs, the branch itself begins no operation.
    open_groups: AtomicU32,
    /// The last position this branch handed out (0 before the first).
    last: AtomicI32,
    /// Operations this branch began (a select branch may begin one).
    begun: AtomicU32,
    /// The select this is a branch of, if it is one.
    pub select: Option<Arc<SelectClaim>>,
}

impl Branch {
    /// The position of index `j` of this branch's own sequence.
    pub(crate) fn position(&self, j: i32) -> Result<i32> {
        let index = j
            .checked_mul(self.width)
            .and_then(|v| v.checked_add(self.base))
            .and_then(|v| v.checked_add(self.index))
            .ok_or_else(too_many_positions)?;
        sequence_position(self.parent.as_deref(), index)
    }

    /// This branch's number in its group.
    pub(crate) fn index(&self) -> usize {
        usize::try_from(self.index).unwrap_or(0)
    }

    /// Positions this branch has taken so far.
    pub(crate) fn taken(&self) -> i32 {
        self.taken.load(Ordering::SeqCst)
    }
}

fn too_many_positions() -> Error {
    Error::BadInputs("a workflow's operation positions overflowed (too deeply nested joins)".into())
}

/// The position of index `j` (from 0) of the sequence `parent` (the workflow's own when `None`).
fn sequence_position(parent: Option<&Branch>, j: i32) -> Result<i32> {
    match parent {
        None => j.checked_add(1).ok_or_else(too_many_positions),
        Some(b) => b.position(j),
    }
}

/// What a `DBOS::select` shares with its branches: its own position, so that a `recv` branch
/// can record the select's outcome in the transaction that consumes its message, and which
/// branch is being recorded as the winner (after which no branch may begin an operation).
pub(crate) struct SelectClaim {
    /// The select's own position.
    pub at: i32,
    pub started_ms: i64,
    /// Each branch's count of positions taken.
    takens: Vec<Arc<AtomicI32>>,
    /// The branch whose outcome is being recorded as the select's: set once, by the first
    /// branch to finish (or a `recv` about to take its message).
    closed_by: Mutex<Option<usize>>,
    /// The span recorded when the select was decided.
    decided_span: AtomicI32,
    /// Whether the branch that decided it records the select itself (a `recv`, in the
    /// transaction that takes its message).
    self_recording: std::sync::atomic::AtomicBool,
    /// The branch whose outcome was recorded with the select's record (a `recv`).
    won: Mutex<Option<usize>>,
    /// Why a branch could not begin its operation (it breaks the select's rules).
    fault: Mutex<Option<String>>,
}

impl SelectClaim {
    /// A claim for a select at position `at` over `width` branches.
    pub(crate) fn new(at: i32, started_ms: i64, width: usize) -> SelectClaim {
        SelectClaim {
            at,
            started_ms,
            takens: (0..width).map(|_| Arc::new(AtomicI32::new(0))).collect(),
            closed_by: Mutex::new(None),
            decided_span: AtomicI32::new(0),
            self_recording: std::sync::atomic::AtomicBool::new(false),
            won: Mutex::new(None),
            fault: Mutex::new(None),
        }
    }

    /// Decides the select for branch `index` unless another branch was first: from now on no
    /// branch begins an operation. Returns the select's record, `{"branch": index, "span": the
    /// most positions any branch took}`, or `None` when another branch decided it.
    pub(crate) fn close_for(&self, index: usize) -> Option<String> {
        let mut closed = lock(&self.closed_by);
        match *closed {
            Some(other) if other != index => return None,
            Some(_) => {}
            None => {
                *closed = Some(index);
                self.decided_span.store(self.span(), Ordering::SeqCst);
            }
        }
        drop(closed);
        let span = self.decided_span();
        Some(serde_json::json!({ "branch": index, "span": span }).to_string())
    }

    /// Like [`SelectClaim::close_for`], for a branch that writes the select's record itself.
    pub(crate) fn close_for_self(&self, index: usize) -> Option<String> {
        let record = self.close_for(index)?;
        self.self_recording.store(true, Ordering::SeqCst);
        Some(record)
    }

    /// Whether the deciding branch writes the select's record itself.
    pub(crate) fn self_recording(&self) -> bool {
        self.self_recording.load(Ordering::SeqCst)
    }

    /// The span recorded when the select was decided.
    pub(crate) fn decided_span(&self) -> i32 {
        self.decided_span.load(Ordering::SeqCst)
    }

    /// The branch that decided the select, if one did.
    pub(crate) fn closed_by(&self) -> Option<usize> {
        *lock(&self.closed_by)
    }

    /// The most positions any branch has taken.
    pub(crate) fn span(&self) -> i32 {
        self.takens
            .iter()
            .map(|t| t.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0)
    }

    /// Notes that branch `index`'s outcome was recorded with the select's record.
    pub(crate) fn won_by(&self, index: usize) {
        *lock(&self.won) = Some(index);
    }

    /// The branch whose outcome was recorded with the select's record, if one was.
    pub(crate) fn winner(&self) -> Option<usize> {
        *lock(&self.won)
    }

    /// Why a branch broke the select's rules, if one did.
    pub(crate) fn fault(&self) -> Option<String> {
        lock(&self.fault).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A group of branches opened at the caller's place in a workflow body.
pub(crate) struct Group {
    ctx: Arc<WfCtx>,
    parent: Option<Arc<Branch>>,
    base: i32,
    width: i32,
    /// The branches' counts of positions taken.
    takens: Mutex<Vec<Arc<AtomicI32>>>,
    /// Set by [`Group::close`]; a group dropped without it closes over what its branches took.
    closed: std::sync::atomic::AtomicBool,
}

impl Group {
    /// Opens a group of `width` branches in the calling workflow body (`ctx`).
    pub(crate) fn open(ctx: &Arc<WfCtx>, width: usize) -> Result<Group> {
        let width = i32::try_from(width.max(1)).map_err(|_| too_many_positions())?;
        let parent = current_branch();
        if let Some(b) = &parent {
            if let Some(claim) = &b.select {
                // A group takes many positions at once, and a select branch may take one
                // operation's (its recv could not record the select atomically otherwise).
                let why = format!(
                    "branch {} of the DBOS::select at position {} opened a DBOS::join or \
                     DBOS::select: a select branch must be one operation; put longer work in a \
                     child workflow",
                    b.index, claim.at
                );
                lock(&claim.fault).get_or_insert_with(|| why.clone());
                return Err(Error::BadInputs(why));
            }
        }
        let open = match &parent {
            Some(b) => b.open_groups.load(Ordering::SeqCst),
            None => ctx.open_groups.load(Ordering::SeqCst),
        };
        if open > 0 {
            return Err(beside_a_group(&ctx.id));
        }
        let base = match &parent {
            Some(b) => {
                b.open_groups.fetch_add(1, Ordering::SeqCst);
                b.taken()
            }
            None => {
                ctx.open_groups.fetch_add(1, Ordering::SeqCst);
                ctx.current_id()
            }
        };
        Ok(Group {
            ctx: ctx.clone(),
            parent,
            base,
            width,
            takens: Mutex::new(Vec::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The numbering of branch `index`, a branch of `select` when given.
    pub(crate) fn branch(&self, index: usize, select: Option<Arc<SelectClaim>>) -> Arc<Branch> {
        let taken: Arc<AtomicI32> = select
            .as_ref()
            .and_then(|c| c.takens.get(index).cloned())
            .unwrap_or_default();
        lock(&self.takens).push(taken.clone());
        Arc::new(Branch {
            parent: self.parent.clone(),
            base: self.base,
            width: self.width,
            index: i32::try_from(index).unwrap_or(i32::MAX),
            taken,
            open_groups: AtomicU32::new(0),
            last: AtomicI32::new(0),
            begun: AtomicU32::new(0),
            select,
        })
    }

    /// Ends the group: its parent sequence has taken `base + span·width` indices.
    pub(crate) fn close(&self, span: i32) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        self.advance(span)
    }

    fn advance(&self, span: i32) -> Result<()> {
        let end = span
            .max(0)
            .checked_mul(self.width)
            .and_then(|v| v.checked_add(self.base))
            .ok_or_else(too_many_positions)?;
        match &self.parent {
            Some(b) => {
                b.taken.fetch_max(end, Ordering::SeqCst);
            }
            None => {
                self.ctx.next.fetch_max(end, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// Runs `fut` as branch `b` of this group: the operations it begins take `b`'s positions.
    pub(crate) fn run<F: std::future::Future>(
        &self,
        b: Arc<Branch>,
        rt: Runtime,
        fut: F,
    ) -> tokio::task::futures::TaskLocalFuture<Current, F> {
        CURRENT.scope(
            Current {
                rt,
                wf: Some(self.ctx.clone()),
                in_step: false,
                step_at: 0,
                branch: Some(b),
            },
            fut,
        )
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.closed.load(Ordering::SeqCst) {
            // Ended early (an error, a drop): later operations still start past every
            // position a branch took, so none is used twice.
            let span = lock(&self.takens)
                .iter()
                .map(|t| t.load(Ordering::SeqCst))
                .max()
                .unwrap_or(0);
            if let Err(e) = self.advance(span) {
                tracing::warn!(workflow_id = %self.ctx.id, "closing a group: {e}");
            }
        }
        match &self.parent {
            Some(b) => b.open_groups.fetch_sub(1, Ordering::SeqCst),
            None => self.ctx.open_groups.fetch_sub(1, Ordering::SeqCst),
        };
    }
}

fn beside_a_group(workflow_id: &str) -> Error {
    Error::BadInputs(format!(
        "workflow {workflow_id}: an operation began beside a running DBOS::join or \
         DBOS::select; make concurrent work a branch of it"
    ))
}

/// Marks the select the caller is a branch of (if any) as broken by `why`: the select ends with
/// that error instead of recording a winner.
pub(crate) fn branch_fault(why: &str) {
    if let Some(claim) = current_branch().and_then(|b| b.select.clone()) {
        lock(&claim.fault).get_or_insert_with(|| why.to_owned());
    }
}

/// Whether the caller is a workflow body under a replay check (which must write nothing).
pub(crate) fn in_replay_check() -> bool {
    CURRENT
        .try_with(|c| c.wf.as_ref().is_some_and(|wf| wf.replay_only))
        .unwrap_or(false)
}

/// Whether the caller runs in a branch of a `DBOS::join` or `DBOS::select`.
pub(crate) fn in_branch() -> bool {
    current_branch().is_some()
}

/// The branch the caller runs in, if any.
fn current_branch() -> Option<Arc<Branch>> {
    CURRENT.try_with(|c| c.branch.clone()).ok().flatten()
}

/// Takes the position of one operation beginning in workflow `ctx`'s body (plus `extra` more
/// for its deadline): in a branch, the branch's next; else the workflow's next. A select
/// branch may begin only one operation, and none once the select is decided.
pub(crate) fn take_positions(ctx: &WfCtx, extra: bool) -> Result<(i32, Option<i32>)> {
    let open = match current_branch() {
        Some(b) => b.open_groups.load(Ordering::SeqCst),
        None => ctx.open_groups.load(Ordering::SeqCst),
    };
    if open > 0 {
        // Its position would collide with the group's: concurrency in a workflow body must go
        // through the group (`tokio::join!` of a DBOS::join and an operation, say).
        return Err(beside_a_group(&ctx.id));
    }
    let Some(b) = current_branch() else {
        let n = ctx.next_id();
        return Ok((n, extra.then(|| ctx.next_id())));
    };
    if let Some(claim) = &b.select {
        if claim.closed_by().is_some() {
            // Too late: another branch won. Not the branch's fault; it is dropped unheard.
            return Err(Error::BadInputs(format!(
                "branch {} of the DBOS::select at position {} began an operation after the \
                 select was decided",
                b.index, claim.at
            )));
        }
        let refusal = if b.begun.fetch_add(1, Ordering::SeqCst) > 0 {
            Some(format!(
                "branch {} of the DBOS::select at position {} began a second durable \
                 operation: a select branch must be one operation (a step, transaction, recv, \
                 sleep, get_event or child workflow result); put longer work in a child workflow",
                b.index, claim.at
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            lock(&claim.fault).get_or_insert_with(|| why.clone());
            return Err(Error::BadInputs(why));
        }
    }
    let take = || -> Result<i32> {
        let j = b.taken.fetch_add(1, Ordering::SeqCst);
        let n = b.position(j)?;
        b.last.store(n, Ordering::SeqCst);
        Ok(n)
    };
    let n = take()?;
    let deadline = if extra { Some(take()?) } else { None };
    Ok((n, deadline))
}

/// The position the next operation beginning in workflow `ctx`'s body would take (without
/// taking it).
pub(crate) fn peek_position(ctx: &WfCtx) -> Result<i32> {
    match current_branch() {
        Some(b) => b.position(b.taken()),
        None => ctx
            .current_id()
            .checked_add(1)
            .ok_or_else(too_many_positions),
    }
}

/// The select the caller is a branch of, with the caller's branch number.
pub(crate) fn current_select() -> Option<(Arc<SelectClaim>, usize)> {
    let b = current_branch()?;
    let claim = b.select.clone()?;
    Some((claim, b.index()))
}

/// Where the caller stands in workflow `wf`, for writes keyed by position that are not
/// operations of their own: in a step body, the step's position; in a workflow body, the last
/// position handed out there.
pub(crate) fn last_position(wf: &WfCtx) -> i32 {
    match CURRENT.try_with(|c| (c.in_step, c.step_at, c.branch.clone())) {
        Ok((true, at, _)) if at > 0 => at,
        Ok((false, _, Some(b))) => b.last.load(Ordering::SeqCst),
        _ => wf.current_id(),
    }
}

/// One execution of one workflow.
pub(crate) struct WfCtx {
    pub id: String,
    next: AtomicI32,
    /// Groups (`DBOS::join`, `DBOS::select`) open in the body itself: while one runs, the body
    /// begins no operation of its own.
    open_groups: AtomicU32,
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
    /// A replay check ([`crate::Runtime::check_replay`]): operations replay their records and
    /// nothing runs or is written; the first operation with no record, or another name, stops it.
    pub replay_only: bool,
    /// Where a replay check stopped.
    replay_stop: Mutex<Option<ReplayStop>>,
    /// Positions whose records were replayed.
    visited: Mutex<std::collections::BTreeSet<i32>>,
    /// A long wait's request to drop the body and park the workflow (see `unload.rs`).
    pub(crate) unload: UnloadSlot,
    /// Operations begun and not yet ended (an [`crate::operation::Operation`] alive): a wait
    /// unloads the workflow only when nothing else is under way.
    in_flight: AtomicU32,
}

/// What brings an unloaded workflow back: what it waits on, or the time `at` (its wait's
/// deadline, or a sleep's end).
#[derive(Debug, Clone)]
pub(crate) struct Wakeup {
    pub on: crate::notify::WaitsOn,
    pub at: Instant,
}

/// An execution's side of unloading: whether its body may be dropped, and the request to do it.
/// See `unload.rs`.
#[derive(Debug, Default)]
pub(crate) struct UnloadSlot {
    /// Set by the execution task that can drop the body (a body run any other way, by a replay
    /// check say, never unloads).
    allowed: std::sync::atomic::AtomicBool,
    /// The wake-up asked for, how many operations the asking wait has under way itself, and
    /// the request's number: the request lives only while the wait that made it waits.
    request: Mutex<Option<(Wakeup, u32, u64)>>,
    /// Numbers the requests.
    asked: std::sync::atomic::AtomicU64,
    requested: Notify,
    /// The execution found other operations under way: the wait goes on in memory.
    refused: Notify,
}

impl UnloadSlot {
    /// Lets waits of this execution unload it (only its execution task can).
    pub(crate) fn allow(&self) {
        self.allowed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether this execution's waits may unload it.
    pub(crate) fn allowed(&self) -> bool {
        self.allowed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Withdraws request `number` when the wait that made it stops waiting (its message came,
/// say): the execution must never drop a body that moved on.
struct Withdraw<'a>(&'a UnloadSlot, u64);

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        let mut request = lock(&self.0.request);
        if matches!(&*request, Some((_, _, n)) if *n == self.1) {
            *request = None;
        }
    }
}

/// Counts a wait that holds no operation (a sleep after its record) as under way while it
/// lives, so that no other wait unloads the workflow beside it.
pub(crate) struct Holding<'a>(&'a WfCtx);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.operation_ends();
    }
}

impl WfCtx {
    /// Counts a wait as under way until the returned guard is dropped.
    pub(crate) fn hold(&self) -> Holding<'_> {
        self.operation_begins();
        Holding(self)
    }

    /// Asks this execution to drop its body and park the workflow until `wakeup` (see
    /// `unload::after_waiting`): resolves only when refused. The request is withdrawn when this
    /// future is dropped.
    pub(crate) async fn ask_unload(&self, wakeup: Wakeup, own: u32) {
        if self.in_flight() != own {
            return;
        }
        let refused = self.unload.refused.notified();
        tokio::pin!(refused);
        refused.as_mut().enable();
        let number = self.unload.asked.fetch_add(1, Ordering::SeqCst);
        *lock(&self.unload.request) = Some((wakeup, own, number));
        let _withdraw = Withdraw(&self.unload, number);
        self.unload.requested.notify_one();
        refused.await;
    }

    /// Resolves with the wake-up once a wait asked to unload this execution while nothing else
    /// was under way in it (a request made beside another operation is refused, and the wait
    /// goes on). Polled beside the body, never inside it: a request present here was made by a
    /// wait that is still waiting.
    pub(crate) async fn unload_requested(&self) -> Wakeup {
        loop {
            let notified = self.unload.requested.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let request = lock(&self.unload.request).take();
            match request {
                Some((wakeup, own, _)) if self.in_flight() == own => return wakeup,
                Some(_) => self.unload.refused.notify_one(),
                None => {}
            }
            notified.await;
        }
    }
}

/// Where a replay check stopped.
#[derive(Debug, Clone)]
pub(crate) enum ReplayStop {
    /// The code began operation `name` at `at`, where nothing is recorded: the end of the
    /// history (unless records follow).
    EndOfRecords { at: i32, name: String },
    /// The code began `current` where `recorded` was recorded.
    Diverged {
        function_id: i32,
        recorded: String,
        current: String,
    },
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
            open_groups: AtomicU32::new(0),
            recorded: Mutex::new(recorded.into_iter().map(|r| (r.function_id, r)).collect()),
            resumed,
            handed_off: std::sync::atomic::AtomicBool::new(false),
            cancelled: CancelFlag::default(),
            deadline_ms,
            replay_only: false,
            replay_stop: Mutex::new(None),
            visited: Mutex::new(Default::default()),
            unload: Default::default(),
            in_flight: AtomicU32::new(0),
        }
    }

    /// An execution that only replays `recorded` (a replay check).
    pub(crate) fn replay_check(id: String, recorded: Vec<StepRow>) -> WfCtx {
        let mut ctx = WfCtx::new(id, recorded, true, None);
        ctx.replay_only = true;
        ctx
    }

    /// Notes where a replay check stopped: the first divergence counts over any end of the
    /// records (in a join, one branch may reach its end before another diverges).
    pub(crate) fn stop_replay(&self, stop: ReplayStop) {
        let mut current = lock(&self.replay_stop);
        match (&*current, &stop) {
            (None, _) | (Some(ReplayStop::EndOfRecords { .. }), ReplayStop::Diverged { .. }) => {
                *current = Some(stop)
            }
            _ => {}
        }
    }

    /// Counts the record at `n` as replayed (or owned by an operation in progress).
    pub(crate) fn mark_visited(&self, n: i32) {
        lock(&self.visited).insert(n);
    }

    /// Where a replay check stopped, if it did.
    pub(crate) fn replay_stopped(&self) -> Option<ReplayStop> {
        lock(&self.replay_stop).clone()
    }

    /// The recorded positions no operation replayed, with their names.
    pub(crate) fn unvisited(&self) -> Vec<(i32, String)> {
        let visited = lock(&self.visited).clone();
        let guard = lock(&self.recorded);
        let mut out: Vec<(i32, String)> = guard
            .iter()
            .filter(|(n, _)| !visited.contains(n))
            .map(|(n, row)| (*n, row.function_name.clone()))
            .collect();
        out.sort();
        out
    }

    /// How many recorded positions were replayed.
    pub(crate) fn visited_count(&self) -> usize {
        lock(&self.visited).len()
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

    /// The name of the operation an earlier execution recorded at `n`, if any.
    pub(crate) fn recorded_name(&self, n: i32) -> Option<String> {
        if !self.resumed {
            return None;
        }
        let guard = match self.recorded.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        guard.get(&n).map(|row| row.function_name.clone())
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
            Some(row) if row.function_name == name => {
                if self.replay_only {
                    lock(&self.visited).insert(n);
                }
                Ok(Some(row.clone()))
            }
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

    /// An operation begins (its `Operation` is made).
    pub(crate) fn operation_begins(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// An operation ends (its `Operation` is dropped).
    pub(crate) fn operation_ends(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// How many operations are under way.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Whether a `DBOS::join` or `DBOS::select` is open in the body itself.
    pub(crate) fn in_group(&self) -> bool {
        self.open_groups.load(Ordering::SeqCst) > 0
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
            ..
        }) => Ok(Position::Workflow(rt, wf)),
        Ok(Current {
            rt,
            wf: Some(wf),
            in_step: true,
            ..
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
        scope(Current::outside(self.clone()), fut).await
    }
}

/// Runs `fut` with `current` as the task's context.
pub(crate) async fn scope<F: std::future::Future>(current: Current, fut: F) -> F::Output {
    CURRENT.scope(current, fut).await
}

/// Runs `fut` as the body of the step at position `at` of `wf`.
pub(crate) async fn in_step<F: std::future::Future>(
    rt: &Runtime,
    wf: &Arc<WfCtx>,
    at: i32,
    fut: F,
) -> F::Output {
    scope(
        Current {
            rt: rt.clone(),
            wf: Some(wf.clone()),
            in_step: true,
            step_at: at,
            branch: None,
        },
        fut,
    )
    .await
}
