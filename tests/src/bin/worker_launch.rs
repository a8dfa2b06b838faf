//! The configuration tests' launcher: builds `DbosConfig::from_env(APP_NAME)`, prints the URLs it
//! read, launches, runs one workflow and shuts down. Exits non-zero (with the error on stderr)
//! when launching fails.
//!
//! Env: `APP_NAME` (default `worker-launch`); `DBOS_DATABASE_URL` / `DBOS_SYSTEM_DATABASE_URL` as
//! the runtime reads them; optional `READY_FILE` + `GO_FILE`: create the first once started,
//! then wait for the second before launching, so that several launchers start at one instant.

use dbos_runtime::prelude::*;
use std::path::Path;

#[workflow]
async fn hello(who: String) -> Result<String, Error> {
    Ok(format!("hello {who}"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = std::env::var("APP_NAME").unwrap_or_else(|_| "worker-launch".into());
    let cfg = DbosConfig::from_env(app);
    println!("database_url\t{}", cfg.database_url);
    println!(
        "system_database_url\t{}",
        cfg.system_database_url.as_deref().unwrap_or("-")
    );

    if let (Ok(ready), Ok(go)) = (std::env::var("READY_FILE"), std::env::var("GO_FILE")) {
        std::fs::write(&ready, b"ready")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !Path::new(&go).exists() {
            if std::time::Instant::now() > deadline {
                return Err("no go signal within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    DBOS::launch(cfg).await?;
    let pid = std::process::id();
    let out = hello(pid.to_string())
        .with_id(format!("launch-{pid}"))
        .await?;
    println!("result\t{out}");
    DBOS::shutdown().await;
    Ok(())
}
