//! Scheduler benchmark: how late an every-second `#[scheduled]` workflow runs. Prints, per
//! backend, p50/p99/max of two latenesses: the scheduler's (`actual_time - scheduled_time`,
//! what the function receives) and the body's (when the body started running, after the tick
//! was enqueued and claimed, minus `scheduled_time`). Goal: p99 under 50 ms, idle and with
//! load beside it (run `bench_workflows` at the same time).
//!
//! `cargo run --release -p dbos-tests --bin bench_schedule -- [seconds] [sqlite|postgres|both]`

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use std::sync::Mutex;

/// `(scheduled, actual, body started)` in epoch milliseconds, one per tick.
static SAMPLES: Mutex<Vec<(i64, i64, i64)>> = Mutex::new(Vec::new());

#[scheduled("* * * * * *")]
#[workflow]
async fn bench_tick(scheduled: DateTime<Utc>, actual: DateTime<Utc>) -> Result<(), Error> {
    // When the body starts, on purpose: the benchmark measures the tick's latency.
    #[allow_nondeterminism]
    let started = Utc::now().timestamp_millis();
    let sample = (
        scheduled.timestamp_millis(),
        actual.timestamp_millis(),
        started,
    );
    match SAMPLES.lock() {
        Ok(mut s) => s.push(sample),
        Err(p) => p.into_inner().push(sample),
    }
    Ok(())
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn summary(mut v: Vec<i64>) -> String {
    v.sort_unstable();
    format!(
        "p50 {:>3} ms  p99 {:>3} ms  max {:>3} ms",
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(0)
    )
}

async fn fresh_url(backend: &str) -> Result<String, Box<dyn std::error::Error>> {
    if backend == "sqlite" {
        let dir = std::env::temp_dir().join(format!("dbos-bench-schedule-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        return Ok(format!("sqlite://{}/bench.sqlite", dir.display()));
    }
    let server = std::env::var("DBOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{server}/postgres")).await?;
    sqlx::raw_sql("DROP DATABASE IF EXISTS bench_schedule WITH (FORCE)")
        .execute(&mut admin)
        .await?;
    sqlx::raw_sql("CREATE DATABASE bench_schedule")
        .execute(&mut admin)
        .await?;
    Ok(format!("{server}/bench_schedule"))
}

async fn run(backend: &str, seconds: u64) -> Result<(), Box<dyn std::error::Error>> {
    let url = fresh_url(backend).await?;
    match SAMPLES.lock() {
        Ok(mut s) => s.clear(),
        Err(p) => p.into_inner().clear(),
    }
    let rt = Runtime::launch(DbosConfig::new("bench-schedule").with_database_url(&url)).await?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    rt.shutdown().await;
    let samples = match SAMPLES.lock() {
        Ok(s) => s.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let fired = samples.iter().map(|(s, a, _)| a - s).collect();
    let started = samples.iter().map(|(s, _, b)| b - s).collect();
    println!(
        "{backend:>8}: {:>4} ticks  fired (actual - scheduled): {}",
        samples.len(),
        summary(fired)
    );
    println!(
        "{:>8}  {:>4}        body started - scheduled:   {}",
        "",
        "",
        summary(started)
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(60);
    let which = args.get(2).cloned().unwrap_or_else(|| "both".into());
    for backend in ["sqlite", "postgres"] {
        if which == backend || which == "both" {
            run(backend, seconds).await?;
        }
    }
    Ok(())
}
