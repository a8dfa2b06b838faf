//! `SysDb`'s message operations: `send` and `recv` on the `notifications` table.

use super::backend::{in_write_tx, on_reader};
use super::rows::{bind_step, check_step_row, check_step_written, step_write_error};
use super::{is_fk_violation, now_ms, Backend, StepWrite, SysDb};
use crate::error::{Error, Result};
use crate::serialization::PORTABLE_JSON;
use sqlx::Row;

/// The error of a statement that takes a message and records `step`: a position another
/// execution recorded first is a unique violation, the cancel guard a NOT NULL violation.
fn take_error(step: &StepWrite<'_>, e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            Error::ConcurrentExecution {
                workflow_id: step.workflow_id.to_owned(),
                function_id: step.function_id,
            }
        }
        _ => step_write_error(step, "receiving a message")(e),
    }
}

/// The topic DBOS stores for `send` without a topic.
pub(crate) const NULL_TOPIC: &str = "__null__topic__";

impl SysDb {
    /// A creation time for a message: the clock, but strictly increasing within this process so
    /// that messages from one sender keep their order.
    fn message_time(&self) -> i64 {
        let now = now_ms();
        let mut last = match self.last_message_ms.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *last = (*last + 1).max(now);
        *last
    }

    /// Inserts a message, with the sender's marker row when sent from a workflow, in one transaction.
    pub(crate) async fn send(
        &self,
        message_uuid: &str,
        destination: &str,
        topic: &str,
        message: &str,
        marker: Option<&StepWrite<'_>>,
    ) -> Result<()> {
        let created = self.message_time();
        let map = |e: sqlx::Error| {
            if is_fk_violation(&e) {
                Error::NonExistentWorkflow(destination.to_owned())
            } else {
                Error::db("sending a message")(e)
            }
        };
        self.metrics.add_commit();
        if let Backend::Postgres(b) = &self.sys {
            // One autocommit statement (its trigger notifies the receiver at commit).
            let _pass = b.gate.enter()?;
            return match marker {
                Some(s) => {
                    let row = bind_step(&self.q.send_marked, s, &self.app_name)
                        .bind(message_uuid)
                        .bind(destination)
                        .bind(topic)
                        .bind(message)
                        .bind(created)
                        .fetch_one(&b.pool)
                        .await
                        .map_err(|e| {
                            if is_fk_violation(&e) {
                                Error::NonExistentWorkflow(destination.to_owned())
                            } else {
                                step_write_error(s, "recording a send")(e)
                            }
                        })?;
                    check_step_row(s, &row, "recording a send")
                }
                None => sqlx::query(&self.q.send)
                    .bind(message_uuid)
                    .bind(destination)
                    .bind(topic)
                    .bind(message)
                    .bind(created)
                    .execute(&b.pool)
                    .await
                    .map(|_| ())
                    .map_err(map),
            };
        }
        in_write_tx!(&self.sys, "sending a message", |t| {
            let inserted = sqlx::query(&self.q.send)
                .bind(message_uuid)
                .bind(destination)
                .bind(topic)
                .bind(message)
                .bind(created)
                .execute(&mut *t)
                .await
                .map_err(map);
            match (inserted, marker) {
                (Err(e), _) => Err(e),
                (Ok(_), None) => Ok(()),
                (Ok(_), Some(s)) => {
                    let row = bind_step(&self.q.record_step, s, &self.app_name)
                        .fetch_one(&mut *t)
                        .await
                        .map_err(step_write_error(s, "recording a send"))?;
                    check_step_row(s, &row, "recording a send")
                }
            }
        })
    }

    /// Whether an unconsumed message waits on `topic` for `workflow`.
    pub(crate) async fn has_message(&self, workflow: &str, topic: &str) -> Result<bool> {
        on_reader!(&self.sys, |p| {
            let row = sqlx::query(&self.q.has_message)
                .bind(workflow)
                .bind(topic)
                .fetch_optional(&mut *p)
                .await
                .map_err(Error::db("checking for messages"))?;
            Ok(row.is_some())
        })
    }

    /// Whether [`SysDb::take_message`] can take a message in one statement (Postgres).
    pub(crate) fn takes_messages_in_one_statement(&self) -> bool {
        matches!(self.sys, Backend::Postgres(_))
    }

    /// Whether the database runs in this process (SQLite), so that a read costs no round trip
    /// to a server and a waiter may look once before it arms its wait-up.
    pub(crate) fn reads_are_local(&self) -> bool {
        matches!(self.sys, Backend::Sqlite(_))
    }

