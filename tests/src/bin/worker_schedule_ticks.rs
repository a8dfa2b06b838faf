//! The scheduler tests' worker: an every-second `#[scheduled]` workflow whose body appends a
//! row to `tick_runs` through a plain pool, outside any checkpoint, so a tick that ran twice
//! shows as two rows. Its own binary: every schedule linked into a binary starts in every
//! runtime that binary launches.
//!
//! Env: `DB_URL`; `RUN_SECS` (default 10): the process launches, runs until `RUN_SECS` seconds
//! after the whole second it launched in, plus `END_MS` (default 500) so that the last tick has
//! finished, then shuts down; `CATCH_UP` (optional): `DbosConfig::scheduler_catch_up`;
//! `DBOS__VMID`: the executor ID; `LINGER_MS` (optional): stay alive this long after shutdown
//! and print `after shutdown: ticks <n>-><n> runs <n>-><n> unfinished <n>`, counts taken as
//! shutdown returned and after the wait (nothing may change once shutdown has returned).

use dbos_runtime::prelude::*;
use std::sync::OnceLock;

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

static POOL: OnceLock<Pool> = OnceLock::new();

const DDL: &str = "CREATE TABLE IF NOT EXISTS tick_runs (workflow_id TEXT NOT NULL, \
    scheduled_ms BIGINT NOT NULL, actual_ms BIGINT NOT NULL, started_ms BIGINT NOT NULL, pid BIGINT NOT NULL)";

#[scheduled("* * * * * *")]
#[workflow]
async fn every_second(scheduled: DateTime<Utc>, actual: DateTime<Utc>) -> Result<(), Error> {
    // When the body starts, on purpose: the benchmark measures the tick's latency.
    #[allow_nondeterminism]
    let started = Utc::now().timestamp_millis();
    let id = DBOS::workflow_id()?;
    let sql = "INSERT INTO tick_runs (workflow_id, scheduled_ms, actual_ms, started_ms, pid) \
               VALUES ($1, $2, $3, $4, $5)";
    let (s, a, pid) = (
        scheduled.timestamp_millis(),
        actual.timestamp_millis(),
        i64::from(std::process::id()),
    );
    match POOL.get().ok_or(Error::NotLaunched)? {
        Pool::Sqlite(p) => sqlx::query(sql)
            .bind(&id)
            .bind(s)
            .bind(a)
            .bind(started)
            .bind(pid)
            .execute(p)
            .await
            .map(drop),
        Pool::Postgres(p) => sqlx::query(sql)
            .bind(&id)
            .bind(s)
            .bind(a)
            .bind(started)
            .bind(pid)
            .execute(p)
            .await
            .map(drop),
    }
    .map_err(|e| Error::Config(format!("recording the tick failed: {e}")))
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> Result<T, Box<dyn std::error::Error>>
where
    T::Err: std::error::Error + 'static,
{
    match std::env::var(key) {
        Ok(v) if !v.is_empty() => Ok(v.parse()?),
        _ => Ok(default),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let url = std::env::var("DB_URL")?;
    let run_secs: i64 = env_or("RUN_SECS", 10)?;
    let end_ms: i64 = env_or("END_MS", 500)?;
    let catch_up: Option<u32> = std::env::var("CATCH_UP")
        .ok()
        .map(|v| v.parse())
        .transpose()?;
    // The pool exists before launch: recovery and caught-up ticks run at once.
    let pool = if url.starts_with("sqlite") {
        let opts = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()?
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(30));
        let p = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        sqlx::query(DDL).execute(&p).await?;
        Pool::Sqlite(p)
    } else {
        let p = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await?;
        sqlx::query(DDL).execute(&p).await?;
        Pool::Postgres(p)
    };
    let _ = POOL.set(pool);
    let mut cfg = DbosConfig::new("worker-schedule-ticks").with_database_url(&url);
    cfg.scheduler_catch_up = catch_up;
    DBOS::launch(cfg).await?;
    let launched = Utc::now();
    let end = launched.timestamp() * 1000 + run_secs * 1000 + end_ms;
    let wait = (end - Utc::now().timestamp_millis()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    DBOS::shutdown().await;
    println!(
        "launched {} stopped {}",
        launched.timestamp_millis(),
        Utc::now().timestamp_millis()
    );
    let linger: u64 = env_or("LINGER_MS", 0)?;
    if linger > 0 {
        let s = if url.starts_with("sqlite") {
            ""
        } else {
            "dbos."
        };
        let ticks =
            format!("SELECT COUNT(*) FROM {s}workflow_status WHERE workflow_uuid LIKE 'sched-%'");
        let unfinished = format!("{ticks} AND status <> 'SUCCESS'");
        let runs = "SELECT COUNT(*) FROM tick_runs";
        let (t0, r0) = (count(&ticks).await?, count(runs).await?);
        tokio::time::sleep(Duration::from_millis(linger)).await;
        let (t1, r1, u) = (
            count(&ticks).await?,
            count(runs).await?,
            count(&unfinished).await?,
        );
        println!("after shutdown: ticks {t0}->{t1} runs {r0}->{r1} unfinished {u}");
    }
    Ok(())
}

async fn count(sql: &str) -> Result<i64, Box<dyn std::error::Error>> {
    Ok(match POOL.get().ok_or(Error::NotLaunched)? {
        Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
        Pool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
    })
}
