//! One error type for every framework failure, and the portable form of user errors.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A result whose error is the framework's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the framework itself can fail with.
///
/// User errors travel through workflows in their own types (see [`WorkflowError`]); this enum
/// covers the runtime: configuration, the database, determinism and idempotency checks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable (a malformed URL, an empty app name...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database could not be reached or refused a statement.
    #[error("database error while {doing}")]
    Database {
        /// What the runtime was doing.
        doing: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The system database was migrated by another SDK to a version we cannot finish.
    #[error("system database is at DBOS migration {found}; {why}")]
    Migration {
        /// The version found in `dbos_migrations`.
        found: i64,
        /// What to do about it.
        why: &'static str,
    },
    /// `DBOS::launch` has not been called (or `shutdown` was).
    #[error("the DBOS runtime is not launched; call DBOS::launch first")]
    NotLaunched,
    /// `DBOS::launch` was called twice.
    #[error("the DBOS runtime is already launched")]
    AlreadyLaunched,
    /// Two functions registered under one name.
    #[error("two workflows are registered as `{name}`: at {first} and at {second}; give one a `name = \"...\"`")]
    DuplicateName {
        /// The clashing name.
        name: String,
        /// Where the first one is defined.
        first: String,
        /// Where the second one is defined.
        second: String,
    },
    /// Recovery or a scheduler found a workflow name this binary does not contain.
    #[error("workflow `{name}` is not registered in this binary")]
    NotRegistered {
        /// The unknown name.
        name: String,
    },
    /// A workflow ID was empty or only whitespace.
    #[error("invalid workflow id {id:?}: {why}")]
    InvalidWorkflowId {
        /// The rejected ID.
        id: String,
        /// Why it was rejected.
        why: &'static str,
    },
    /// The ID is taken by a workflow of another function.
    #[error("workflow id `{id}` belongs to `{existing}`, not to `{requested}`")]
    WorkflowConflict {
        /// The contested ID.
        id: String,
        /// The function that owns it.
        existing: String,
        /// The function that asked for it.
        requested: String,
    },
    /// A resumed workflow took a different path than its recorded history.
    #[error("workflow `{workflow_id}` is not deterministic: operation {function_id} was recorded as `{recorded}` but the code now runs `{current}`")]
    NonDeterministic {
        /// The workflow.
        workflow_id: String,
        /// The operation position.
        function_id: i32,
        /// The name in the record.
        recorded: String,
        /// The name the code reached.
        current: String,
    },
    /// Another execution of this workflow recorded the same operation first.
    #[error("workflow `{workflow_id}` operation {function_id} was recorded by another execution")]
    ConcurrentExecution {
        /// The workflow.
        workflow_id: String,
        /// The operation position.
        function_id: i32,
    },
    /// `send` to, or `retrieve_workflow` of, an ID with no workflow.
    #[error("workflow `{0}` does not exist")]
    NonExistentWorkflow(String),
    /// The workflow was cancelled.
    #[error("workflow `{0}` was cancelled")]
    WorkflowCancelled(String),
    /// The workflow was cancelled when its deadline passed (see
    /// [`WorkflowCall::with_timeout`](crate::WorkflowCall::with_timeout)).
    #[error("workflow `{0}` timed out: it was cancelled at its deadline")]
    WorkflowTimedOut(String),
    /// The workflow exceeded its recovery attempts and was set aside.
    #[error("workflow `{0}` exceeded its maximum recovery attempts")]
    MaxRecoveryAttemptsExceeded(String),
    /// A workflow-only API (recv, set_event, workflow_id, sleep) was called elsewhere.
    #[error("`{0}` can only be called inside a workflow")]
    NotInWorkflow(&'static str),
    /// A workflow-only API was called inside a step, where it would not be recorded.
    #[error("`{0}` cannot be called inside a step")]
    InStep(&'static str),
    /// A value could not be turned into or read back from its stored JSON.
    #[error("cannot {doing}")]
    Serialization {
        /// What was being (de)serialized.
        doing: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be turned into or read back from its stored bincode (a function
    /// declared `serialization = "bincode"`).
    #[error("cannot {doing}: {message}")]
    BincodeSerialization {
        /// What was being (de)serialized.
        doing: String,
        /// bincode's (or base64's) message.
        message: String,
    },
    /// A row was written by a serializer we cannot read.
    #[error("unsupported serialization `{0}`")]
    UnsupportedSerialization(String),
    /// Stored inputs did not fit the workflow's parameters.
    #[error("stored inputs do not match the workflow's parameters: {0}")]
    BadInputs(String),
    /// The workflow or step body panicked.
    #[error("panicked: {0}")]
    Panic(String),
    /// The commit of a batch of SQLite writes failed; none of its operations took effect.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// A management call got an argument it cannot act on (a fork step past the end, an
    /// unknown status name, a taken workflow ID for a fork).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A queue's declaration is unusable (a zero limit, a reserved or empty name, two
    /// declarations of one name with different settings), or an enqueue does not fit the
    /// queue (a priority on a queue without priorities, a partition key missing or unexpected).
    #[error("queue `{queue}`: {why}")]
    InvalidQueue {
        /// The queue's name.
        queue: String,
        /// What is wrong.
        why: String,
    },
    /// An enqueue onto a queue this binary does not declare with `#[queue]`.
    #[error("queue `{0}` is not declared in this binary; declare it with `#[queue] static NAME: Queue = Queue::new(\"{0}\");`")]
    UnknownQueue(String),
    /// An enqueue with a deduplication ID while a workflow with that ID is still enqueued or
    /// running on the queue.
    #[error("workflow `{workflow_id}` was not enqueued: queue `{queue}` already holds an active workflow with deduplication ID `{deduplication_id}`")]
    QueueDeduplicated {
        /// The queue.
        queue: String,
        /// The deduplication ID in use.
        deduplication_id: String,
        /// The ID of the workflow that was not enqueued.
        workflow_id: String,
    },
    /// The runtime is shutting down: the operation did not start, or a wait was cut short.
    /// The workflow stays `PENDING` and resumes at the next launch.
    #[error("the DBOS runtime is shutting down")]
    ShuttingDown,
    /// A recorded error, replayed: the original was a framework error with this name and message.
    #[error("{0}")]
    Recorded(PortableError),
}

impl Error {
    pub(crate) fn db(doing: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |source| match source {
            // A closed pool refuses new work only once shutdown has begun.
            sqlx::Error::PoolClosed => Error::ShuttingDown,
            source => Error::Database { doing, source },
        }
    }

    pub(crate) fn ser(doing: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Error {
        move |source| Error::Serialization {
            doing: doing.into(),
            source,
        }
    }

    /// The variant's name, as recorded in the portable `name` field.
    pub fn kind(&self) -> &str {
        match self {
            Error::Config(_) => "Config",
            Error::Database { .. } => "Database",
            Error::Migration { .. } => "Migration",
            Error::NotLaunched => "NotLaunched",
            Error::AlreadyLaunched => "AlreadyLaunched",
            Error::DuplicateName { .. } => "DuplicateName",
            Error::NotRegistered { .. } => "NotRegistered",
            Error::InvalidWorkflowId { .. } => "InvalidWorkflowId",
            Error::WorkflowConflict { .. } => "WorkflowConflict",
            Error::NonDeterministic { .. } => "NonDeterministic",
            Error::ConcurrentExecution { .. } => "ConcurrentExecution",
            Error::NonExistentWorkflow(_) => "NonExistentWorkflow",
            Error::WorkflowCancelled(_) => "WorkflowCancelled",
            Error::WorkflowTimedOut(_) => "WorkflowTimedOut",
            Error::MaxRecoveryAttemptsExceeded(_) => "MaxRecoveryAttemptsExceeded",
            Error::NotInWorkflow(_) => "NotInWorkflow",
            Error::InStep(_) => "InStep",
            Error::Serialization { .. } => "Serialization",
            Error::BincodeSerialization { .. } => "BincodeSerialization",
            Error::UnsupportedSerialization(_) => "UnsupportedSerialization",
            Error::BadInputs(_) => "BadInputs",
            Error::Panic(_) => "Panic",
            Error::CommitFailed(_) => "CommitFailed",
            Error::InvalidArgument(_) => "InvalidArgument",
            Error::InvalidQueue { .. } => "InvalidQueue",
            Error::UnknownQueue(_) => "UnknownQueue",
            Error::QueueDeduplicated { .. } => "QueueDeduplicated",
            Error::ShuttingDown => "ShuttingDown",
            Error::Recorded(p) => &p.name,
        }
    }

    /// Whether a retry of the same database work may succeed (serialization failure,
    /// deadlock, SQLite busy/locked).
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Database { source, .. } => is_conflict(source),
            _ => false,
        }
    }
}

/// Whether a driver error is worth retrying: serialization failure, deadlock, SQLite busy/locked.
pub(crate) fn is_conflict(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => match code.as_ref() {
                "40001" | "40P01" => true,
                other => other
                    .parse::<i32>()
                    .map(|c| matches!(c & 0xff, 5 | 6))
                    .unwrap_or(false),
            },
            None => false,
        },
        _ => false,
    }
}

/// An error as stored in the system database: DBOS's portable JSON error object.
///
/// Every DBOS SDK reads this shape, so errors recorded by Rust workflows show up in DBOS tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortableError {
    /// The error kind (type or variant name).
    #[serde(default)]
    pub name: String,
    /// The error's `Display` text.
    #[serde(default)]
    pub message: String,
    /// An optional code (integer or string).
    #[serde(default)]
    pub code: serde_json::Value,
    /// Optional structured data: for serde error types, the error itself.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl fmt::Display for PortableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.name, self.message)
        }
    }
}