    /// Postgres: takes the oldest message on `topic` and records the `recv` step with it in one
    /// autocommit statement (one round trip): a message is delivered exactly once. `Ok(None)`
    /// when no message waits; then nothing is written, except `deadline` (a recv's first look:
    /// its `DBOS.sleep` row), recorded in the same statement. A position another execution
    /// recorded, the recv's (also when no message waits, if the record was there when the
    /// statement began) or the deadline's, is [`Error::ConcurrentExecution`] and leaves the
    /// message unconsumed. On SQLite, use [`SysDb::consume_message`].
    pub(crate) async fn take_message(
        &self,
        step: &StepWrite<'_>,
        topic: &str,
        deadline: Option<&StepWrite<'_>>,
    ) -> Result<Option<(String, Option<String>)>> {
        let Backend::Postgres(b) = &self.sys else {
            return Err(Error::BadInputs(
                "take_message is Postgres only; SQLite consumes in a transaction".into(),
            ));
        };
        let _pass = b.gate.enter()?;
        let sql = match deadline {
            Some(_) => &self.q.take_message_or_deadline,
            None => &self.q.take_message,
        };
        let mut query = sqlx::query(sql)
            .bind(step.workflow_id)
            .bind(step.function_id)
            .bind(step.function_name)
            .bind(step.started_at_ms)
            .bind(step.completed_at_ms)
            .bind(&self.app_name)
            .bind(topic);
        if let Some(d) = deadline {
            query = query
                .bind(d.function_id)
                .bind(d.output)
                .bind(d.completed_at_ms);
        }
        let row = query
            .fetch_optional(&b.pool)
            .await
            .map_err(|e| take_error(step, e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let doing = "receiving a message";
        let kind: String = row.try_get(0).map_err(Error::db(doing))?;
        match (kind.as_str(), deadline) {
            ("taken", _) => {
                self.metrics.add_commit();
                let text: Option<String> = row.try_get(1).map_err(Error::db(doing))?;
                let tag: Option<String> = row.try_get(2).map_err(Error::db(doing))?;
                Ok(Some((text.unwrap_or_else(|| "null".to_owned()), tag)))
            }
            ("deadline", Some(d)) => {
                self.metrics.add_commit();
                check_step_written(d, row.try_get(3).map_err(Error::db(doing))?)?;
                Ok(None)
            }
            // 'elsewhere': another execution recorded the recv; nothing was taken.
            _ => Err(Error::ConcurrentExecution {
                workflow_id: step.workflow_id.to_owned(),
                function_id: step.function_id,
            }),
        }
    }

    /// Consumes the oldest message on `topic` (if any) and records the `recv` step with it (or
    /// with JSON `null`) in one transaction: a message is delivered exactly once. `claim` is the
    /// record of a `DBOS::select` this `recv` wins, written in the same transaction: a select
    /// another branch already won makes the whole transaction fail, so no message is consumed.
    pub(crate) async fn consume_message(
        &self,
        step: &StepWrite<'_>,
        topic: &str,
        claim: Option<&StepWrite<'_>>,
    ) -> Result<Option<(String, Option<String>)>> {
        self.metrics.add_commit();
        in_write_tx!(&self.sys, "receiving a message", |t| {
            let msg = sqlx::query(&self.q.consume)
                .bind(step.workflow_id)
                .bind(topic)
                .fetch_optional(&mut *t)
                .await
                .map_err(Error::db("receiving a message"))?;
            let msg: Option<(String, Option<String>)> = match msg {
                Some(r) => Some((
                    r.try_get(0).map_err(Error::db("receiving a message"))?,
                    r.try_get(1).map_err(Error::db("receiving a message"))?,
                )),
                None => None,
            };
            let mut s = step.clone();
            match &msg {
                Some((text, tag)) => {
                    s.output = Some(text);
                    s.serialization = Some(tag.as_deref().unwrap_or(PORTABLE_JSON));
                }
                None => {
                    s.output = Some("null");
                    s.serialization = Some(PORTABLE_JSON);
                }
            }
            let row = bind_step(&self.q.record_step, &s, &self.app_name)
                .fetch_one(&mut *t)
                .await
                .map_err(step_write_error(&s, "recording a recv"))?;
            check_step_row(&s, &row, "recording a recv")?;
            if let Some(c) = claim {
                let row = bind_step(&self.q.record_step, c, &self.app_name)
                    .fetch_one(&mut *t)
                    .await
                    .map_err(step_write_error(c, "recording a select"))?;
                check_step_row(c, &row, "recording a select")?;
            }
            Ok(msg)
        })
    }
}
