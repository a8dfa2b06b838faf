//! Streams (SYSDB.md rule 17): a workflow appends values to named streams
//! (`DBOS::write_stream`, `DBOS::close_stream`) and anyone reads them in order, live
//! (`DBOS::read_stream`), on DBOS's `streams` table.
//!
//! A write from a workflow body is an operation (`DBOS.writeStream` / `DBOS.closeStream`): the
//! value and the marker row commit together, and a resumed workflow skips it, so no value is
//! written twice. A write from a step is part of the step (as in DBOS Python): a step that is
//! retried or re-run after a crash writes again.
//!
//! Readers wake on the writer's notification (in this process; on Postgres also from other
//! processes, `dbos_streams_channel` sent in the write's transaction; on a SQLite file through
//! the change watcher), and re-check at least once a second, which is how they notice a writer
//! that finished without closing.

use crate::context;
use crate::error::{Error, Result};
use crate::notify::stream_key;
use crate::operation::{self, Begun, Site};
use crate::runtime::Runtime;
use crate::serialization::{self, PORTABLE_JSON};
use crate::sysdb::StreamValue;
use futures_util::Stream;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

const WRITE_STREAM: &str = "DBOS.writeStream";
const CLOSE_STREAM: &str = "DBOS.closeStream";
/// The value that closes a stream: this string, as portable JSON (DBOS's sentinel).
const CLOSED: &str = "__DBOS_STREAM_CLOSED__";
/// How many values one read fetches.
const BATCH: i64 = 500;
/// The longest a reader waits before it looks at the writer's status again.
const RECHECK: Duration = Duration::from_secs(1);

/// Appends `value` to stream `key` of the calling workflow.
pub(crate) async fn write_stream<V: Serialize + ?Sized>(key: &str, value: &V) -> Result<()> {
    let span = operation::op_span!("dbos.writeStream", WRITE_STREAM, key = key);
    let text = serialization::to_json(value, "a stream value")?;
    write(key, &text, WRITE_STREAM).instrument(span).await
}

/// Closes stream `key` of the calling workflow: readers stop after the values before it.
pub(crate) async fn close_stream(key: &str) -> Result<()> {
    let span = operation::op_span!("dbos.closeStream", CLOSE_STREAM, key = key);
    let text = serialization::to_json(CLOSED, "the stream's end")?;
    write(key, &text, CLOSE_STREAM).instrument(span).await
}

async fn write(key: &str, text: &str, name: &'static str) -> Result<()> {
    match operation::begin(name)? {
        Site::Workflow(Begun::Recorded(_)) => Ok(()),
        Site::Workflow(Begun::Run(op)) => {
            let (id, n) = (op.workflow_id(), op.position());
            let marker = op.write(None, None, None);
            op.settle(
                op.rt()
                    .db()
                    .write_stream(id, n, key, text, Some(&marker))
                    .await,
            )?;
            op.rt().notifier().notify(&stream_key(id, key));
            Ok(())
        }
        Site::InStep(rt, ctx) => {
            rt.db()
                .write_stream(&ctx.id, context::last_position(&ctx), key, text, None)
                .await?;
            rt.notifier().notify(&stream_key(&ctx.id, key));
            Ok(())
        }
        Site::Outside(_) => Err(Error::NotInWorkflow(if name == CLOSE_STREAM {
            "DBOS::close_stream"
        } else {
            "DBOS::write_stream"
        })),
    }
}

/// A reader's position in one stream.
struct Reader {
    rt: Runtime,
    workflow_id: String,
    key: String,
    next: i32,
    buffered: VecDeque<StreamValue>,
    done: bool,
}

