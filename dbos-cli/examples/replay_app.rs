//! An application for the `dbos workflow replay` test: `CODE=1` reserves then charges, `CODE=2`
//! (a "new build") charges first. `MODE=record` leaves workflow `rp-1` in flight (both steps
//! recorded, waiting for a message) and exits; any other run is a plain launch, which
//! `dbos workflow replay` turns into the replay check.

use dbos_runtime::prelude::*;

fn code() -> u8 {
    std::env::var("CODE")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

#[step]
async fn reserve() -> Result<u32, Error> {
    Ok(1)
}

#[step]
async fn charge() -> Result<u32, Error> {
    Ok(2)
}

#[workflow]
async fn order() -> Result<u32, Error> {
    let (a, b) = if code() == 1 {
        let a = reserve().await?;
        (a, charge().await?)
    } else {
        let b = charge().await?;
        (reserve().await?, b)
    };
    DBOS::recv::<u8>("ship", Duration::from_secs(600)).await?;
    Ok(a + b)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DB_URL")?;
    if std::env::var("MODE").as_deref() == Ok("exit-early") {
        // An app that exits before its launch (a bad argument, say).
        return Ok(());
    }
    DBOS::launch(
        DbosConfig::new("replay-app")
            .with_database_url(&url)
            .with_executor_id("replay-app"),
    )
    .await?;
    if std::env::var("MODE").as_deref() == Ok("record") {
        DBOS::start_workflow(order().with_id("rp-1")).await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while DBOS::get_workflow_steps("rp-1").await?.len() < 3 {
            if std::time::Instant::now() > deadline {
                return Err("rp-1 did not reach its recv".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    DBOS::shutdown().await;
    Ok(())
}