impl std::error::Error for PortableError {}

/// An error type a workflow, step or transaction may return: it is recorded when it happens and
/// rebuilt when the operation is replayed.
///
/// Implemented for [`Error`] and, through a blanket impl, for every error type that is
/// `Serialize + DeserializeOwned + Display + From<dbos_runtime::Error>`: its JSON goes in the
/// portable error's `data` and comes back unchanged on replay.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be recorded as a workflow error",
    label = "the error type of a durable function must be `dbos_runtime::Error` or a serde type with `Display` and `From<dbos_runtime::Error>`",
    note = "errors are stored in the system database and rebuilt on replay, so they must round-trip through JSON"
)]
pub trait WorkflowError: From<Error> + Send + 'static {
    /// The stored form of this error.
    fn to_portable(&self) -> PortableError;
    /// Rebuilds the error from its stored form.
    fn from_portable(recorded: PortableError) -> Self;
}

impl WorkflowError for Error {
    fn to_portable(&self) -> PortableError {
        match self {
            Error::Recorded(p) => p.clone(),
            other => PortableError {
                name: other.kind().to_owned(),
                // The stored message carries the whole chain: the row outlives this process's
                // logs, and `Display` names only the outermost layer (the cause is `source`).
                message: with_causes(other),
                code: serde_json::Value::Null,
                data: serde_json::Value::Null,
            },
        }
    }

