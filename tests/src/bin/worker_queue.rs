//! The queue tests' worker: a process that dispatches queue `work` (concurrency 5, worker
//! concurrency 2), or a client that enqueues onto it.
//!
//! Each `job` records when its execution starts and ends in `spans` (outside any checkpoint,
//! on the machine's clock:
//! a resumed execution records again, under its own pid) and runs three transactions, each
//! inserting one `effects` row (exactly once, with its checkpoint).
//!
//! Env: `DB_URL` (Postgres, or a SQLite file shared by the processes); `MODE`:
//! - `work`: launch as executor `EXECUTOR` and run until every `job-*` workflow is SUCCESS
//!   (`JOBS` of them), then shut down;
//! - `enqueue`: as a client, enqueue `job-0` … `job-<JOBS-1>` and exit;
//! - `dedup`: as a client, enqueue 25 workflows at once, all with deduplication ID `same`
//!   (IDs `dedup-<TAG>-<i>`); print `enqueued <n> deduplicated <m>`.
//!
//! `PAUSE_MS`: each job pauses up to this long between its transactions (default 20).
//! `EXECUTOR=local` (on Postgres: an ID of its own per process), `LIVENESS_MS` (default 30 s).

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use std::sync::OnceLock;

#[queue]
static WORK: Queue = Queue::new("work").concurrency(5).worker_concurrency(2);

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

static POOL: OnceLock<Pool> = OnceLock::new();
static PAUSE_MS: OnceLock<u64> = OnceLock::new();

const DDL: &str = "CREATE TABLE IF NOT EXISTS spans (workflow_id TEXT NOT NULL, pid BIGINT NOT NULL, \
     kind TEXT NOT NULL, at_us BIGINT NOT NULL); \
     CREATE TABLE IF NOT EXISTS effects (workflow_id TEXT NOT NULL, k INTEGER NOT NULL, pid BIGINT NOT NULL)";

/// Records an execution's start or end, on the machine's clock (all workers share it).
async fn span(kind: &str) -> Result<(), Error> {
    let sql = "INSERT INTO spans (workflow_id, pid, kind, at_us) VALUES ($1, $2, $3, $4)";
    let id = DBOS::workflow_id()?;
    let pid = i64::from(std::process::id());
    let at = chrono::Utc::now().timestamp_micros();
    match POOL.get().ok_or(Error::NotLaunched)? {
        Pool::Sqlite(p) => sqlx::query(sql)
            .bind(id)
            .bind(pid)
            .bind(kind)
            .bind(at)
            .execute(p)
            .await
            .map(|_| ()),
        Pool::Postgres(p) => sqlx::query(sql)
            .bind(id)
            .bind(pid)
            .bind(kind)
            .bind(at)
            .execute(p)
            .await
            .map(|_| ()),
    }
    .map_err(|e| Error::Config(format!("recording a span: {e}")))
}

async fn done_jobs() -> Result<i64, Box<dyn std::error::Error>> {
    let sys = match POOL.get().ok_or(Error::NotLaunched)? {
        Pool::Sqlite(_) => "",
        Pool::Postgres(_) => "dbos.",
    };
    let sql = format!(
        "SELECT COUNT(*) FROM {sys}workflow_status WHERE workflow_uuid LIKE 'job-%' AND status = 'SUCCESS'"
    );
    Ok(match POOL.get().ok_or(Error::NotLaunched)? {
        Pool::Sqlite(p) => sqlx::query_scalar(&sql).fetch_one(p).await?,
        Pool::Postgres(p) => sqlx::query_scalar(&sql).fetch_one(p).await?,
    })
}

#[transaction]
async fn effect(tx: &mut Tx, k: i32) -> Result<(), Error> {
    tx.query("INSERT INTO effects (workflow_id, k, pid) VALUES ($1, $2, $3)")
        .bind(DBOS::workflow_id()?)
        .bind(k)
        .bind(i64::from(std::process::id()))
        .execute()
        .await?;
    Ok(())
}

#[step]
async fn pause() -> Result<(), Error> {
    let max = *PAUSE_MS.get().unwrap_or(&20);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=max))).await;
    Ok(())
}

#[workflow]
async fn job(n: u32) -> Result<u32, Error> {
    span("start").await?;
    for k in 1..=3 {
        effect(k).await?;
        pause().await?;
    }
    span("end").await?;
    Ok(n)
}

#[workflow]
async fn never_runs() -> Result<(), Error> {
    Ok(())
}

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DB_URL")?;
    let mode = std::env::var("MODE")?;
    let jobs: u32 = env("JOBS", 100);
    let _ = PAUSE_MS.set(env("PAUSE_MS", 20));
    let cfg = DbosConfig::new("queue-worker")
        .with_database_url(&url)
        .with_executor_id(std::env::var("EXECUTOR").unwrap_or_else(|_| "local".into()))
        .with_liveness_timeout(Duration::from_millis(env("LIVENESS_MS", 30_000)));
    match mode.as_str() {
        "work" => {
            // The spans pool must exist before launch: recovery resumes workflows at once.
            let pool = if url.starts_with("sqlite") {
                let p = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(
                        url.parse::<sqlx::sqlite::SqliteConnectOptions>()?
                            .busy_timeout(Duration::from_secs(30)),
                    )
                    .await?;
                sqlx::raw_sql(DDL).execute(&p).await?;
                Pool::Sqlite(p)
            } else {
                let p = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(3)
                    .connect(&url)
                    .await?;
                sqlx::raw_sql(DDL).execute(&p).await?;
                Pool::Postgres(p)
            };
            let _ = POOL.set(pool);
            let rt = Runtime::launch(cfg).await?;
            loop {
                if done_jobs().await? >= i64::from(jobs) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            rt.shutdown().await;
        }
        "enqueue" => {
            let rt = Runtime::connect(cfg).await?;
            for i in 0..jobs {
                rt.enqueue(&WORK, job(i).with_id(format!("job-{i}")))
                    .await?;
            }
            rt.shutdown().await;
        }
        "dedup" => {
            let rt = Runtime::connect(cfg).await?;
            let tag = std::env::var("TAG")?;
            let mut tasks = Vec::new();
            for i in 0..25 {
                let rt = rt.clone();
                let id = format!("dedup-{tag}-{i}");
                tasks.push(tokio::spawn(async move {
                    rt.enqueue(&WORK, never_runs().with_id(id).with_dedup_id("same"))
                        .await
                        .map(|_| ())
                }));
            }
            let (mut ok, mut dup) = (0, 0);
            for t in tasks {
                match t.await? {
                    Ok(()) => ok += 1,
                    Err(Error::QueueDeduplicated { .. }) => dup += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            println!("enqueued {ok} deduplicated {dup}");
            rt.shutdown().await;
        }
        other => return Err(format!("unknown MODE {other}").into()),
    }
    Ok(())
}
