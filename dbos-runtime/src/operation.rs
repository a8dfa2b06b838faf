//! The one funnel every durable operation goes through: steps, transactions, child starts,
//! `get_result`, `send`, `recv`, `sleep`, `set_event` and `get_event`.
//!
//! An operation first asks [`begin`] where it stands. In a workflow body it takes the next
//! position (SYSDB.md: function IDs numbered from 1) and gets either the record an earlier
//! execution wrote there (replay it, the body does not run) or an [`Operation`] to run and then
//! record through. Elsewhere (outside a workflow, inside a step) it is a plain call.
//!
//! What every operation must honour is checked here, once:
//! - determinism: a record under another name at this position is [`Error::NonDeterministic`];
//! - shutdown: no operation begins once shutdown has begun ([`Error::ShuttingDown`]);
//! - cancellation: no operation begins once the workflow is known cancelled
//!   ([`Error::WorkflowCancelled`]), every record write checks the row in the same statement
//!   (so nothing is recorded after a cancel committed, whoever made it), and every wait goes
//!   through [`interruptible`], which ends it at a cancel or a shutdown;
//! - hand-off: when another execution of the workflow recorded a position first, the write
//!   fails with [`Error::ConcurrentExecution`] and the execution is marked handed off, so it
//!   records no outcome of its own whatever the user's code makes of the error.

use crate::context::{self, Position, WfCtx};
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::serialization::{self, PORTABLE_JSON};
use crate::sysdb::{now_ms, StepRow, StepWrite};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The name of a recorded deadline: a `DBOS::sleep`, or the timeout of `recv`/`get_event`.
pub(crate) const SLEEP: &str = "DBOS.sleep";

/// The name of a `DBOS::select`'s record: which branch won.
pub(crate) const SELECT: &str = "DBOS.select";

/// A `tracing` span for a workflow API call (`dbos.send`, `dbos.recv`, ...): DBOS's
/// attribute names, the workflow's ID when called from one (it is then a child of the
/// workflow's span), and one detail field. Costs nothing when no subscriber listens.
macro_rules! op_span {
    ($name:literal, $op:expr, $detail:ident = $value:expr) => {{
        if tracing::enabled!(tracing::Level::INFO) {
            match $crate::context::position() {
                Ok($crate::context::Position::Workflow(_, ctx))
                | Ok($crate::context::Position::InStep(_, ctx)) => tracing::info_span!(
                    $name,
                    operationUUID = %ctx.id,
                    operationType = $name.trim_start_matches("dbos."),
                    operationName = $op,
                    $detail = %$value
                ),
                _ => tracing::info_span!(
                    $name,
                    operationType = $name.trim_start_matches("dbos."),
                    operationName = $op,
                    $detail = %$value
                ),
            }
        } else {
            tracing::Span::none()
        }
    }};
}
pub(crate) use op_span;

/// A deadline far enough away to mean "never" without overflowing a clock.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Where an operation is called from.
pub(crate) enum Site {
    /// In a workflow body: the operation is recorded.
    Workflow(Begun),
    /// Inside a step or transaction body: nested operations are plain calls (some write under
    /// the step's position, like `set_event`).
    InStep(Runtime, Arc<WfCtx>),
    /// Not in a workflow.
    Outside(Runtime),
}

/// An operation at its position in a workflow body.
pub(crate) enum Begun {
    /// An earlier execution recorded it: replay this row.
    Recorded(StepRow),
    /// Not recorded yet: run it and record it through this.
    Run(Operation),
}

/// One durable operation of one workflow execution, between its start and its record.
pub(crate) struct Operation {
    rt: Runtime,
    ctx: Arc<WfCtx>,
    n: i32,
    /// The position of the operation's recorded deadline (`recv`, `get_event`), if it has one.
    deadline_at: Option<i32>,
    name: &'static str,
    started_ms: i64,
    /// A `#[step]` (its body's effects are outside the checkpoint).
    is_step: bool,
}

/// Where the caller stands, for operation `name`; in a workflow body this takes the next position.
pub(crate) fn begin(name: &'static str) -> Result<Site> {
    begin_with(name, false)
}

/// Like [`begin`], for an operation that may wait until a recorded deadline: it takes two
/// positions, its own and the next for the deadline's `DBOS.sleep` (SYSDB.md rules 14 and 16).
pub(crate) fn begin_with_deadline(name: &'static str) -> Result<Site> {
    begin_with(name, true)
}

