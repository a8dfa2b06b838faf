//! Durable execution for Rust in the style of DBOS Transact.
//!
//! Annotate ordinary `async fn`s with [`workflow`], [`step`] and [`transaction`]; the runtime
//! checkpoints every operation in a database (SQLite by default, Postgres in production), so a
//! program killed at any instant resumes where it stopped and no step's recorded effect
//! happens twice. The system tables are DBOS's own (schema version 108), so DBOS tools can read
//! them.
//!
//! ```
//! use dbos_runtime::prelude::*;
//!
//! #[step]
//! async fn charge(order: u64) -> Result<String, Error> { Ok(format!("charged {order}")) }
//!
//! #[workflow]
//! async fn checkout(order: u64) -> Result<String, Error> {
//!     let receipt = charge(order).await?;
//!     DBOS::set_event("receipt", &receipt).await?;
//!     Ok(receipt)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! // An application reads its database from the environment: `DbosConfig::from_env("shop")`.
//! DBOS::launch(DbosConfig::new("shop").with_database_url("sqlite::memory:")).await?;
//! let receipt = checkout(7).with_id("order-7").await?;
//! assert_eq!(receipt, "charged 7");
//! DBOS::shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//! - A started workflow finishes: unfinished workflows of this executor are recovered at launch.
//! - A step's recorded result is final: a resumed workflow replays it without running it again.
//! - A `#[transaction]` commits its writes and its checkpoint together: exactly once.
//! - Workflow IDs are idempotency keys: an ID runs once, whoever starts it and however often.
//! - A message is delivered once to `recv`; events are durable key/values.
//! - A resumed workflow that takes another path than its record fails with both names.
//!
//! # SQLite durability
//! SQLite runs in WAL mode with `synchronous=NORMAL`: a killed process loses nothing. Set
//! [`DbosConfig::sqlite_synchronous_full`] to also survive power loss.

#![warn(missing_docs)]

extern crate self as dbos_runtime;

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "admin")]
mod admin;
mod cancel;
mod concurrency;
mod config;
mod context;
mod cut;
mod dbos;
mod debounce;
mod dispatch;
mod error;
mod events;
mod liveness;
mod manage;
mod messages;
mod metrics;
mod notify;
mod operation;
pub mod otel;
mod patch;
mod queue;
mod recovery;
mod registry;
mod replay;
mod runtime;
mod scheduler;
mod serialization;
mod sleep;
mod step;
mod streams;
mod sysdb;
pub mod testing;
mod transaction;
mod unload;
mod workflow;

pub use config::{DbosConfig, Secret};
pub use dbos::DBOS;
pub use dbos_macros::{queue, scheduled, step, transaction, workflow};
pub use debounce::Debouncer;
pub use error::{Error, PortableError, Result, WorkflowError};
pub use manage::{ForkOptions, StepInfo, WorkflowFilter, WorkflowInfo};
pub use metrics::MetricsSnapshot;
pub use queue::Queue;
pub use replay::{ReplayReport, ReplayVerdict, REPLAY_CHECK_ENV};
pub use runtime::Runtime;
/// The exact decimal type behind [`Numeric`] (re-exported `rust_decimal::Decimal`).
pub use rust_decimal::Decimal;
pub use scheduler::tick_workflow_id;
pub use serialization::Format;
pub use step::StepOptions;
pub use sysdb::{FromRow, Numeric, Param, Tx, TxQuery};
pub use transaction::{Isolation, TxOptions};
pub use workflow::{WorkflowCall, WorkflowHandle, WorkflowStatus};

/// What [`DBOS::read_stream`] returns, and the combinators to read it (`next`, `map`, …).
pub use futures_util::future::Either;
pub use futures_util::{Stream, StreamExt};

/// Re-exported so applications use the same sqlx (for `#[derive(sqlx::FromRow)]`).
pub use sqlx;

/// Everything a user of the macros needs in one import.
pub mod prelude {
    pub use crate::{
        queue, scheduled, step, transaction, workflow, DbosConfig, Debouncer, Either, Error, Queue,
        Tx, WorkflowCall, WorkflowHandle, DBOS,
    };
    pub use chrono::{DateTime, Utc};
    pub use std::time::Duration;
}

/// Used by macro expansions only: not API, may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::{Entry, ResumeFn};
    pub use crate::serialization::{ArgsEncoder, Format, Inputs};
    pub use crate::step::{run_step, run_step_once, StepOptions};
    pub use crate::transaction::{run_transaction, Isolation, TxOptions};
    pub use crate::workflow::{BoxFuture, ErasedCall};
    pub use chrono;
    pub use inventory;
    pub use serde;

    use crate::error::WorkflowError;
    use crate::workflow::WorkflowCall;
    use serde::{de::DeserializeOwned, Serialize};

    /// Builds a workflow call from its name, encoded arguments and body.
    pub fn workflow_call<T, E, F>(
        name: &'static str,
        args: ArgsEncoder,
        body: F,
    ) -> WorkflowCall<T, E>
    where
        F: std::future::Future<Output = Result<T, E>> + Send + 'static,
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        WorkflowCall::new(name, args, body)
    }

    /// Erases a call's types for the registry.
    pub fn erase<T, E>(call: WorkflowCall<T, E>) -> ErasedCall
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
    {
        call.erase()
    }

    /// The `Ok` and `Err` types of a durable function's result.
    #[diagnostic::on_unimplemented(
        message = "a durable function must return `Result<T, E>`, not `{Self}`",
        label = "return a `Result` so failures can be recorded and replayed"
    )]
    pub trait IsResult {
        /// The success type.
        type Ok;
        /// The error type.
        type Err;
    }

    impl<T, E> IsResult for Result<T, E> {
        type Ok = T;
        type Err = E;
    }

    /// Workflow arguments are stored as JSON and rebuilt by recovery.
    pub fn assert_workflow_arg<T: Serialize + DeserializeOwned + Send + 'static>() {}
    /// Outputs are stored as JSON and replayed.
    pub fn assert_output<T: Serialize + DeserializeOwned + Send + 'static>() {}
    /// Errors are recorded and rebuilt on replay.
    pub fn assert_error<E: WorkflowError>() {}
    /// Arguments of retried functions are cloned for each attempt.
    pub fn assert_clone<T: Clone + Send + 'static>() {}

    /// Implemented when dbos-runtime's `bincode` feature is on.
    #[diagnostic::on_unimplemented(
        message = "`serialization = \"bincode\"` needs the `bincode` feature of dbos-runtime",
        label = "bincode is chosen here",
        note = "in Cargo.toml: dbos-runtime = {{ version = \"…\", features = [\"bincode\"] }}"
    )]
    pub trait BincodeEnabled {}
    #[cfg(feature = "bincode")]
    impl BincodeEnabled for () {}

    /// `serialization = "bincode"`: compiles only with the `bincode` feature.
    pub const fn bincode<T: BincodeEnabled>() -> Format {
        Format::Bincode
    }
}
