//! The crash test's worker: runs workflows of five steps, each step appending a row to
//! `side_effects` (outside the checkpoint, so a re-run shows). The test kills this process at
//! random moments and starts it again; recovery must finish every workflow.
//!
//! Env: `DB_URL`, `WORKFLOWS` (how many), `STEP_MAX_MS` (each step sleeps up to this long).

use dbos_runtime::prelude::*;
use std::sync::OnceLock;

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

static POOL: OnceLock<Pool> = OnceLock::new();
static STEP_MAX_MS: OnceLock<u64> = OnceLock::new();

async fn side_effect(workflow_id: &str, step: i32) -> Result<(), Error> {
    let pid = i64::from(std::process::id());
    let sql = "INSERT INTO side_effects (workflow_id, step, pid) VALUES ($1, $2, $3)";
    let pool = POOL.get().ok_or(Error::NotLaunched)?;
    match pool {
        Pool::Sqlite(p) => sqlx::query(sql)
            .bind(workflow_id)
            .bind(step)
            .bind(pid)
            .execute(p)
            .await
            .map(|_| ()),
        Pool::Postgres(p) => sqlx::query(sql)
            .bind(workflow_id)
            .bind(step)
            .bind(pid)
            .execute(p)
            .await
            .map(|_| ()),
    }
    .map_err(|e| Error::Config(format!("side effect failed: {e}")))
}

#[step]
async fn effect_step(workflow_id: String, step: i32) -> Result<i32, Error> {
    side_effect(&workflow_id, step).await?;
    let max = *STEP_MAX_MS.get().unwrap_or(&10);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=max))).await;
    Ok(step * 10)
}

#[workflow]
async fn five_steps(n: u32) -> Result<i32, Error> {
    let id = DBOS::workflow_id()?;
    tracing::debug!("workflow {n} runs as {id}");
    let mut total = 0;
    for step in 1..=5 {
        total += effect_step(id.clone(), step).await?;
    }
    Ok(total)
}

async fn check(h: Option<WorkflowHandle<i32>>) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(h) = h {
        let total = h.get_result().await?;
        if total != 150 {
            return Err(format!("workflow {} returned {total}", h.workflow_id()).into());
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DB_URL")?;
    let workflows: u32 = std::env::var("WORKFLOWS")
        .unwrap_or_else(|_| "40".into())
        .parse()?;
    let _ = STEP_MAX_MS.set(
        std::env::var("STEP_MAX_MS")
            .unwrap_or_else(|_| "10".into())
            .parse()?,
    );
    let ddl = "CREATE TABLE IF NOT EXISTS side_effects (workflow_id TEXT NOT NULL, step INTEGER NOT NULL, pid BIGINT NOT NULL)";
    // The side-effect pool must exist before launch: recovery resumes workflows at once.
    let pool = if url.starts_with("sqlite") {
        let p = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                url.parse::<sqlx::sqlite::SqliteConnectOptions>()?
                    .create_if_missing(true)
                    .busy_timeout(Duration::from_secs(30)),
            )
            .await?;
        sqlx::query(ddl).execute(&p).await?;
        Pool::Sqlite(p)
    } else {
        let p = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await?;
        // A worker killed a moment ago may still have its CREATE TABLE running on the server:
        // the loser of that race sees a catalog unique violation; try again once it ended.
        let mut tries = 0;
        while let Err(e) = sqlx::query(ddl).execute(&p).await {
            let raced =
                matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"));
            tries += 1;
            if !raced || tries > 40 {
                return Err(e.into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Pool::Postgres(p)
    };
    let _ = POOL.set(pool);
    DBOS::launch(DbosConfig::new("worker-crash").with_database_url(&url)).await?;
    // At most CONCURRENCY of our own starts run at once, so the work spans many kills.
    let concurrency: usize = std::env::var("CONCURRENCY")
        .unwrap_or_else(|_| "8".into())
        .parse()?;
    let mut running = std::collections::VecDeque::new();
    for i in 0..workflows {
        if running.len() >= concurrency {
            check(running.pop_front()).await?;
        }
        running.push_back(DBOS::start_workflow(five_steps(i).with_id(format!("crash-{i}"))).await?);
    }
    while let Some(h) = running.pop_front() {
        check(Some(h)).await?;
    }
    println!("all {workflows} workflows done");
    DBOS::shutdown().await;
    Ok(())
}
