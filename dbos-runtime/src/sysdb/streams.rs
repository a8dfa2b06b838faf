//! `SysDb`'s stream operations (SYSDB.md rule 17): appending a value at the next offset of a
//! workflow's stream key, with the writer's marker row, and reading values in offset order.

use super::backend::{in_write_tx, on_reader, on_writer};
use super::rows::{bind_step, check_step_row, step_write_error};
use super::{is_fk_violation, unique_violation, Backend, StepWrite, SysDb};
use crate::error::{Error, Result};
use crate::serialization::PORTABLE_JSON;
use sqlx::Row;
use std::time::Duration;

/// One stored stream value: its offset, text and serialization tag.
pub(crate) type StreamValue = (i32, String, Option<String>);

/// Attempts at an append that lost the race for an offset to a concurrent writer of the same
/// key (two steps of one workflow running at once).
const OFFSET_RETRIES: u32 = 50;

impl SysDb {
    /// Appends `value` (JSON) to stream `key` of `workflow` at the next offset, under position
    /// `function_id`, with the marker row of a write from a workflow body, in one transaction.
    /// On Postgres the readers of other processes are told in the same transaction.
    pub(crate) async fn write_stream(
        &self,
        workflow: &str,
        function_id: i32,
        key: &str,
        value: &str,
        marker: Option<&StepWrite<'_>>,
    ) -> Result<()> {
        let map = |e: sqlx::Error| {
            if is_fk_violation(&e) {
                Error::NonExistentWorkflow(workflow.to_owned())
            } else {
                Error::db("writing to a stream")(e)
            }
        };
        let payload = format!("{workflow}::{key}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.metrics.add_commit();
            let written = match (&self.sys, marker) {
                // Postgres: the marker, the append and its NOTIFY in one autocommit statement;
                // the append happens only when the marker row is new (another execution's
                // marker writes nothing), and an offset race fails the whole statement.
                (Backend::Postgres(_), Some(s)) => {
                    // (The bodies are async blocks so that `?` ends the body, not this
                    // function: an offset race must reach the retry below.)
                    on_writer!(&self.sys, |t| async {
                        let row = bind_step(&self.q.write_stream_marked, s, &self.app_name)
                            .bind(key)
                            .bind(value)
                            .bind(PORTABLE_JSON)
                            .bind(&payload)
                            .fetch_one(&mut *t)
                            .await
                            .map_err(|e| {
                                if unique_violation(&e) || is_fk_violation(&e) {
                                    map(e)
                                } else {
                                    step_write_error(s, "recording a stream write")(e)
                                }
                            })?;
                        check_step_row(s, &row, "recording a stream write")
                    }
                    .await)
                }
                // Postgres, from a step: one autocommit statement.
                (Backend::Postgres(_), None) => on_writer!(&self.sys, |p| {
                    sqlx::query(&self.q.write_stream)
                        .bind(workflow)
                        .bind(function_id)
                        .bind(key)
                        .bind(value)
                        .bind(PORTABLE_JSON)
                        .bind(&payload)
                        .execute(&mut *p)
                        .await
                        .map(drop)
                        .map_err(map)
                }),
                (Backend::Sqlite(_), marker) => {
                    in_write_tx!(&self.sys, "writing to a stream", |t| async {
                        sqlx::query(&self.q.write_stream)
                            .bind(workflow)
                            .bind(function_id)
                            .bind(key)
                            .bind(value)
                            .bind(PORTABLE_JSON)
                            .execute(&mut *t)
                            .await
                            .map_err(map)?;
                        match marker {
                            None => Ok(()),
                            Some(s) => {
                                let row = bind_step(&self.q.record_step, s, &self.app_name)
                                    .fetch_one(&mut *t)
                                    .await
                                    .map_err(step_write_error(s, "recording a stream write"))?;
                                check_step_row(s, &row, "recording a stream write")
                            }
                        }
                    }
                    .await)
                }
            };
            match written {
                Err(Error::Database { source, .. })
                    if unique_violation(&source) && attempt < OFFSET_RETRIES =>
                {
                    tracing::debug!(workflow_id = %workflow, key, "stream offset taken by a concurrent writer; retrying");
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    /// Up to `limit` values of stream `key` of `workflow` from offset `from` on, in order.
    pub(crate) async fn read_stream(
        &self,
        workflow: &str,
        key: &str,
        from: i32,
        limit: i64,
    ) -> Result<Vec<StreamValue>> {
        on_reader!(&self.sys, |p| {
            let rows = sqlx::query(&self.q.read_stream)
                .bind(workflow)
                .bind(key)
                .bind(from)
                .bind(limit)
                .fetch_all(&mut *p)
                .await
                .map_err(Error::db("reading a stream"))?;
            rows.iter()
                .map(|r| {
                    let e = || Error::db("reading a stream");
                    Ok((
                        r.try_get(0).map_err(e())?,
                        r.try_get(1).map_err(e())?,
                        r.try_get(2).map_err(e())?,
                    ))
                })
                .collect()
        })
    }
}