    fn from_portable(recorded: PortableError) -> Self {
        Error::Recorded(recorded)
    }
}

/// `err`'s message followed by each of its causes, `: `-separated.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
}

impl<E> WorkflowError for E
where
    E: Serialize + serde::de::DeserializeOwned + fmt::Display + From<Error> + Send + 'static,
{
    fn to_portable(&self) -> PortableError {
        let data = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let name = match &data {
            // An externally tagged enum variant: {"Variant": ...} or "Variant".
            serde_json::Value::Object(map) if map.len() == 1 => map.keys().next().cloned(),
            serde_json::Value::String(s) => Some(s.clone()),
            _ => None,
        }
        .unwrap_or_else(|| short_type_name::<E>().to_owned());
        PortableError {
            name,
            message: self.to_string(),
            code: serde_json::Value::Null,
            data,
        }
    }

    fn from_portable(recorded: PortableError) -> Self {
        match serde_json::from_value::<E>(recorded.data.clone()) {
            Ok(e) => e,
            Err(_) => E::from(Error::Recorded(recorded)),
        }
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_cause_once_and_the_stored_message_keeps_the_chain() {
        let cause = serde_json::from_str::<u32>("\"x\"").expect_err("not a number");
        let err = Error::ser("decode a step's output")(cause);
        let shown = err.to_string();
        let chain = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(shown, "cannot decode a step's output");
        let chain = chain.expect("the serde error is the source");
        assert!(
            !shown.contains(&chain),
            "Display repeats its source: {shown}"
        );
        let stored = err.to_portable();
        assert_eq!(stored.name, "Serialization");
        assert_eq!(stored.message, format!("{shown}: {chain}"));
    }
}
