//! The shutdown test's worker: many workflows writing at once (step checkpoints, transactions,
//! events, messages: the SQLite group commit or the Postgres pool), queued workflows claimed by
//! the dispatcher, and new starts, all in flight while `DBOS::shutdown` runs. Once shutdown has
//! returned it reads a fingerprint of every table the runtime writes, waits, and reads it again:
//! nothing may change.
//!
//! Env: `DB_URL`, `MODE`:
//! - `seed`: launch, start `SEED` workflows and exit at once without shutting down (as a crash
//!   would), leaving most of them `PENDING` for the next launch to recover and dispatch.
//! - `drain`: launch (recovery queues the seeded workflows, the dispatcher claims and runs them)
//!   while 8 tasks start new workflows without pause; shut down `END_MS` after launch, then
//!   print `fingerprint <at shutdown> | <after LINGER_MS>`.
//! - `finish`: launch and wait until no workflow is unfinished, then shut down.

use dbos_runtime::prelude::*;
use std::sync::OnceLock;

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Rounds of (step, transaction, event, message) per workflow.
const ROUNDS: i32 = 3;

const DDL: &str =
    "CREATE TABLE IF NOT EXISTS effects (workflow_id TEXT NOT NULL, round INTEGER NOT NULL)";

#[step]
async fn compute(round: i32) -> Result<i32, Error> {
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..3))).await;
    Ok(round * 2)
}

#[transaction]
async fn record_effect(tx: &mut Tx, workflow_id: String, round: i32) -> Result<(), Error> {
    tx.query("INSERT INTO effects (workflow_id, round) VALUES ($1, $2)")
        .bind(workflow_id)
        .bind(round)
        .execute()
        .await?;
    Ok(())
}

#[workflow]
async fn churn(n: u32) -> Result<i32, Error> {
    let id = DBOS::workflow_id()?;
    let mut total = 0;
    for round in 0..ROUNDS {
        total += compute(round).await?;
        record_effect(id.clone(), round).await?;
        DBOS::set_event("progress", &round).await?;
        DBOS::send(&id, &(n, round), "self").await?;
        let got: Option<(u32, i32)> = DBOS::recv("self", Duration::from_secs(30)).await?;
        if got != Some((n, round)) {
            return Err(Error::BadInputs(format!("round {round}: received {got:?}")));
        }
    }
    Ok(total)
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

async fn scalar(sql: &str) -> Result<i64, Box<dyn std::error::Error>> {
    Ok(match POOL.get().ok_or(Error::NotLaunched)? {
        Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
        Pool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
    })
}

/// Row counts and sums of every table the runtime writes, and of the app's own table.
async fn fingerprint(s: &str) -> Result<String, Box<dyn std::error::Error>> {
    let queries = [
        format!("SELECT COUNT(*) FROM {s}workflow_status"),
        format!("SELECT CAST(COALESCE(SUM(updated_at), 0) AS BIGINT) FROM {s}workflow_status"),
        format!(
            "SELECT CAST(COALESCE(SUM(recovery_attempts), 0) AS BIGINT) FROM {s}workflow_status"
        ),
        format!("SELECT COUNT(*) FROM {s}workflow_status WHERE status = 'SUCCESS'"),
        format!("SELECT COUNT(*) FROM {s}workflow_status WHERE status = 'ENQUEUED'"),
        format!("SELECT COUNT(*) FROM {s}operation_outputs"),
        format!("SELECT COUNT(*) FROM {s}notifications"),
        format!("SELECT COUNT(*) FROM {s}notifications WHERE consumed"),
        format!("SELECT COUNT(*) FROM {s}workflow_events"),
        "SELECT COUNT(*) FROM effects".to_owned(),
    ];
    let mut out = Vec::new();
    for q in &queries {
        out.push(scalar(q).await?.to_string());
    }
    Ok(out.join(","))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let url = std::env::var("DB_URL")?;
    let mode = std::env::var("MODE")?;
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
            .max_connections(2)
            .connect(&url)
            .await?;
        sqlx::query(DDL).execute(&p).await?;
        Pool::Postgres(p)
    };
    let _ = POOL.set(pool);
    let s = if url.starts_with("sqlite") {
        ""
    } else {
        "dbos."
    };
    DBOS::launch(DbosConfig::new("worker-drain").with_database_url(&url)).await?;
    let launched = tokio::time::Instant::now();
    match mode.as_str() {
        "seed" => {
            let seed: u32 = env_or("SEED", 100)?;
            for n in 0..seed {
                DBOS::start_workflow(churn(n)).await?;
            }
            std::process::exit(0);
        }
        "drain" => {
            let end_ms: u64 = env_or("END_MS", 0)?;
            let linger_ms: u64 = env_or("LINGER_MS", 1500)?;
            for task in 0..8u32 {
                tokio::spawn(async move {
                    let mut n = 1_000_000 * (task + 1);
                    // Ends when a start is refused: shutdown has begun.
                    while DBOS::start_workflow(churn(n)).await.is_ok() {
                        n += 1;
                    }
                });
            }
            tokio::time::sleep_until(launched + Duration::from_millis(end_ms)).await;
            DBOS::shutdown().await;
            let stopped_ms = chrono::Utc::now().timestamp_millis();
            let at_shutdown = fingerprint(s).await?;
            tokio::time::sleep(Duration::from_millis(linger_ms)).await;
            let after = fingerprint(s).await?;
            println!("fingerprint {at_shutdown} | {after}");
            if at_shutdown != after {
                let sql = format!("SELECT workflow_uuid || ' ' || status || ' ' || CAST(created_at AS TEXT) || ' ' || CAST(updated_at AS TEXT) FROM {s}workflow_status WHERE updated_at >= {}", stopped_ms - 3000);
                let rows: Vec<String> = match POOL.get().ok_or(Error::NotLaunched)? {
                    Pool::Sqlite(p) => sqlx::query_scalar(&sql).fetch_all(p).await?,
                    Pool::Postgres(p) => sqlx::query_scalar(&sql).fetch_all(p).await?,
                };
                println!("stopped at {stopped_ms}; rows updated in the last 3 s: {rows:?}");
            }
        }
        "finish" => {
            let unfinished = format!(
                "SELECT COUNT(*) FROM {s}workflow_status WHERE status NOT IN ('SUCCESS', 'ERROR')"
            );
            let deadline = launched + Duration::from_secs(60);
            while scalar(&unfinished).await? > 0 {
                if tokio::time::Instant::now() > deadline {
                    return Err("workflows still unfinished after 60 s".into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            DBOS::shutdown().await;
        }
        other => return Err(format!("unknown MODE {other:?}").into()),
    }
    Ok(())
}
