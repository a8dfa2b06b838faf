//! The console test's process: a launched runtime with the admin server (and its console) on
//! a free port behind `TOKEN`, with a few workflows in every state: one that succeeded, one
//! that failed at its second step, one parked in `recv`, and a parent waiting for its parked
//! child. Prints `admin <address>` once they are all there, then serves until killed.
//!
//! Env: `DB_URL`, `TOKEN`.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;

#[step]
async fn console_step(n: u32) -> Result<u32, Error> {
    // Long enough to show as a bar on the console's timeline.
    tokio::time::sleep(Duration::from_millis(40)).await;
    Ok(n + 1)
}

#[step]
async fn console_charge(amount: u32) -> Result<u32, Error> {
    tokio::time::sleep(Duration::from_millis(25)).await;
    Err(Error::InvalidArgument(format!(
        "card declined for {amount}"
    )))
}

#[workflow(name = "console_ok")]
async fn console_ok() -> Result<u32, Error> {
    let a = console_step(1).await?;
    let b = console_step(a).await?;
    DBOS::set_event("total", &b).await?;
    Ok(b)
}

#[workflow(name = "console_fails")]
async fn console_fails() -> Result<u32, Error> {
    let a = console_step(10).await?;
    console_charge(a).await
}

#[workflow(name = "console_parked")]
async fn console_parked() -> Result<Option<String>, Error> {
    DBOS::recv("go", Duration::from_secs(600)).await
}

#[workflow(name = "console_parent")]
async fn console_parent() -> Result<Option<String>, Error> {
    let child = DBOS::start_workflow(console_parked()).await?;
    child.get_result().await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = DbosConfig::new("console-app")
        .with_database_url(std::env::var("DB_URL")?)
        .with_executor_id("console")
        .with_version("1.0")
        .with_admin_server(0)
        .with_admin_token(std::env::var("TOKEN")?);
    let rt = Runtime::launch(cfg).await?;
    rt.start_workflow(console_ok().with_id("ok-1"))
        .await?
        .get_result()
        .await?;
    let failed = rt
        .start_workflow(console_fails().with_id("fails-1"))
        .await?;
    assert!(failed.get_result().await.is_err());
    rt.start_workflow(console_parked().with_id("parked-1"))
        .await?;
    rt.start_workflow(console_parent().with_id("parent-1"))
        .await?;
    rt.send("ok-1", &"thanks", "note").await?;
    // The parent starts its child in its own time: be ready only once the child exists.
    while !rt.workflow_exists("parent-1-1").await? {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addr = rt.admin_address().ok_or("no admin server")?;
    println!("admin {addr}");
    std::future::pending::<()>().await;
    Ok(())
}
