//! The worker the message and sleep tests kill and restart. `MODE` picks what it does:
//!
//! - `receive`: runs `RECEIVERS` workflows `rx-<i>`; each takes `PER_RECEIVER` numbered messages
//!   on topic `n` with `recv` and records each one through a `#[transaction]` in `received`.
//! - `sleep`: runs workflow `SLEEP_ID`, which sleeps `SLEEP_MS` durably and returns.
//! - `set_event`: runs workflow `SET_ID`, which sets event `x` to the wall-clock time just before
//!   the call, in microseconds.
//! - `send`: sends one message to `DEST` on topic `x` holding the wall-clock time just before the
//!   send, in microseconds, and exits.
//!
//! `DB_URL` names the database; for `receive` the test creates the `received` table first.
//! `UNLOAD_MS`, when set, unloads workflows that have waited that long (in milliseconds).
//! Each mode exits 0 once its workflows have finished.

use dbos_runtime::prelude::*;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Records one received message: exactly once, with the receiving process.
#[transaction]
async fn record_received(tx: &mut Tx, workflow_id: String, seq: i64) -> Result<(), Error> {
    tx.query("INSERT INTO received (workflow_id, seq, pid) VALUES ($1, $2, $3)")
        .bind(workflow_id)
        .bind(seq)
        .bind(i64::from(std::process::id()))
        .execute()
        .await?;
    Ok(())
}

#[workflow]
async fn receiver(count: u32) -> Result<u32, Error> {
    let id = DBOS::workflow_id()?;
    for k in 0..count {
        match DBOS::recv::<i64>("n", Duration::from_secs(90)).await? {
            Some(seq) => record_received(id.clone(), seq).await?,
            None => {
                return Err(Error::BadInputs(format!(
                    "{id}: message {k} did not come within 90 s"
                )))
            }
        }
    }
    Ok(count)
}

#[workflow]
async fn sleeper(ms: u64) -> Result<(), Error> {
    DBOS::sleep(Duration::from_millis(ms)).await
}

#[workflow]
async fn setter() -> Result<(), Error> {
    // Read in the body on purpose: the time right before the write is what the test measures.
    DBOS::set_event("x", &wall_us()).await
}

fn env(key: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(key).map_err(|_| format!("{key} is not set").into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = env("DB_URL")?;
    let mode = env("MODE")?;
    let mut cfg = DbosConfig::new("worker-messages").with_database_url(&url);
    if let Ok(ms) = std::env::var("UNLOAD_MS") {
        cfg = cfg.with_unload_waiting_after(Some(Duration::from_millis(ms.parse()?)));
    }
    DBOS::launch(cfg).await?;
    match mode.as_str() {
        "receive" => {
            let receivers: u32 = env("RECEIVERS")?.parse()?;
            let per: u32 = env("PER_RECEIVER")?.parse()?;
            let mut handles = Vec::new();
            for i in 0..receivers {
                handles.push(DBOS::start_workflow(receiver(per).with_id(format!("rx-{i}"))).await?);
            }
            for h in handles {
                let got = h.get_result().await?;
                if got != per {
                    return Err(format!("{} received {got} of {per}", h.workflow_id()).into());
                }
            }
            println!("all {receivers} receivers done");
        }
        "sleep" => {
            let ms: u64 = env("SLEEP_MS")?.parse()?;
            DBOS::start_workflow(sleeper(ms).with_id(env("SLEEP_ID")?))
                .await?
                .get_result()
                .await?;
            println!("slept");
        }
        "set_event" => {
            DBOS::start_workflow(setter().with_id(env("SET_ID")?))
                .await?
                .get_result()
                .await?;
        }
        "send" => {
            let sent_us = wall_us();
            DBOS::send(&env("DEST")?, &sent_us, "x").await?;
        }
        other => return Err(format!("unknown MODE {other:?}").into()),
    }
    DBOS::shutdown().await;
    Ok(())
}
