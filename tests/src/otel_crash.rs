//! The workflow of the OpenTelemetry SIGKILL test, shared by `worker_otel` (which starts it
//! under a trace and is killed in its second step) and `tests/otel.rs` (which recovers it).
//! Explicit names: both binaries register them under the same names.

use dbos_runtime::prelude::*;

#[step(name = "otel_crash_first")]
async fn first() -> Result<u32, Error> {
    Ok(1)
}

/// Blocks for good in the worker (`OTEL_WORKER_BLOCK` set), so the kill lands here.
#[step(name = "otel_crash_second")]
async fn second() -> Result<u32, Error> {
    if std::env::var_os("OTEL_WORKER_BLOCK").is_some() {
        std::future::pending::<()>().await;
    }
    Ok(2)
}

#[workflow(name = "otel_crash")]
pub async fn otel_crash() -> Result<u32, Error> {
    Ok(first().await? + second().await?)
}
