//! `DBOS::join` and `DBOS::select`: durable concurrency inside a workflow body.
//!
//! Operations that run at once would take positions in the order they happen to begin, which a
//! resumed workflow need not repeat. Here every branch numbers its operations in a sequence of
//! its own ([`context::Branch`]), so a branch's `k`-th operation has the same position whatever
//! order the branches run or finish in, in the first execution and in every resumed one.
//!
//! A join waits for all its branches and records nothing of its own. A select records which
//! branch won (a `DBOS.select` operation at its own position): a resumed workflow runs only that
//! branch again, which replays its recorded outcome, so it takes the same branch whatever has
//! happened since. A `recv` branch writes that record in the transaction that takes its message,
//! so a message is never taken by a branch that lost.

use crate::context::{self, Group, Position, SelectClaim};
use crate::error::{Error, Result};
use crate::operation::{self, Begun, Site, SELECT};
use crate::runtime::Runtime;
use crate::serialization::{self, PORTABLE_JSON};
use crate::sysdb::StepRow;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A branch of a join or select, boxed so that branches of different types can be grouped.
pub(crate) type BranchFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The record of a select: which branch won, and how many positions its branches took.
#[derive(serde::Serialize, serde::Deserialize)]
struct Decided {
    branch: usize,
    span: i32,
}

/// Runs all `branches` at once and gives their outputs in order. In a workflow body each
/// branch numbers its operations on its own; elsewhere this is a plain join.
pub(crate) async fn join<'a, T: Send + 'a>(branches: Vec<BranchFuture<'a, T>>) -> Result<Vec<T>> {
    let (rt, ctx) = match context::position() {
        Ok(Position::Workflow(rt, ctx)) => (rt, ctx),
        Ok(_) | Err(Error::NotLaunched) => {
            return Ok(futures_util::future::join_all(branches).await)
        }
        Err(e) => return Err(e),
    };
    let group = Group::open(&ctx, branches.len())?;
    let numbered: Vec<_> = (0..branches.len()).map(|i| group.branch(i, None)).collect();
    let mut running: FuturesUnordered<_> = branches
        .into_iter()
        .zip(numbered.iter().cloned())
        .enumerate()
        .map(|(i, (fut, b))| {
            let fut = group.run(b, rt.clone(), fut);
            async move { (i, fut.await) }
        })
        .collect();
    let mut outputs: Vec<Option<T>> = numbered.iter().map(|_| None).collect();
    while let Some((i, v)) = running.next().await {
        outputs[i] = Some(v);
    }
    group.close(numbered.iter().map(|b| b.taken()).max().unwrap_or(0))?;
    Ok(outputs.into_iter().flatten().collect())
}

/// Runs `branches` at once until the first finishes, and gives its number and output; the
/// others are dropped. In a workflow body the winner is recorded, so a resumed workflow takes
/// the same branch; elsewhere this is a plain select.
pub(crate) async fn select<'a, T: Send + 'a>(
    branches: Vec<BranchFuture<'a, T>>,
) -> Result<(usize, T)> {
    if branches.is_empty() {
        return Err(Error::BadInputs(
            "DBOS::select needs at least one branch".into(),
        ));
    }
    let rt = match context::position() {
        Ok(Position::Workflow(rt, _)) => rt,
        Ok(_) | Err(Error::NotLaunched) => return Ok(first(branches).await),
        Err(e) => return Err(e),
    };
    let op = match operation::begin(SELECT)? {
        Site::Workflow(Begun::Run(op)) => op,
        Site::Workflow(Begun::Recorded(row)) => return replay(&rt, &row, branches).await,
        Site::Outside(_) | Site::InStep(..) => return Ok(first(branches).await),
    };
    let ctx = op.ctx().clone();
    let group = Group::open(&ctx, branches.len())?;
    let claim = Arc::new(SelectClaim::new(
        op.position(),
        crate::sysdb::now_ms(),
        branches.len(),
    ));
    let mut running: FuturesUnordered<_> = branches
        .into_iter()
        .enumerate()
        .map(|(i, fut)| {
            let fut = group.run(group.branch(i, Some(claim.clone())), rt.clone(), fut);
            async move { (i, fut.await) }
        })
        .collect();
    loop {
        let Some((i, v)) = running.next().await else {
            // Every branch finished without deciding (each one lost to a decided branch).
            return Err(Error::BadInputs(format!(
                "the DBOS::select at position {} ended with no branch deciding it",
                claim.at
            )));
        };
        if claim.winner() == Some(i) {
            // A recv took its message and recorded the select with it: that is the outcome.
            drop(running);
            group.close(claim.decided_span())?;
            return Ok((i, v));
        }
        if let Some(why) = claim.fault() {
            return Err(Error::BadInputs(why));
        }
        // A branch that ended because the workflow is stopping or cancelled, or was taken over
        // by another execution, does not win: nothing is recorded.
        if rt.is_stopping() {
            return Err(Error::ShuttingDown);
        }
        if ctx.is_cancelled() {
            return Err(Error::WorkflowCancelled(ctx.id.clone()));
        }
        if ctx.handed_off() {
            return Err(Error::ConcurrentExecution {
                workflow_id: ctx.id.clone(),
                function_id: claim.at,
            });
        }
        if claim.closed_by() == Some(i) && claim.self_recording() {
            // A recv that began to take its message failed before its transaction committed:
            // nothing was taken and nothing decided. Its error goes to the body unrecorded (a
            // resumed workflow runs the select again).
            drop(running);
            group.close(claim.decided_span())?;
            return Ok((i, v));
        }
        // Another branch (a recv taking its message) is deciding it: wait for that one.
        let Some(record) = claim.close_for(i) else {
            continue;
        };
        op.record(Some(&record), None, None, Some(PORTABLE_JSON))
            .await?;
        drop(running);
        group.close(claim.decided_span())?;
        return Ok((i, v));
    }
}

