//! The workflow of the stream SIGKILL test, shared by `worker_streams` (killed while it writes)
//! and `tests/streams.rs` (which recovers it and reads the stream). Explicit names: both
//! binaries register it under the same name.

use dbos_runtime::prelude::*;

/// Writes `0..n` to stream `numbers`, pausing `pause_ms` after each, then closes it.
#[workflow(name = "stream_writer")]
pub async fn stream_writer(n: u32, pause_ms: u64) -> Result<u32, Error> {
    for i in 0..n {
        DBOS::write_stream("numbers", &i).await?;
        if pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    }
    DBOS::close_stream("numbers").await?;
    Ok(n)
}