fn begin_with(name: &'static str, deadline: bool) -> Result<Site> {
    match context::position()? {
        Position::Outside(rt) => Ok(Site::Outside(rt)),
        Position::InStep(rt, ctx) => Ok(Site::InStep(rt, ctx)),
        Position::Workflow(rt, ctx) => {
            if rt.is_stopping() {
                return Err(Error::ShuttingDown);
            }
            if ctx.is_cancelled() {
                return Err(Error::WorkflowCancelled(ctx.id.clone()));
            }
            let (n, deadline_at) = context::take_positions(&ctx, deadline)?;
            if ctx.replay_only {
                // A replay check: replay what is recorded, run nothing, write nothing.
                return match ctx.recorded(n, name) {
                    Ok(Some(row)) => {
                        if let Some(d) = deadline_at {
                            // Its deadline's record belongs to it (it may not exist).
                            ctx.mark_visited(d);
                        }
                        Ok(Site::Workflow(Begun::Recorded(row)))
                    }
                    Ok(None) => {
                        // An operation in progress owns its deadline's record.
                        if let Some(d) = deadline_at {
                            ctx.mark_visited(d);
                        }
                        ctx.stop_replay(context::ReplayStop::EndOfRecords {
                            at: n,
                            name: name.to_owned(),
                        });
                        Err(Error::ShuttingDown)
                    }
                    Err(e) => {
                        if let Error::NonDeterministic {
                            function_id,
                            recorded,
                            current,
                            ..
                        } = &e
                        {
                            ctx.stop_replay(context::ReplayStop::Diverged {
                                function_id: *function_id,
                                recorded: recorded.clone(),
                                current: current.clone(),
                            });
                        }
                        Err(e)
                    }
                };
            }
            if let Some(row) = ctx.recorded(n, name)? {
                return Ok(Site::Workflow(Begun::Recorded(row)));
            }
            ctx.operation_begins();
            Ok(Site::Workflow(Begun::Run(Operation {
                rt,
                ctx,
                n,
                deadline_at,
                name,
                started_ms: now_ms(),
                is_step: false,
            })))
        }
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        self.ctx.operation_ends();
    }
}

impl Operation {
    pub(crate) fn rt(&self) -> &Runtime {
        &self.rt
    }

    pub(crate) fn ctx(&self) -> &Arc<WfCtx> {
        &self.ctx
    }

    /// Marks this operation a `#[step]`, whose body's effects lie outside its checkpoint.
    pub(crate) fn step(mut self) -> Self {
        self.is_step = true;
        self
    }

    /// The operation's recorded name.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// This operation's position (its function ID).
    pub(crate) fn position(&self) -> i32 {
        self.n
    }

    /// The workflow this operation belongs to.
    pub(crate) fn workflow_id(&self) -> &str {
        &self.ctx.id
    }

