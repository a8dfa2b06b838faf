//! `SysDb`'s event operations: setting (with its history and marker rows) and reading
//! workflow events.

use super::backend::{in_write_tx, on_reader};
use super::rows::{bind_step, check_step_row, step_write_error};
use super::{Backend, StepWrite, SysDb};
use crate::error::{Error, Result};
use sqlx::Row;

impl SysDb {
    /// Sets an event (last value wins), its history row and, from a workflow body, the
    /// marker row, atomically; on Postgres in one statement that also notifies listeners (at
    /// commit), and writes the event only when the marker row is new.
    pub(crate) async fn set_event(
        &self,
        workflow: &str,
        function_id: i32,
        key: &str,
        value: &str,
        marker: Option<&StepWrite<'_>>,
    ) -> Result<()> {
        self.metrics.add_commit();
        if let Backend::Postgres(b) = &self.sys {
            // One autocommit statement: the marker, the event, its history and its NOTIFY
            // (one round trip instead of six).
            let _pass = b.gate.enter()?;
            let payload = format!("{workflow}::{key}");
            return match marker {
                Some(s) => {
                    let row = bind_step(&self.q.set_event_marked, s, &self.app_name)
                        .bind(key)
                        .bind(value)
                        .bind(&payload)
                        .fetch_one(&b.pool)
                        .await
                        .map_err(step_write_error(s, "recording a set_event"))?;
                    check_step_row(s, &row, "recording a set_event")
                }
                None => sqlx::query(&self.q.set_event_plain)
                    .bind(workflow)
                    .bind(function_id)
                    .bind(key)
                    .bind(value)
                    .bind(&payload)
                    .execute(&b.pool)
                    .await
                    .map(|_| ())
                    .map_err(Error::db("setting an event")),
            };
        }
        in_write_tx!(&self.sys, "setting an event", |t| {
            sqlx::query(&self.q.set_event)
                .bind(workflow)
                .bind(key)
                .bind(value)
                .execute(&mut *t)
                .await
                .map_err(Error::db("setting an event"))?;
            sqlx::query(&self.q.set_event_history)
                .bind(workflow)
                .bind(function_id)
                .bind(key)
                .bind(value)
                .execute(&mut *t)
                .await
                .map_err(Error::db("setting an event"))?;
            if let Some(s) = marker {
                let row = bind_step(&self.q.record_step, s, &self.app_name)
                    .fetch_one(&mut *t)
                    .await
                    .map_err(step_write_error(s, "recording a set_event"))?;
                check_step_row(s, &row, "recording a set_event")?;
            }
            Ok::<(), Error>(())
        })
    }

    /// Reads an event's current value and its serialization tag.
    pub(crate) async fn get_event(
        &self,
        workflow: &str,
        key: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        on_reader!(&self.sys, |p| {
            let row = sqlx::query(&self.q.get_event)
                .bind(workflow)
                .bind(key)
                .fetch_optional(&mut *p)
                .await
                .map_err(Error::db("reading an event"))?;
            match row {
                Some(r) => Ok(Some((
                    r.try_get(0).map_err(Error::db("reading an event"))?,
                    r.try_get(1).map_err(Error::db("reading an event"))?,
                ))),
                None => Ok(None),
            }
        })
    }
}
