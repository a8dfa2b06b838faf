//! Stream benchmark (issue 16): one workflow writes N values to a stream from its body (each a
//! recorded operation, one commit) while a reader in the same process follows it live. Prints
//! values written per second, the write → read latency (p50/p99, from just before the write
//! to the reader holding the value) and commits per value.
//!
//! `cargo run --release -p dbos-tests --bin bench_streams -- [values] [sqlite|postgres|both]`

use dbos_runtime::prelude::*;
use dbos_runtime::{Runtime, StreamExt};
use std::time::{SystemTime, UNIX_EPOCH};

fn micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Writes `n` timestamps (µs since the epoch, taken just before each write) and closes.
#[workflow]
async fn timestamps(n: u32) -> Result<u32, Error> {
    for _ in 0..n {
        DBOS::write_stream("t", &micros()).await?;
    }
    DBOS::close_stream("t").await?;
    Ok(n)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

async fn run(url: &str, n: u32) -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::launch(DbosConfig::new("bench-streams").with_database_url(url)).await?;
    let id = format!("bench-stream-{}", uuid::Uuid::new_v4());
    let before = rt.metrics_snapshot();
    let start = std::time::Instant::now();
    let handle = rt.start_workflow(timestamps(n).with_id(&id)).await?;
    let mut reader = rt.read_stream::<u64>(&id, "t");
    let mut latencies = Vec::with_capacity(n as usize);
    while let Some(v) = reader.next().await {
        latencies.push(micros().saturating_sub(v?));
    }
    handle.get_result().await?;
    let secs = start.elapsed().as_secs_f64();
    let commits = rt.metrics_snapshot().commits - before.commits;
    latencies.sort_unstable();
    println!(
        "{:<8} {n} values: {:>7.0} values/s written and read, write→read p50 {:.2} ms p99 {:.2} ms, {:.2} commits/value",
        if url.starts_with("postgres") { "postgres" } else { "sqlite" },
        f64::from(n) / secs,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        commits as f64 / f64::from(n)
    );
    rt.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let which = args.get(2).map(String::as_str).unwrap_or("both");
    if which != "postgres" {
        let dir = std::env::temp_dir().join(format!("dbos-bench-streams-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        run(
            &format!("sqlite://{}?mode=rwc", dir.join("s.sqlite").display()),
            n,
        )
        .await?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    if which != "sqlite" {
        let url = std::env::var("DBOS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        run(&format!("{url}/bench_streams"), n).await?;
    }
    Ok(())
}
