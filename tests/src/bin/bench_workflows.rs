//! Workflow benchmark: N concurrent clients each running workflows of three no-op steps,
//! on SQLite and on Postgres. Prints workflows/s, p50/p99 latency and database commits per
//! workflow (the runtime's own count; on Postgres also `pg_stat_database.xact_commit`).
//!
//! `cargo run --release -p dbos-tests --bin bench_workflows -- [seconds] [concurrency,...] [sqlite|postgres|both]`

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use std::sync::Arc;
use std::time::Instant;

#[step]
async fn noop(i: u32) -> Result<u32, Error> {
    Ok(i)
}

#[workflow]
async fn three_steps(i: u32) -> Result<u32, Error> {
    let a = noop(i).await?;
    let b = noop(a).await?;
    noop(b).await
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn pg_commits(url: &str) -> Option<i64> {
    let pool = sqlx::PgPool::connect(url).await.ok()?;
    let n = sqlx::query_scalar::<_, i64>(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&pool)
    .await
    .ok();
    pool.close().await;
    n
}

async fn run(
    url: &str,
    seconds: f64,
    concurrency: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::launch(DbosConfig::new("bench-workflows").with_database_url(url)).await?;
    // Warm up the pools and statement caches.
    rt.scope(async { three_steps(0).await }).await?;
    let before = rt.metrics_snapshot();
    let pg_before = if url.starts_with("postgres") {
        pg_commits(url).await
    } else {
        None
    };
    let deadline = Instant::now() + std::time::Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u32;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = rt
                    .scope(async { three_steps(c as u32 * 1_000_000 + i).await })
                    .await;
                if let Err(e) = r {
                    eprintln!("workflow failed: {e}");
                    break;
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                i += 1;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = rt.metrics_snapshot();
    let pg_after = if url.starts_with("postgres") {
        pg_commits(url).await
    } else {
        None
    };
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = lat.len().max(1) as f64;
    let backend = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let pg = match (pg_before, pg_after) {
        // The two stats queries themselves commit; pg stats are flushed lazily, so this is approximate.
        (Some(a), Some(b)) => format!(", pg xact_commit/wf {:.2}", (b - a) as f64 / n),
        _ => String::new(),
    };
    println!(
        "{backend:8} concurrency {concurrency:3}: {:7.0} workflows/s, p50 {:6.2} ms, p99 {:6.2} ms, commits/wf {:.2}{pg}{batches} ({} workflows)",
        n / elapsed,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        (after.commits - before.commits) as f64 / n,
        lat.len(),
        batches = if backend == "sqlite" {
            format!(", SQLite group commits/wf {:.2}", (after.sqlite_batch_commits - before.sqlite_batch_commits) as f64 / n)
        } else {
            String::new()
        }
    );
    rt.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5.0);
    let levels: Vec<usize> = args
        .get(2)
        .map(|s| s.split(',').map(|x| x.parse()).collect::<Result<_, _>>())
        .transpose()?
        .unwrap_or_else(|| vec![1, 16, 64]);
    let which = args.get(3).cloned().unwrap_or_else(|| "both".into());
    let dir = std::env::temp_dir().join(format!("dbos-bench-workflows-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pg_server = std::env::var("DBOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let _keep = Arc::new(());
    for &c in &levels {
        if which == "both" || which == "sqlite" {
            let file = dir.join(format!("bench-{c}.sqlite"));
            let _ = std::fs::remove_file(&file);
            run(&format!("sqlite://{}", file.display()), seconds, c).await?;
        }
        if which == "both" || which == "postgres" {
            let db = format!("bench_workflows_{c}");
            let admin = sqlx::PgPool::connect(&format!("{pg_server}/postgres")).await?;
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&admin)
                .await?;
            admin.close().await;
            run(&format!("{pg_server}/{db}"), seconds, c).await?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
