//! Transaction benchmark: N concurrent clients, each running workflows of three
//! `#[transaction]`s that update a row (its own rows: no conflicts), on SQLite and Postgres.
//! Prints workflows/s, p50/p99 latency, commits per workflow (the runtime's count; on Postgres
//! also `pg_stat_database.xact_commit`, read after the pools closed so every backend flushed
//! its counters) and conflict retries.
//!
//! `cargo run --release -p dbos-tests --bin bench_transactions -- [seconds] [concurrency,...] [sqlite|postgres|both] [pool]`
//! (`pool`: Postgres connections, default the runtime's default).

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use std::future::IntoFuture;
use std::time::Instant;

#[transaction]
async fn bump(tx: &mut Tx, id: i64) -> Result<(), Error> {
    tx.query("UPDATE bench_rows SET v = v + 1 WHERE id = $1")
        .bind(id)
        .execute()
        .await?;
    Ok(())
}

#[workflow]
async fn three_updates(client: u32) -> Result<(), Error> {
    let base = i64::from(client) * 3;
    for id in base..base + 3 {
        bump(id).await?;
    }
    Ok(())
}

#[transaction]
async fn setup(tx: &mut Tx, rows: i64) -> Result<(), Error> {
    tx.query("CREATE TABLE IF NOT EXISTS bench_rows (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)")
        .execute()
        .await?;
    for id in 0..rows {
        tx.query("INSERT INTO bench_rows (id, v) VALUES ($1, 0) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .execute()
            .await?;
    }
    Ok(())
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

/// CPU seconds (user + system) a process has used, from `/proc` (Linux; `None` elsewhere).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) : state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The pids of the Postgres backends connected to the benchmark's database.
async fn pg_backends(url: &str) -> Vec<String> {
    let Ok(pool) = sqlx::PgPool::connect(url).await else {
        return Vec::new();
    };
    let pids = sqlx::query_scalar::<_, i32>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&pool)
    .await
    .unwrap_or_default();
    pool.close().await;
    pids.into_iter().map(|p| p.to_string()).collect()
}

async fn pg_backends_cpu(postgres: bool, url: &str) -> Vec<(String, f64)> {
    if !postgres {
        return Vec::new();
    }
    pg_backends(url)
        .await
        .into_iter()
        .filter_map(|pid| cpu_secs(&pid).map(|t| (pid, t)))
        .collect()
}

async fn run(
    url: &str,
    seconds: f64,
    concurrency: usize,
    pool: Option<u32>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut cfg = DbosConfig::new("bench-transactions").with_database_url(url);
    if let Some(p) = pool {
        cfg.max_connections = p;
    }
    let rt = Runtime::launch(cfg).await?;
    rt.scope(setup(3 * concurrency as i64)).await?;
    // Warm up the pools and statement caches.
    for c in 0..concurrency as u32 {
        rt.scope(three_updates(c).into_future()).await?;
    }
    let postgres = url.starts_with("postgres");
    // Idle backends flush their statistics within a second.
    if postgres {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let pg_before = if postgres {
        pg_commits(url).await
    } else {
        None
    };
    let before = rt.metrics_snapshot();
    let backends_before: Vec<(String, f64)> = pg_backends_cpu(postgres, url).await;
    let cpu_before = cpu_secs("self").unwrap_or(0.0);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency as u32 {
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                if let Err(e) = rt.scope(three_updates(c).into_future()).await {
                    eprintln!("workflow failed: {e}");
                    break;
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
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
    let cpu_client = cpu_secs("self").unwrap_or(0.0) - cpu_before;
    let cpu_server: f64 = pg_backends_cpu(postgres, url)
        .await
        .into_iter()
        .map(|(pid, now)| {
            let then = backends_before
                .iter()
                .find(|(p, _)| *p == pid)
                .map_or(0.0, |(_, t)| *t);
            now - then
        })
        .sum();
    rt.shutdown().await;
    let pg_after = if postgres {
        tokio::time::sleep(Duration::from_millis(300)).await;
        pg_commits(url).await
    } else {
        None
    };
    lat.sort_by(|a, b| a.total_cmp(b));
    let n = lat.len().max(1) as f64;
    let backend = if postgres { "postgres" } else { "sqlite" };
    let pg = match (pg_before, pg_after) {
        // Includes the dispatcher's polls and the stats queries: a cross-check, not exact.
        (Some(a), Some(b)) => format!(", pg xact_commit/wf {:.2}", (b - a) as f64 / n),
        _ => String::new(),
    };
    let server = if postgres {
        format!(" + pg backends {:.0} µs", cpu_server / n * 1e6)
    } else {
        String::new()
    };
    println!(
        "{backend:8} concurrency {concurrency:3}: {:7.0} workflows/s, p50 {:6.2} ms, p99 {:6.2} ms, commits/wf {:.2}{pg}, retries {}, cpu/wf: this process {:.0} µs{server} ({} workflows)",
        n / elapsed,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        (after.commits - before.commits) as f64 / n,
        after.transaction_retries - before.transaction_retries,
        cpu_client / n * 1e6,
        lat.len()
    );
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
    let pool: Option<u32> = args.get(4).map(|s| s.parse()).transpose()?;
    let dir = std::env::temp_dir().join(format!("dbos-bench-transactions-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pg_server = dbos_tests::postgres_server();
    for &c in &levels {
        if which == "both" || which == "sqlite" {
            let file = dir.join(format!("bench-{c}.sqlite"));
            let _ = std::fs::remove_file(&file);
            run(&format!("sqlite://{}", file.display()), seconds, c, pool).await?;
        }
        if which == "both" || which == "postgres" {
            let db = format!("bench_transactions_{c}");
            let admin = sqlx::PgPool::connect(&format!("{pg_server}/postgres")).await?;
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&admin)
                .await?;
            admin.close().await;
            run(&format!("{pg_server}/{db}"), seconds, c, pool).await?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
