//! DBOS's own benchmark workload: a workflow of 10 sequential transactions, each reading a
//! greeting counter and then incrementing it (or inserting 1), run by one client, 50 workflows
//! after a warm-up; prints the median, mean and p99 workflow latency, the runtime's commits
//! per workflow and this process's CPU time per workflow, on SQLite and Postgres.
//!
//! `cargo run --release -p dbos-tests --bin bench_hello -- [workflows] [sqlite|postgres|both]`
//! (Postgres: `DBOS_TEST_POSTGRES_URL`, database `bench_hello`, dropped first).

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{Backend, TestDb};
use std::future::IntoFuture;
use std::time::Instant;

#[transaction]
async fn create_hello(tx: &mut Tx) -> Result<(), Error> {
    tx.query("CREATE TABLE IF NOT EXISTS dbos_hello (name TEXT PRIMARY KEY, greet_count INT)")
        .execute()
        .await?;
    Ok(())
}

/// Reads `name`'s count, then increments it or inserts 1; returns the new count.
#[transaction]
async fn hello_transaction(tx: &mut Tx, name: String) -> Result<i32, Error> {
    let count: Option<(i32,)> = tx
        .query("SELECT greet_count FROM dbos_hello WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional()
        .await?;
    let next = match count {
        Some((c,)) => {
            tx.query("UPDATE dbos_hello SET greet_count = $2 WHERE name = $1")
                .bind(name.as_str())
                .bind(c + 1)
                .execute()
                .await?;
            c + 1
        }
        None => {
            tx.query("INSERT INTO dbos_hello (name, greet_count) VALUES ($1, 1)")
                .bind(name.as_str())
                .execute()
                .await?;
            1
        }
    };
    Ok(next)
}

#[workflow]
async fn hello_workflow(name: String) -> Result<i32, Error> {
    let mut last = 0;
    for _ in 0..10 {
        last = hello_transaction(name.clone()).await?;
    }
    Ok(last)
}

/// CPU seconds (user + system) this process has used, from `/proc`.
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(end) = stat.rfind(')') else {
        return 0.0;
    };
    let f: Vec<&str> = stat[end + 1..].split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / hz
}

async fn run(url: &str, workflows: usize) -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::launch(DbosConfig::new("bench-hello").with_database_url(url)).await?;
    rt.scope(create_hello()).await?;
    for i in 0..10 {
        rt.scope(hello_workflow(format!("warm-{i}")).into_future())
            .await?;
    }
    let before = rt.metrics_snapshot();
    let cpu = cpu_secs();
    let mut lat = Vec::with_capacity(workflows);
    for i in 0..workflows {
        let name = format!("dbos-{}", i % 5);
        let t = Instant::now();
        let count = rt.scope(hello_workflow(name).into_future()).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        if count < 10 {
            return Err(format!("the count went backwards: {count}").into());
        }
    }
    let cpu = cpu_secs() - cpu;
    let after = rt.metrics_snapshot();
    rt.shutdown().await;
    let n = lat.len() as f64;
    let mean = lat.iter().sum::<f64>() / n;
    lat.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| lat[(((n * p).ceil() as usize).max(1) - 1).min(lat.len() - 1)];
    let backend = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "{backend:8} {workflows} workflows of 10 transactions, one client: median {:.2} ms, \
         mean {mean:.2} ms, p99 {:.2} ms; {:.1} commits and {:.0} µs of CPU (this process) \
         per workflow",
        at(0.5),
        at(0.99),
        (after.commits - before.commits) as f64 / n,
        cpu / n * 1e6
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let workflows: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(50);
    let which = args.get(2).cloned().unwrap_or_else(|| "both".into());
    for (backend, label) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
        if which != "both" && which != label {
            continue;
        }
        let db = TestDb::fresh(backend, "bench_hello").await;
        let result = run(&db.url, workflows).await;
        if let Some(dir) = &db.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        result?;
    }
    Ok(())
}