    /// The record of this operation, to write with its effect (`send`, `set_event`, a
    /// consumed message, a transaction's checkpoint) or alone.
    pub(crate) fn write<'a>(
        &'a self,
        output: Option<&'a str>,
        error: Option<&'a str>,
        serialization: Option<&'a str>,
    ) -> StepWrite<'a> {
        StepWrite {
            workflow_id: &self.ctx.id,
            function_id: self.n,
            function_name: self.name,
            output,
            error,
            child_workflow_id: None,
            serialization,
            started_at_ms: self.started_ms,
            completed_at_ms: now_ms(),
        }
    }

    /// Passes on the result of a write of this operation's record; a position another
    /// execution recorded first marks this execution handed off.
    pub(crate) fn settle<T>(&self, written: Result<T>) -> Result<T> {
        if written.is_ok() {
            self.committed();
        }
        self.settle_quiet(written)
    }

    /// Like [`Operation::settle`], for a write that is not this operation's committed
    /// checkpoint (one inside a transaction not yet committed, or a second record of it).
    pub(crate) fn settle_quiet<T>(&self, written: Result<T>) -> Result<T> {
        match &written {
            Err(Error::ConcurrentExecution { workflow_id, .. }) if *workflow_id == self.ctx.id => {
                self.ctx.hand_off();
            }
            Err(Error::WorkflowCancelled(workflow_id)) if *workflow_id == self.ctx.id => {
                self.ctx.cancel();
            }
            _ => {}
        }
        written
    }

    /// This operation's checkpoint committed: a cut planned here (by [`crate::testing`])
    /// stops every further write, as a crash at this instant would.
    pub(crate) fn committed(&self) {
        if let Some(plan) = self.rt.cut() {
            if plan.committed(&self.ctx.id, self.name, self.is_step) {
                self.rt.cut_down();
            }
        }
    }

    /// A step's body has run and its record is about to be written: a cut planned here stops
    /// every further write (the body's effects happened, its record never will).
    pub(crate) fn before_record(&self) {
        if let Some(plan) = self.rt.cut() {
            if plan.before_step(&self.ctx.id, self.name) {
                self.rt.cut_down();
            }
        }
    }

    /// Waits for `fut` unless the workflow is cancelled or the runtime shuts down first.
    pub(crate) async fn wait<F: std::future::Future>(&self, fut: F) -> Result<F::Output> {
        interruptible(&self.rt, &self.ctx, fut).await
    }

    /// Resolves when a wait of this operation must end: the runtime stops
    /// ([`Error::ShuttingDown`]) or the workflow is cancelled ([`Error::WorkflowCancelled`]).
    /// For waits that write between their naps, which [`Operation::wait`] would cut short.
    pub(crate) async fn interrupted(&self) -> Error {
        match interruptible(&self.rt, &self.ctx, std::future::pending::<()>()).await {
            Err(e) => e,
            Ok(()) => Error::ShuttingDown,
        }
    }

    /// Records this operation alone: `output` or `error` (JSON), and the child it started.
    pub(crate) async fn record(
        &self,
        output: Option<&str>,
        error: Option<&str>,
        child_workflow_id: Option<&str>,
        serialization: Option<&str>,
    ) -> Result<()> {
        let mut row = self.write(output, error, serialization);
        row.child_workflow_id = child_workflow_id;
        self.settle(self.rt.db().record_step(&row).await)
    }

    /// Records a finished body's outcome: its value in `format`, or its error (portable JSON).
    pub(crate) async fn record_outcome<T, E>(
        &self,
        result: &std::result::Result<T, E>,
        format: serialization::Format,
    ) -> Result<()>
    where
        T: serde::Serialize,
        E: crate::error::WorkflowError,
    {
        let (output, error, tag) = match result {
            Ok(v) => (
                Some(serialization::encode(format, v, "an operation's output")?),
                None,
                format.tag(),
            ),
            Err(e) => (
                None,
                Some(serialization::to_json(
                    &e.to_portable(),
                    "an operation's error",
                )?),
                PORTABLE_JSON,
            ),
        };
        self.record(output.as_deref(), error.as_deref(), None, Some(tag))
            .await
    }

    /// Runs `fut` as this operation's body (`kind`: `step` or `transaction`): nested
    /// operations inside it are plain calls. The body runs in a `dbos.<kind>` tracing span
    /// with DBOS's attribute names, a child of its workflow's span.
    pub(crate) async fn run_body<F: std::future::Future>(
        &self,
        kind: &'static str,
        fut: F,
    ) -> F::Output {
        use tracing::Instrument;
        let span = match kind {
            "transaction" => tracing::info_span!(
                "dbos.transaction",
                operationUUID = %self.ctx.id,
                operationType = kind,
                operationName = self.name,
                functionID = self.n
            ),
            _ => tracing::info_span!(
                "dbos.step",
                operationUUID = %self.ctx.id,
                operationType = kind,
                operationName = self.name,
                functionID = self.n
            ),
        };
        context::in_step(&self.rt, &self.ctx, self.n, fut)
            .instrument(span)
            .await
    }

    /// The deadline `d` from now, recorded at this operation's deadline position as a
    /// `DBOS.sleep` (written only when called, so an operation that need not wait costs no
    /// commit); a resumed workflow gets the recorded deadline and waits only for what remains.
    pub(crate) async fn deadline(&self, d: Duration) -> Result<Instant> {
        let Some(m) = self.deadline_at else {
            return Err(Error::BadInputs(format!(
                "operation `{}` has no deadline position",
                self.name
            )));
        };
        if let Some(row) = self.ctx.recorded(m, SLEEP)? {
            return Ok(instant_at(recorded_wake_ms(&row)?));
        }
        self.sleep_at(m).record_wake(d, Stamp::AtWrite).await
    }

    /// The `DBOS.sleep` operation at position `m` of this operation's workflow.
    fn sleep_at(&self, m: i32) -> Operation {
        self.ctx.operation_begins();
        Operation {
            rt: self.rt.clone(),
            ctx: self.ctx.clone(),
            n: m,
            deadline_at: None,
            name: SLEEP,
            started_ms: now_ms(),
            is_step: false,
        }
    }

    /// The `DBOS.sleep` operation at this operation's deadline position when no earlier
    /// execution recorded it: the caller writes it with [`wake`], together with its own
    /// first look (one statement), and calls [`Operation::committed`] on it.
    pub(crate) fn unrecorded_deadline(&self) -> Result<Option<Operation>> {
        let Some(m) = self.deadline_at else {
            return Ok(None);
        };
        if self.ctx.recorded(m, SLEEP)?.is_some() {
            return Ok(None);
        }
        Ok(Some(self.sleep_at(m)))
    }

    /// For a `DBOS.sleep` operation: records the wake-up `now + d` and returns it on the tokio
    /// clock (SYSDB.md rule 18); `stamp` says which time `completed_at_epoch_ms` carries.
    pub(crate) async fn record_wake(&self, d: Duration, stamp: Stamp) -> Result<Instant> {
        let w = wake(d)?;
        let mut row = self.write(Some(&w.output), None, Some(PORTABLE_JSON));
        row.started_at_ms = w.now_ms;
        row.completed_at_ms = match stamp {
            Stamp::AtWake => w.wake_ms,
            Stamp::AtWrite => w.now_ms,
        };
        self.settle(self.rt.db().record_step(&row).await)?;
        Ok(w.at)
    }
}

