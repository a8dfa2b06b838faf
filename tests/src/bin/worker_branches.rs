//! The worker the `DBOS::join` and `DBOS::select` tests kill and restart. `MODE` picks what it
//! runs; every execution appends what it did to the file `RUN_LOG`, one line per event, so the
//! test sees what ran in which process.
//!
//! - `join`: workflow `WF_ID` joins ten branches; branch `i` runs step `work(i, 0)` and, for
//!   even `i`, then `work(10·i, 1)`; after the join one more step `work(99, 2)`. A layer-0 step
//!   with `i ≥ 5` waits until the file `GATE` exists, so the test can kill the process with
//!   half the branches done. Prints the outputs as JSON.
//! - `select`: workflows `race-0` ... `race-<RACES-1>`; each selects between `recv("pay")` and
//!   a durable sleep of `SLEEP_MS`, logs its decision from the workflow body (so every
//!   execution that gets past the select logs it), then runs one step. With
//!   `DIE_AFTER_DECIDING=<dir>` the process SIGKILLs itself right after each race's first
//!   decision (a marker file in `<dir>` says which races did).
//!
//! Exits 0 once its workflows have finished.

use dbos_runtime::prelude::*;
use std::io::Write;

fn env(key: &str) -> Result<String, Error> {
    std::env::var(key).map_err(|_| Error::Config(format!("{key} is not set")))
}

/// Appends one line to the run log.
fn log(line: &str) -> Result<(), Error> {
    let path = env("RUN_LOG")?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::Config(format!("open {path}: {e}")))?;
    f.write_all(format!("{line} {}\n", std::process::id()).as_bytes())
        .map_err(|e| Error::Config(format!("write {path}: {e}")))
}

#[step]
async fn work(i: u32, layer: u32) -> Result<u32, Error> {
    log(&format!("work {layer} {i}"))?;
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..40))).await;
    if layer == 0 && i >= 5 {
        let gate = env("GATE")?;
        while !std::path::Path::new(&gate).exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(i * 10 + layer)
}

#[workflow]
async fn fan() -> Result<Vec<u32>, Error> {
    let outputs = DBOS::join_all((0..10u32).map(|i| async move {
        let a = work(i, 0).await?;
        if i.is_multiple_of(2) {
            work(a, 1).await
        } else {
            Ok(a)
        }
    }))
    .await?;
    let mut all = outputs.into_iter().collect::<Result<Vec<u32>, Error>>()?;
    all.push(work(99, 2).await?);
    Ok(all)
}

#[step]
async fn settle(outcome: String) -> Result<(), Error> {
    log(&format!("settle {outcome}"))
}

#[workflow]
async fn race(sleep_ms: u64) -> Result<String, Error> {
    let id = DBOS::workflow_id()?;
    let outcome = match DBOS::select(
        DBOS::recv::<u64>("pay", Duration::from_secs(3600)),
        DBOS::sleep(Duration::from_millis(sleep_ms)),
    )
    .await?
    {
        Either::Left(paid) => match paid? {
            Some(amount) => format!("paid-{amount}"),
            None => return Err(Error::BadInputs("recv timed out after an hour".into())),
        },
        Either::Right(slept) => {
            slept?;
            "timeout".to_owned()
        }
    };
    // In the body on purpose: every execution that gets past the select says what it took.
    log(&format!("decided {id} {outcome}"))?;
    // The test's crash switch, deliberately outside any step.
    #[allow_nondeterminism]
    if let Ok(dir) = std::env::var("DIE_AFTER_DECIDING") {
        // Once per race: the process dies right after the select decided.
        let marker = std::path::Path::new(&dir).join(format!("died-{id}"));
        if !marker.exists() {
            std::fs::write(&marker, b"").map_err(|e| Error::Config(format!("marker: {e}")))?;
            // SAFETY: kill(2) on our own pid with a constant signal has no memory effects.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
    settle(outcome.clone()).await?;
    Ok(outcome)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = env("DB_URL")?;
    let mode = env("MODE")?;
    DBOS::launch(
        DbosConfig::new("worker-branches")
            .with_database_url(&url)
            .with_version("worker-branches-1"),
    )
    .await?;
    match mode.as_str() {
        "join" => {
            let out = DBOS::start_workflow(fan().with_id(env("WF_ID")?))
                .await?
                .get_result()
                .await?;
            println!("{}", serde_json::to_string(&out)?);
        }
        "select" => {
            let races: u32 = env("RACES")?.parse()?;
            let sleep_ms: u64 = env("SLEEP_MS")?.parse()?;
            let mut handles = Vec::new();
            for k in 0..races {
                let call = race(sleep_ms).with_id(format!("race-{k}"));
                handles.push(DBOS::start_workflow(call).await?);
            }
            for h in handles {
                h.get_result().await?;
            }
        }
        other => return Err(format!("unknown MODE {other:?}").into()),
    }
    DBOS::shutdown().await;
    Ok(())
}
