//! Queue benchmark: enqueue N one-step workflows onto one queue, then drain them with 1 and 2
//! worker processes (and onto a queue with 8 partitions); print workflows/s, commits per
//! workflow, and enqueue→start latency p50/p99 on an idle queue (enqueued in the worker's own
//! process, and on Postgres from another process, woken by NOTIFY).
//!
//! `cargo run --release -p dbos-tests --bin bench_queue -- [N] [sqlite|postgres|both]`
//! (the binary runs itself as the worker processes).

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use std::time::Instant;

#[queue]
static BENCH: Queue = Queue::new("bench");

#[queue]
static PARTS: Queue = Queue::new("bench_parts").partitioned();

#[step]
async fn noop(i: u32) -> Result<u32, Error> {
    Ok(i)
}

#[workflow]
async fn one_step(i: u32) -> Result<u32, Error> {
    noop(i).await
}

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn cfg(url: &str, executor: &str) -> DbosConfig {
    DbosConfig::new("bench-queue")
        .with_database_url(url)
        .with_executor_id(executor)
}

/// `(count of SUCCESS, first start, last completion)` of workflows whose ID starts with `prefix`.
async fn finished(rt: &Runtime, prefix: &str) -> Res<(i64, i64, i64)> {
    let mut filter = dbos_runtime::WorkflowFilter::new().status("SUCCESS");
    filter.id_prefix = Some(prefix.to_owned());
    let rows = rt.list_workflows(&filter).await?;
    let first = rows.iter().filter_map(|w| w.dequeued_at).min().unwrap_or(0);
    let last = rows
        .iter()
        .filter_map(|w| w.completed_at)
        .max()
        .unwrap_or(0);
    Ok((rows.len() as i64, first, last))
}

/// A worker process: dispatches until `JOBS` workflows with prefix `PREFIX` succeeded;
/// prints its commit count.
async fn worker() -> Res<()> {
    let url = std::env::var("DB_URL")?;
    let prefix = std::env::var("PREFIX")?;
    let jobs: i64 = std::env::var("JOBS")?.parse()?;
    let rt = Runtime::launch(cfg(&url, &std::env::var("EXECUTOR")?)).await?;
    loop {
        if finished(&rt, &prefix).await?.0 >= jobs {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!("commits {}", rt.metrics_snapshot().commits);
    rt.shutdown().await;
    Ok(())
}

async fn drain(url: &str, n: u32, workers: usize, partitions: u32, round: u32) -> Res<()> {
    let prefix = format!("r{round}-");
    let client = Runtime::connect(cfg(url, "client")).await?;
    let t0 = Instant::now();
    for i in 0..n {
        let call = one_step(i).with_id(format!("{prefix}{i}"));
        if partitions > 0 {
            client
                .enqueue(&PARTS, call.with_partition(format!("p{}", i % partitions)))
                .await?;
        } else {
            client.enqueue(&BENCH, call).await?;
        }
    }
    let enqueue_s = t0.elapsed().as_secs_f64();
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for w in 0..workers {
        children.push(
            tokio::process::Command::new(&exe)
                .env("BENCH_WORKER", "1")
                .env("DB_URL", url)
                .env("PREFIX", &prefix)
                .env("JOBS", n.to_string())
                .env("EXECUTOR", format!("worker-{round}-{w}"))
                .env("DBOS_ADMIN_PORT", "off")
                .stdout(std::process::Stdio::piped())
                .spawn()?,
        );
    }
    let mut commits = 0u64;
    for c in children {
        let out = c.wait_with_output().await?;
        if !out.status.success() {
            return Err("a worker failed".into());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        commits += text
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    let (done, first, last) = finished(&client, &prefix).await?;
    let span_s = (last - first).max(1) as f64 / 1e3;
    println!(
        "  {workers} worker(s){}: {done} workflows drained in {span_s:.2} s = {:.0} workflows/s; enqueue {:.0}/s; {:.2} commits per workflow in the workers (+1 for the enqueue)",
        if partitions > 0 { format!(", {partitions} partitions") } else { String::new() },
        done as f64 / span_s,
        f64::from(n) / enqueue_s,
        commits as f64 / done.max(1) as f64,
    );
    client.shutdown().await;
    Ok(())
}

/// Enqueue→start on an idle queue: `n` enqueues one after another, each awaited to the end
/// (through `reader`, the launched runtime).
async fn latency(enqueuer: &Runtime, reader: &Runtime, n: u32, label: &str, round: u32) -> Res<()> {
    let mut lat = Vec::new();
    for i in 0..n {
        let id = format!("lat{round}-{i}");
        enqueuer.enqueue(&BENCH, one_step(i).with_id(&id)).await?;
        // Awaited through the launched runtime, which a local completion wakes at once.
        let h = reader.retrieve_workflow::<u32, Error>(&id).await?;
        h.get_result().await?;
        let mut filter = dbos_runtime::WorkflowFilter::new();
        filter.workflow_ids = vec![id];
        if let Some(w) = reader.list_workflows(&filter).await?.first() {
            if let Some(s) = w.dequeued_at {
                lat.push(s - w.created_at);
            }
        }
    }
    lat.sort();
    println!(
        "  enqueue→start on an idle queue, {label}: p50 {} ms, p99 {} ms ({} samples, ms resolution)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.len()
    );
    Ok(())
}

async fn bench(url: &str, n: u32, postgres: bool) -> Res<()> {
    let mut round = 0;
    let worker_counts: &[usize] = if postgres { &[1, 2] } else { &[1] };
    for &w in worker_counts {
        round += 1;
        drain(url, n, w, 0, round).await?;
    }
    round += 1;
    drain(url, n, worker_counts[worker_counts.len() - 1], 8, round).await?;
    let rt = Runtime::launch(cfg(url, "latency")).await?;
    latency(&rt, &rt, 200, "enqueued in the worker's process", 1).await?;
    if postgres {
        let client = Runtime::connect(cfg(url, "client")).await?;
        latency(&client, &rt, 200, "enqueued by another process (NOTIFY)", 2).await?;
        client.shutdown().await;
    }
    rt.shutdown().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    if std::env::var("BENCH_WORKER").is_ok() {
        return worker().await;
    }
    let args: Vec<String> = std::env::args().collect();
    let n: u32 = args.get(1).map_or(Ok(5000), |s| s.parse())?;
    let which = args.get(2).map_or("both", String::as_str);
    if which != "postgres" {
        let dir = std::env::temp_dir().join(format!("dbos-bench-queue-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        println!("SQLite ({n} workflows per run):");
        bench(
            &format!("sqlite://{}/bench.sqlite", dir.display()),
            n,
            false,
        )
        .await?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    if which != "sqlite" {
        let server = dbos_tests::postgres_server();
        let mut admin =
            <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{server}/postgres"))
                .await?;
        sqlx::raw_sql("DROP DATABASE IF EXISTS dbos_bench_queue WITH (FORCE)")
            .execute(&mut admin)
            .await?;
        println!("Postgres ({n} workflows per run):");
        bench(&format!("{server}/dbos_bench_queue"), n, true).await?;
    }
    Ok(())
}
