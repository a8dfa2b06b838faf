//! Queue names. Today the runtime's own queue carries recovered workflows and scheduled ticks
//! to the dispatcher; user-declared queues build on the same columns.

/// The queue DBOS uses for recovered and scheduled workflows, and for workflows a client starts
/// (SYSDB.md).
pub(crate) const INTERNAL_QUEUE: &str = "_dbos_internal_queue";
