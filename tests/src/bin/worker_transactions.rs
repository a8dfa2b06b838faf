//! The transaction tests' worker process. The tests SIGKILL it at random moments and start it
//! again; recovery must finish every workflow with each transaction applied exactly once.
//!
//! Env: `DB_URL` (application database), `SYS_URL` (optional separate system database),
//! `MODE`:
//! - `crash`: `WORKFLOWS` workflows (at most `CONCURRENCY` at a time), each of three
//!   transactions incrementing counter rows 1, 2 and 3; each transaction sleeps up to
//!   `TX_SLEEP_MS` while its write is uncommitted, so kills land inside transactions too.
//! - `error`: one workflow whose transaction writes a row and returns `Err`; each run of the
//!   body appends a line to the file `BODY_RUNS`. With `HANG=1` the workflow then waits forever
//!   in a step (after creating the file `AT_GATE`), so that the test can kill it there.

use dbos_runtime::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::OnceLock;

static TX_SLEEP_MS: OnceLock<u64> = OnceLock::new();

#[transaction]
async fn setup_counters(tx: &mut Tx) -> Result<(), Error> {
    tx.query("CREATE TABLE IF NOT EXISTS counters (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)")
        .execute()
        .await?;
    for id in 1..=3 {
        tx.query("INSERT INTO counters (id, n) VALUES ($1, 0) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .execute()
            .await?;
    }
    Ok(())
}

#[transaction]
async fn bump(tx: &mut Tx, counter: i32) -> Result<i64, Error> {
    let n: i64 = tx
        .query("UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n")
        .bind(counter)
        .fetch_scalar()
        .await?;
    let max = *TX_SLEEP_MS.get().unwrap_or(&0);
    if max > 0 {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=max))).await;
    }
    Ok(n)
}

#[workflow]
async fn three_bumps(i: u32) -> Result<u32, Error> {
    for counter in 1..=3 {
        bump(counter).await?;
    }
    Ok(i)
}

/// The error test's error type: a serde enum, recorded and rebuilt on replay.
#[derive(Debug, Serialize, Deserialize, thiserror::Error)]
enum OrderError {
    #[error("card declined for order {0}")]
    Declined(i32),
    #[error("{0}")]
    Runtime(String),
}

impl From<Error> for OrderError {
    fn from(e: Error) -> Self {
        OrderError::Runtime(e.to_string())
    }
}

#[transaction]
async fn setup_orders(tx: &mut Tx) -> Result<(), Error> {
    tx.query("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
        .execute()
        .await?;
    Ok(())
}

fn append_line(path: &str, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")?;
    f.sync_all()
}

#[transaction]
async fn charge_then_decline(tx: &mut Tx, order: i32) -> Result<(), OrderError> {
    let runs = std::env::var("BODY_RUNS")
        .map_err(|_| OrderError::Runtime("BODY_RUNS is not set".into()))?;
    append_line(&runs, &format!("{}", std::process::id()))
        .map_err(|e| OrderError::Runtime(e.to_string()))?;
    tx.query("INSERT INTO orders (id, status) VALUES ($1, 'charged')")
        .bind(order)
        .execute()
        .await?;
    Err(OrderError::Declined(order))
}

#[step]
async fn gate() -> Result<(), Error> {
    if std::env::var("HANG").as_deref() == Ok("1") {
        if let Ok(path) = std::env::var("AT_GATE") {
            let _ = append_line(&path, "at gate");
        }
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn declined_order(order: i32) -> Result<(), OrderError> {
    let charged = charge_then_decline(order).await;
    gate().await?;
    charged
}

async fn crash_mode() -> Result<(), Box<dyn std::error::Error>> {
    let _ = TX_SLEEP_MS.set(
        std::env::var("TX_SLEEP_MS")
            .unwrap_or_else(|_| "0".into())
            .parse()?,
    );
    setup_counters().await?;
    let workflows: u32 = std::env::var("WORKFLOWS")
        .unwrap_or_else(|_| "100".into())
        .parse()?;
    let concurrency: usize = std::env::var("CONCURRENCY")
        .unwrap_or_else(|_| "8".into())
        .parse()?;
    let mut running = std::collections::VecDeque::new();
    for i in 0..workflows {
        if running.len() >= concurrency {
            if let Some(h) = running.pop_front() {
                check(h).await?;
            }
        }
        running.push_back(DBOS::start_workflow(three_bumps(i).with_id(format!("tx-{i}"))).await?);
    }
    while let Some(h) = running.pop_front() {
        check(h).await?;
    }
    println!("all {workflows} workflows done");
    Ok(())
}

async fn check(h: WorkflowHandle<u32>) -> Result<(), Box<dyn std::error::Error>> {
    let i = h.get_result().await?;
    if format!("tx-{i}") != h.workflow_id() {
        return Err(format!("workflow {} returned {i}", h.workflow_id()).into());
    }
    Ok(())
}

async fn error_mode() -> Result<(), Box<dyn std::error::Error>> {
    setup_orders().await?;
    let handle = DBOS::start_workflow(declined_order(7).with_id("declined-7")).await?;
    let result = handle.get_result().await;
    println!(
        "RESULT: {}",
        serde_json::to_string(&result.map_err(|e| e.to_string()))?
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let url = std::env::var("DB_URL")?;
    let mut cfg = DbosConfig::new("worker-transactions").with_database_url(&url);
    if let Ok(sys) = std::env::var("SYS_URL") {
        cfg = cfg.with_system_database_url(sys);
    }
    DBOS::launch(cfg).await?;
    match std::env::var("MODE").as_deref() {
        Ok("crash") => crash_mode().await?,
        Ok("error") => error_mode().await?,
        other => return Err(format!("unknown MODE {other:?}").into()),
    }
    DBOS::shutdown().await;
    Ok(())
}
