//! `SysDb`'s side of `#[transaction]` steps: opening an application transaction and deciding
//! where its checkpoint goes (`operation_outputs` when the databases are shared, else
//! `transaction_outputs`).

use super::{StepWrite, SysDb, Tx, TxOptions};
use crate::error::Result;

impl SysDb {
    /// Opens an application transaction.
    pub(crate) async fn begin_app(&self, opts: &TxOptions) -> Result<Tx> {
        let mut tx = Tx::begin(&self.app, opts).await?;
        tx.on_system_db = self.shared;
        Ok(tx)
    }

    /// Reads a `transaction_outputs` row inside an app transaction (separate-database setup).
    pub(crate) async fn read_transaction_output(
        &self,
        tx: &mut Tx,
        workflow: &str,
        function_id: i32,
    ) -> Result<Option<(String, Option<String>, Option<String>)>> {
        tx.read_transaction_output(&self.app_prefix, workflow, function_id)
            .await
    }

    /// Writes the checkpoint of a transaction step inside its app transaction: the
    /// `operation_outputs` row when the databases are shared, else a `transaction_outputs` row.
    pub(crate) async fn write_checkpoint_in(&self, tx: &mut Tx, s: &StepWrite<'_>) -> Result<()> {
        if self.shared {
            // The app prefix is the system prefix here. A plain INSERT (a duplicate means
            // another execution recorded the step: rule 10's outcome): `ON CONFLICT` would read
            // the index page under SERIALIZABLE and make concurrent steps conflict falsely.
            tx.insert_step_in(&self.app_prefix, s, &self.app_name, &self.executor_id)
                .await
        } else {
            tx.write_transaction_output(&self.app_prefix, s, &self.executor_id)
                .await
        }
    }

    /// Records a transaction's error in `transaction_outputs` (its own app transaction) when the
    /// databases are separate; nothing when shared.
    pub(crate) async fn write_transaction_error(&self, s: &StepWrite<'_>) -> Result<()> {
        if self.shared {
            return Ok(());
        }
        let opts = TxOptions::default();
        let mut tx = Tx::begin(&self.app, &opts).await?;
        tx.write_transaction_output(&self.app_prefix, s, &self.executor_id)
            .await?;
        self.metrics.add_commit();
        tx.commit().await
    }
}