/// A resumed select: runs only the recorded winner (which replays its own record).
async fn replay<'a, T: Send + 'a>(
    rt: &Runtime,
    row: &StepRow,
    branches: Vec<BranchFuture<'a, T>>,
) -> Result<(usize, T)> {
    let decided: Decided = serialization::from_json(
        row.output.as_deref().unwrap_or("null"),
        row.serialization.as_deref(),
        "a recorded select",
    )?;
    let ctx = match context::position()? {
        Position::Workflow(_, ctx) => ctx,
        Position::InStep(..) | Position::Outside(_) => {
            return Err(Error::NotInWorkflow("replaying DBOS::select"))
        }
    };
    let width = branches.len();
    let Some(winner) = branches.into_iter().nth(decided.branch) else {
        return Err(Error::NonDeterministic {
            workflow_id: ctx.id.clone(),
            function_id: row.function_id,
            recorded: format!("{SELECT} won by branch {}", decided.branch),
            current: format!("{SELECT} of {width} branches"),
        });
    };
    let group = Group::open(&ctx, width)?;
    if ctx.replay_only {
        // A replay check: the losing branches' rows (a deadline, say) are accounted for.
        for i in (0..width).filter(|i| *i != decided.branch) {
            let b = group.branch(i, None);
            for k in 0..decided.span {
                ctx.mark_visited(b.position(k)?);
            }
        }
    }
    let v = group
        .run(group.branch(decided.branch, None), rt.clone(), winner)
        .await;
    group.close(decided.span)?;
    Ok((decided.branch, v))
}

/// The first of `branches` to finish, outside a workflow body.
async fn first<T>(branches: Vec<BranchFuture<'_, T>>) -> (usize, T) {
    let mut running: FuturesUnordered<_> = branches
        .into_iter()
        .enumerate()
        .map(|(i, fut)| async move { (i, fut.await) })
        .collect();
    match running.next().await {
        Some(done) => done,
        // Never: callers pass at least one branch.
        None => std::future::pending().await,
    }
}

/// Two outputs of different types, as one.
enum Two<A, B> {
    A(A),
    B(B),
}

/// Boxes `branches` for [`join`] or [`select`].
pub(crate) fn boxed<'a, I, F>(branches: I) -> Vec<BranchFuture<'a, F::Output>>
where
    I: IntoIterator<Item = F>,
    F: Future + Send + 'a,
    F::Output: Send + 'a,
{
    branches
        .into_iter()
        .map(|f| Box::pin(f) as BranchFuture<'a, F::Output>)
        .collect()
}

/// Two branches of different types as branches of one type.
fn two<'a, A, B>(a: A, b: B) -> Vec<BranchFuture<'a, Two<A::Output, B::Output>>>
where
    A: Future + Send + 'a,
    B: Future + Send + 'a,
    A::Output: Send + 'a,
    B::Output: Send + 'a,
{
    vec![
        Box::pin(async move { Two::A(a.await) }),
        Box::pin(async move { Two::B(b.await) }),
    ]
}

/// [`join`] of two branches of different types.
pub(crate) async fn join2<'a, A, B>(a: A, b: B) -> Result<(A::Output, B::Output)>
where
    A: Future + Send + 'a,
    B: Future + Send + 'a,
    A::Output: Send + 'a,
    B::Output: Send + 'a,
{
    let mut outputs = join(two(a, b)).await?.into_iter();
    match (outputs.next(), outputs.next()) {
        (Some(Two::A(a)), Some(Two::B(b))) => Ok((a, b)),
        _ => Err(Error::BadInputs("DBOS::join lost a branch's output".into())),
    }
}

/// [`select`] of two branches of different types.
pub(crate) async fn select2<'a, A, B>(
    a: A,
    b: B,
) -> Result<futures_util::future::Either<A::Output, B::Output>>
where
    A: Future + Send + 'a,
    B: Future + Send + 'a,
    A::Output: Send + 'a,
    B::Output: Send + 'a,
{
    use futures_util::future::Either;
    Ok(match select(two(a, b)).await?.1 {
        Two::A(a) => Either::Left(a),
        Two::B(b) => Either::Right(b),
    })
}
