//! The scheduler crash test's worker: an every-second scheduled `#[transaction]` that adds 1
//! to its tick's counter row, appends `<tick ms> <pid>` to the file `ATTEMPTS` (outside the
//! transaction, so every attempt shows) and then holds the transaction open for `TX_SLEEP_MS`,
//! so that the test can SIGKILL the process inside it. Its own binary: every schedule linked
//! into a binary starts in every runtime that binary launches.
//!
//! Env: `DB_URL`, `ATTEMPTS`, `TX_SLEEP_MS` (default 400), `RUN_SECS` (default 3600) and
//! `END_MS` (default 900): shut down at `END_MS` past the `RUN_SECS`-th second after launch.

use dbos_runtime::prelude::*;
use std::io::Write;

const DDL: &str =
    "CREATE TABLE IF NOT EXISTS tick_effects (tick_ms BIGINT PRIMARY KEY, n BIGINT NOT NULL)";

#[scheduled("* * * * * *")]
#[transaction]
async fn slow_tick(
    tx: &mut Tx,
    scheduled: DateTime<Utc>,
    actual: DateTime<Utc>,
) -> Result<(), Error> {
    let tick = scheduled.timestamp_millis();
    tx.query("INSERT INTO tick_effects (tick_ms, n) VALUES ($1, 1) ON CONFLICT (tick_ms) DO UPDATE SET n = tick_effects.n + 1")
        .bind(tick)
        .execute()
        .await?;
    let line = format!(
        "{tick} {} {}",
        std::process::id(),
        actual.timestamp_millis()
    );
    append_line(&line).map_err(|e| Error::Config(format!("writing ATTEMPTS failed: {e}")))?;
    let sleep_ms: u64 = std::env::var("TX_SLEEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
    Ok(())
}

fn append_line(line: &str) -> std::io::Result<()> {
    let path = std::env::var("ATTEMPTS").map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let url = std::env::var("DB_URL")?;
    let run_secs: i64 = std::env::var("RUN_SECS")
        .unwrap_or_else(|_| "3600".into())
        .parse()?;
    let end_ms: i64 = std::env::var("END_MS")
        .unwrap_or_else(|_| "900".into())
        .parse()?;
    // The table exists before launch: recovery resumes an interrupted tick at once.
    if url.starts_with("sqlite") {
        let opts = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()?
            .create_if_missing(true);
        let p = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        sqlx::query(DDL).execute(&p).await?;
        p.close().await;
    } else {
        let p = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await?;
        sqlx::query(DDL).execute(&p).await?;
        p.close().await;
    }
    DBOS::launch(DbosConfig::new("worker-schedule-crash").with_database_url(&url)).await?;
    let launched = Utc::now();
    let end = launched.timestamp() * 1000 + run_secs * 1000 + end_ms;
    let wait = (end - Utc::now().timestamp_millis()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    DBOS::shutdown().await;
    Ok(())
}