/// Every value of stream `key` of `workflow_id`, in order: those written so far at once, then
/// each new one as it is written, until the stream is closed or the writer is no longer
/// running (finished, failed, cancelled) and every value it wrote has been read. Reads are not
/// recorded: called from a workflow body, a replay reads the stream again.
///
/// An error (the workflow does not exist, a value is not a `T`, a database error, shutdown)
/// is the last item.
pub(crate) fn read_stream<T: DeserializeOwned + Send + 'static>(
    rt: Runtime,
    workflow_id: &str,
    key: &str,
) -> impl Stream<Item = Result<T>> + Send + Unpin + 'static {
    let reader = Reader {
        rt,
        workflow_id: workflow_id.to_owned(),
        key: key.to_owned(),
        next: 0,
        buffered: VecDeque::new(),
        done: false,
    };
    Box::pin(futures_util::stream::unfold(reader, |mut r| async move {
        if r.done {
            return None;
        }
        match r.next_value().await {
            Ok(Some((text, tag))) => {
                let value = serialization::decode(&text, tag.as_deref(), "a stream value");
                r.done = value.is_err();
                Some((value, r))
            }
            Ok(None) => None,
            Err(e) => {
                r.done = true;
                Some((Err(e), r))
            }
        }
    }))
}

impl Reader {
    /// The next value's text and tag; `None` at the end of the stream.
    async fn next_value(&mut self) -> Result<Option<(String, Option<String>)>> {
        loop {
            if let Some((offset, text, tag)) = self.buffered.pop_front() {
                self.next = offset.checked_add(1).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "stream offset {offset} is the largest there is"
                    ))
                })?;
                if is_closed(&text, tag.as_deref()) {
                    return Ok(None);
                }
                return Ok(Some((text, tag)));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Reads the values from `next` on, waiting for the first; `false` once the stream ended.
    async fn fill(&mut self) -> Result<bool> {
        let notifier = self.rt.notifier();
        let waiter = notifier.waiter(stream_key(&self.workflow_id, &self.key));
        loop {
            let found = waiter
                .until(Instant::now() + RECHECK, || self.read(true))
                .await?;
            if let Some(values) = found {
                self.buffered = values.into();
                return Ok(true);
            }
            // Values past a gap that has lasted a whole re-check are not a write in flight
            // (a fork copies only some rows, concurrent steps interleave): skip the gap.
            if let Some(values) = self.read(false).await? {
                self.buffered = values.into();
                return Ok(true);
            }
            // Nothing for a while: is anyone still writing?
            let Some(row) = self.rt.db().get_workflow(&self.workflow_id).await? else {
                return Err(Error::NonExistentWorkflow(self.workflow_id.clone()));
            };
            if !matches!(row.status.as_str(), "PENDING" | "ENQUEUED" | "DELAYED") {
                // The writer stopped: what it wrote before that is all there is.
                return match self.read(false).await? {
                    Some(values) => {
                        self.buffered = values.into();
                        Ok(true)
                    }
                    None => Ok(false),
                };
            }
        }
    }

    /// The values from `next` on (only the contiguous ones when `contiguous`), or `None`
    /// when there are none yet.
    async fn read(&self, contiguous: bool) -> Result<Option<Vec<StreamValue>>> {
        let mut values = self
            .rt
            .db()
            .read_stream(&self.workflow_id, &self.key, self.next, BATCH)
            .await?;
        if contiguous {
            // Offsets are dense; a gap is usually a write not yet committed: stop before it.
            let mut want = Some(self.next);
            let dense = values
                .iter()
                .take_while(|(offset, _, _)| {
                    let ok = want == Some(*offset);
                    want = offset.checked_add(1);
                    ok
                })
                .count();
            values.truncate(dense);
        }
        Ok((!values.is_empty()).then_some(values))
    }
}

/// Whether a stored value is the stream's end (compared after decoding, whatever its format).
fn is_closed(text: &str, tag: Option<&str>) -> bool {
    matches!(tag, None | Some(PORTABLE_JSON) | Some("rust_serde"))
        && serde_json::from_str::<String>(text).is_ok_and(|s| s == CLOSED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_is_the_sentinel_string_in_json() {
        assert!(is_closed("\"__DBOS_STREAM_CLOSED__\"", Some(PORTABLE_JSON)));
        assert!(is_closed("\"__DBOS_STREAM_CLOSED__\"", None));
        assert!(!is_closed("\"__DBOS_STREAM_CLOSED\"", Some(PORTABLE_JSON)));
        assert!(!is_closed("{\"a\":1}", Some(PORTABLE_JSON)));
        assert!(!is_closed("\"__DBOS_STREAM_CLOSED__\"", Some("py_pickle")));
    }
}
