//! The stream SIGKILL test's worker: starts `stream_writer(N, PAUSE_MS)` with ID `WORKFLOW_ID`
//! on `DB_URL` as executor `stream-writer`, then waits to be killed.

use dbos_runtime::prelude::*;

#[path = "../stream_writer.rs"]
mod stream_writer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DB_URL")?;
    let id = std::env::var("WORKFLOW_ID")?;
    let n: u32 = std::env::var("N")?.parse()?;
    let pause: u64 = std::env::var("PAUSE_MS")?.parse()?;
    let config = DbosConfig::new("stream-writer")
        .with_database_url(url)
        .with_version("stream-writer-1")
        .with_executor_id("stream-writer");
    let rt = dbos_runtime::Runtime::launch(config).await?;
    rt.start_workflow(stream_writer::stream_writer(n, pause).with_id(&id))
        .await?;
    println!("STARTED");
    std::future::pending::<()>().await;
    Ok(())
}