/// A wake-up `d` from now, as a `DBOS.sleep` row holds it.
pub(crate) struct Wake {
    /// The row's output: the wake-up in epoch seconds (JSON).
    pub(crate) output: String,
    /// The wall clock now (the row's start, and its completion for [`Stamp::AtWrite`]).
    pub(crate) now_ms: i64,
    /// The wake-up on the wall clock.
    pub(crate) wake_ms: i64,
    /// The wake-up on the tokio clock.
    pub(crate) at: Instant,
}

/// The wake-up `d` from now.
pub(crate) fn wake(d: Duration) -> Result<Wake> {
    let start = Instant::now();
    let now = now_ms();
    let wake_ms = now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2));
    let output = serde_json::Number::from_f64(wake_ms as f64 / 1000.0)
        .map(|n| n.to_string())
        .ok_or_else(|| Error::BadInputs("sleep duration out of range".into()))?;
    Ok(Wake {
        output,
        now_ms: now,
        wake_ms,
        at: after(start, d),
    })
}

/// Waits for `fut` in workflow `ctx`'s body: a cancel of the workflow ends the wait with
/// [`Error::WorkflowCancelled`], a shutdown with [`Error::ShuttingDown`].
pub(crate) async fn interruptible<F: std::future::Future>(
    rt: &Runtime,
    ctx: &WfCtx,
    fut: F,
) -> Result<F::Output> {
    tokio::select! {
        out = fut => Ok(out),
        () = rt.stopping() => Err(Error::ShuttingDown),
        () = ctx.cancelled() => Err(Error::WorkflowCancelled(ctx.id.clone())),
    }
}

/// Which time a new `DBOS.sleep` row carries in `completed_at_epoch_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// The wake-up time: a `DBOS::sleep`.
    AtWake,
    /// The time of the write: the timeout of a `recv` or `get_event`.
    AtWrite,
}

/// `start + d`, or "never" when that does not fit the clock.
pub(crate) fn after(start: Instant, d: Duration) -> Instant {
    start.checked_add(d.min(FOREVER)).unwrap_or(start)
}

/// The wake-up a `DBOS.sleep` row holds: epoch seconds as a JSON number.
pub(crate) fn recorded_wake_ms(row: &StepRow) -> Result<i64> {
    let secs: f64 = serialization::from_json(
        row.output.as_deref().unwrap_or("0"),
        row.serialization.as_deref(),
        "a recorded sleep",
    )?;
    Ok((secs * 1000.0).round() as i64)
}

/// The tokio instant of the epoch time `wake_ms` (now, when it has passed).
pub(crate) fn instant_at(wake_ms: i64) -> Instant {
    let left = Duration::from_millis(u64::try_from(wake_ms.saturating_sub(now_ms())).unwrap_or(0));
    after(Instant::now(), left)
}
