//! [`Tx::enqueue`]: the transactional outbox. A workflow enqueued inside an application
//! transaction on the system database commits with the transaction's writes, or not at all.

use super::Tx;
use crate::context::{self, Position};
use crate::error::{Error, Result, WorkflowError};
use crate::queue::Queue;
use crate::sysdb::{unique_violation, NewWorkflow};
use crate::workflow::{validate_id, Fields, WorkflowCall};
use serde::{de::DeserializeOwned, Serialize};

impl Tx {
    /// Enqueues `call` on `queue` as part of this transaction (a transactional outbox): the
    /// workflow exists once the transaction commits, and not at all if it rolls back. Returns
    /// the workflow's ID (retrieve a handle with `DBOS::retrieve_workflow` after the commit).
    ///
    /// Without [`WorkflowCall::with_id`], a transaction of a workflow gives the enqueued
    /// workflow the ID `<workflow>-<operation>-<k>` (its k-th enqueue), so a transaction that
    /// runs again after a crash or a conflict enqueues the same workflow; elsewhere a fresh
    /// UUID.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the application database is not the system database
    /// (the default setup shares one database; with a separate one, enqueue from the workflow
    /// after the transaction instead); [`Error::UnknownQueue`], [`Error::InvalidQueue`],
    /// [`Error::QueueDeduplicated`] and [`Error::WorkflowConflict`] as for
    /// [`crate::Runtime::enqueue`]. On Postgres a failed enqueue aborts the transaction: return
    /// the error.
    pub async fn enqueue<T, E>(&mut self, queue: &Queue, call: WorkflowCall<T, E>) -> Result<String>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        let rt = context::runtime()?;
        if !self.on_system_db {
            return Err(Error::InvalidArgument(
                "Tx::enqueue needs the application database to be the system database (the \
                 default); with a separate system database, enqueue from the workflow instead"
                    .into(),
            ));
        }
        rt.declared(queue)?;
        queue.check_enqueue(call.enqueue_options())?;
        let call = call.erase();
        self.enqueued += 1;
        let id = match (&call.id, context::position()) {
            (Some(id), _) => id.clone(),
            (None, Ok(Position::InStep(_, wf) | Position::Workflow(_, wf))) => {
                format!(
                    "{}-{}-{}",
                    wf.id,
                    context::last_position(&wf),
                    self.enqueued
                )
            }
            (None, _) => uuid::Uuid::new_v4().to_string(),
        };
        validate_id(&id)?;
        let f = Fields::of(&call)?;
        let inputs = call.inputs?;
        let owner = uuid::Uuid::new_v4().to_string();
        let attributes = crate::otel::current_attributes();
        let w = NewWorkflow {
            id: &id,
            name: call.name,
            inputs: &inputs,
            owner_xid: &owner,
            parent_id: None,
            queue: Some(queue.name()),
            timeout_ms: f.timeout_ms,
            deadline_ms: None,
            priority: f.priority,
            dedup_id: call.enqueue.dedup_id.as_deref(),
            partition: call.enqueue.partition.as_deref(),
            delay_ms: f.delay_ms,
            serialization: call.format.get().tag(),
            attributes: attributes.as_deref(),
            debounce: None,
        };
        let (sql, params) = rt.db().enqueue_statement(&w);
        let mut q = self.query(&sql);
        for p in params {
            q = q.bind(p);
        }
        let rows: Vec<Inserted> = match q.fetch_all().await {
            Ok(rows) => rows,
            Err(Error::Database { source, .. }) if unique_violation(&source) => {
                return Err(Error::QueueDeduplicated {
                    queue: queue.name().to_owned(),
                    deduplication_id: w.dedup_id.unwrap_or_default().to_owned(),
                    workflow_id: id,
                })
            }
            Err(e) => return Err(e),
        };
        let row = rows.into_iter().next().unwrap_or_default();
        if row.owner_xid.as_deref() != Some(owner.as_str()) {
            let existing = row.name.unwrap_or_default();
            if existing != call.name {
                return Err(Error::WorkflowConflict {
                    id,
                    existing,
                    requested: call.name.to_owned(),
                });
            }
        }
        Ok(id)
    }
}

/// What the enqueue's upsert returns that it needs: whose row it is.
#[derive(Debug, Default, sqlx::FromRow)]
struct Inserted {
    name: Option<String>,
    owner_xid: Option<String>,
}
