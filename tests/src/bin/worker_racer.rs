//! The idempotency test's racer: launches, signals that it is ready, waits for the go signal,
//! then starts one workflow ID `STARTS` times at once and prints every result. The test runs
//! two racers against one database; the workflow body must run once in all.
//!
//! Env: `DB_URL`, `WF_ID`, `EXECUTOR` (distinct per process), `STARTS` (default 50),
//! `READY_FILE` (created once launched), `GO_FILE` (waited for before starting).
//! The body appends a row to `racer_runs` (created by the test) outside any checkpoint, so a
//! second run would show.

use dbos_runtime::prelude::*;
use std::path::Path;
use std::sync::{Arc, OnceLock};

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

static POOL: OnceLock<Pool> = OnceLock::new();

#[workflow]
async fn racy(starter: u32) -> Result<String, Error> {
    let id = DBOS::workflow_id()?;
    let pid = i64::from(std::process::id());
    let sql = "INSERT INTO racer_runs (workflow_id, pid) VALUES ($1, $2)";
    let done = match POOL.get().ok_or(Error::NotLaunched)? {
        Pool::Sqlite(p) => sqlx::query(sql)
            .bind(&id)
            .bind(pid)
            .execute(p)
            .await
            .map(|_| ()),
        Pool::Postgres(p) => sqlx::query(sql)
            .bind(&id)
            .bind(pid)
            .execute(p)
            .await
            .map(|_| ()),
    };
    done.map_err(|e| Error::Config(format!("recording the run failed: {e}")))?;
    // Stay running while the other starts arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(format!("{id} ran with the arguments of process {starter}"))
}

fn env(key: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(key).map_err(|e| format!("{key}: {e}").into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = env("DB_URL")?;
    let id = env("WF_ID")?;
    let executor = env("EXECUTOR")?;
    let starts: usize = std::env::var("STARTS")
        .unwrap_or_else(|_| "50".into())
        .parse()?;
    let ready = env("READY_FILE")?;
    let go = env("GO_FILE")?;

    let pool = if url.starts_with("sqlite") {
        let opts = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()?
            .busy_timeout(Duration::from_secs(30));
        Pool::Sqlite(
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await?,
        )
    } else {
        Pool::Postgres(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect(&url)
                .await?,
        )
    };
    let _ = POOL.set(pool);
    DBOS::launch(
        DbosConfig::new("worker-racer")
            .with_database_url(&url)
            .with_executor_id(executor),
    )
    .await?;

    std::fs::write(&ready, b"ready")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !Path::new(&go).exists() {
        if std::time::Instant::now() > deadline {
            return Err("no go signal within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let me = std::process::id();
    let barrier = Arc::new(tokio::sync::Barrier::new(starts));
    let tasks: Vec<_> = (0..starts)
        .map(|_| {
            let (id, barrier) = (id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let handle = DBOS::start_workflow(racy(me).with_id(id)).await?;
                handle.get_result().await
            })
        })
        .collect();
    let mut failed = false;
    for t in tasks {
        match t.await? {
            Ok(result) => println!("result\t{result}"),
            Err(e) => {
                eprintln!("start failed: {e}");
                failed = true;
            }
        }
    }
    DBOS::shutdown().await;
    if failed {
        return Err("some starts failed".into());
    }
    Ok(())
}
