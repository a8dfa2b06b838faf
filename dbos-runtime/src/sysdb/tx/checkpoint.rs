//! The checkpoint rows a transaction step writes inside its own [`Tx`]: the
//! `operation_outputs` row when the system database is the application database, else a
//! `transaction_outputs` row in the application database (and reading that row back).

use super::Tx;
use crate::error::{Error, Result};
use crate::sysdb::queries::cancel_guard;
use crate::sysdb::rows::step_write_error;
use crate::sysdb::{unique_violation, StepWrite};

impl Tx {
    /// Inserts the `operation_outputs` row of a transaction step inside its transaction (the
    /// system database is the application database), as its last statement: on SQLite the
    /// `COMMIT` rides along, so only `commit` may follow. A duplicate key means another
    /// execution recorded this step first: [`Error::ConcurrentExecution`].
    pub(crate) async fn insert_step_in(
        &mut self,
        prefix: &str,
        s: &StepWrite<'_>,
        app_name: &str,
        executor_id: &str,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {prefix}operation_outputs (workflow_uuid, function_id, function_name, output, error, \
             child_workflow_id, serialization, started_at_epoch_ms, completed_at_epoch_ms, application_name) \
             VALUES ($1, $2, {}, $4, $5, $6, $7, $8, $9, $10)",
            cancel_guard(prefix, executor_id)
        );
        let done = self
            .query(&sql)
            .bind(s.workflow_id)
            .bind(s.function_id)
            .bind(s.function_name)
            .bind(s.output)
            .bind(s.error)
            .bind(s.child_workflow_id)
            .bind(s.serialization)
            .bind(s.started_at_ms)
            .bind(s.completed_at_ms)
            .bind(app_name)
            .run_execute(true)
            .await;
        match done {
            Ok(_) => Ok(()),
            Err(Error::Database { source, .. }) if unique_violation(&source) => {
                Err(Error::ConcurrentExecution {
                    workflow_id: s.workflow_id.to_owned(),
                    function_id: s.function_id,
                })
            }
            Err(Error::Database { source, .. }) => {
                Err(step_write_error(s, "recording a transaction step")(source))
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn read_transaction_output(
        &mut self,
        prefix: &str,
        workflow: &str,
        function_id: i32,
    ) -> Result<Option<(String, Option<String>, Option<String>)>> {
        let sql = format!(
            "SELECT function_name, output, error FROM {prefix}transaction_outputs \
             WHERE workflow_uuid = $1 AND function_id = $2"
        );
        self.query(&sql)
            .bind(workflow)
            .bind(function_id)
            .fetch_optional::<(String, Option<String>, Option<String>)>()
            .await
    }

    /// Inserts a `transaction_outputs` row as the transaction's last statement (on SQLite the
    /// `COMMIT` rides along, so only `commit` may follow); a duplicate key is
    /// [`Error::ConcurrentExecution`].
    pub(crate) async fn write_transaction_output(
        &mut self,
        prefix: &str,
        s: &StepWrite<'_>,
        executor_id: &str,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {prefix}transaction_outputs (workflow_uuid, function_id, output, error, txn_id, \
             txn_snapshot, executor_id, function_name, created_at) VALUES ($1, $2, $3, $4, '', '', $5, $6, $7)"
        );
        match self
            .query(&sql)
            .bind(s.workflow_id)
            .bind(s.function_id)
            .bind(s.output)
            .bind(s.error)
            .bind(executor_id)
            .bind(s.function_name)
            .bind(s.completed_at_ms)
            .run_execute(true)
            .await
        {
            Ok(_) => Ok(()),
            Err(Error::Database { source, .. }) if unique_violation(&source) => {
                Err(Error::ConcurrentExecution {
                    workflow_id: s.workflow_id.to_owned(),
                    function_id: s.function_id,
                })
            }
            Err(e) => Err(e),
        }
    }
}
