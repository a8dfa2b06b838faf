//! The management crash test's worker: forks and cancels workflows in a loop until it is
//! SIGKILLed, so the test can check that no fork or cancel is ever half done.
//!
//! Env: `DB_URL`, `MODE`:
//! - `seed`: launch, run workflow `orig` (two steps, an event, a step), shut down.
//! - `churn`: connect as a client (it runs nothing); for i = `START`, `START`+1, ...: fork
//!   `orig` from step 4 as `fork-<i>` (its three records before step 4 copied in the same
//!   transaction), cancel every other fork, and print `done <i>` after each.

use dbos_runtime::prelude::*;
use dbos_runtime::{ForkOptions, Runtime};

#[step]
async fn part(n: u32) -> Result<u32, Error> {
    Ok(n * 10)
}

#[workflow(name = "orig_workflow")]
async fn orig() -> Result<u32, Error> {
    let a = part(1).await?;
    DBOS::set_event("progress", &a).await?;
    let b = part(2).await?;
    let c = part(3).await?;
    Ok(a + b + c)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DB_URL")?;
    let cfg = DbosConfig::new("manage-crash")
        .with_database_url(&url)
        .with_executor_id("manage");
    match std::env::var("MODE")?.as_str() {
        "seed" => {
            let rt = Runtime::launch(cfg).await?;
            let h = rt.start_workflow(orig().with_id("orig")).await?;
            assert_eq!(h.get_result().await?, 60);
            rt.shutdown().await;
        }
        "churn" => {
            let rt = Runtime::connect(cfg).await?;
            let start: u64 = std::env::var("START")?.parse()?;
            for i in start.. {
                let id = format!("fork-{i}");
                rt.fork_workflow("orig", 4, ForkOptions::new().workflow_id(&id))
                    .await?;
                if i % 2 == 0 {
                    rt.cancel_workflow(&id).await?;
                }
                println!("done {i}");
            }
        }
        other => return Err(format!("unknown MODE {other}").into()),
    }
    Ok(())
}
