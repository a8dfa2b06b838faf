//! Durable sleep (issue 4): the wake-up time is recorded, so a workflow killed mid-sleep and
//! recovered sleeps only the remainder; on SQLite and Postgres.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::within;
use dbos_tests::{both_backends, TestDb};
use std::future::IntoFuture;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::process::Command;

const APP: &str = "sleep-tests";
/// The longest any single wait in these tests may take.
const T: Duration = Duration::from_secs(20);

async fn launch(db: &TestDb) -> Runtime {
    let cfg = db
        .config(APP)
        .with_version("sleep-tests-1")
        .with_executor_id("sleep-local");
    within("launch", Runtime::launch(cfg))
        .await
        .expect("launch the runtime")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn sleeper(db: &TestDb) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker_messages"));
    cmd.env("DB_URL", &db.url)
        .env("MODE", "sleep")
        .env("SLEEP_ID", "nap")
        .env("SLEEP_MS", "3000")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null());
    cmd
}

both_backends! {
    async fn a_sleep_killed_after_one_second_finishes_two_seconds_after_the_restart(db: TestDb) {
        // Create the schema first, so the file exists to inspect.
        launch(&db).await.shutdown().await;
        let x = db.inspect().await;
        let s = db.sys();
        let mut child = sleeper(&db).spawn().expect("spawn the sleeper");
        let row = format!(
            "SELECT started_at_epoch_ms, output FROM {s}operation_outputs \
             WHERE workflow_uuid = 'nap' AND function_id = 1 AND function_name = 'DBOS.sleep'"
        );
        let deadline = Instant::now() + T;
        let recorded = loop {
            let rows = x.rows(&row).await;
            if let Some(r) = rows.into_iter().next() {
                break r;
            }
            assert!(Instant::now() < deadline, "the sleeper never recorded its sleep");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let began: i64 = recorded[0].as_deref().unwrap_or("0").parse().expect("started_at_epoch_ms");
        let wake: f64 = recorded[1].as_deref().unwrap_or("0").parse().expect("the wake-up in epoch seconds");
        assert_eq!((wake * 1000.0).round() as i64, began + 3000, "wake-up = start + 3 s, in epoch seconds");

        tokio::time::sleep(Duration::from_millis(u64::try_from(began + 1000 - now_ms()).unwrap_or(0))).await;
        child.start_kill().expect("SIGKILL the sleeper");
        let _ = child.wait().await;
        let restarted = now_ms();
        let status = within("the restarted sleeper", sleeper(&db).status()).await.expect("run the sleeper again");
        assert!(status.success(), "the restarted sleeper failed: {status}");

        let done = x
            .rows(&format!("SELECT status, completed_at, recovery_attempts FROM {s}workflow_status WHERE workflow_uuid = 'nap'"))
            .await;
        assert_eq!(done[0][0].as_deref(), Some("SUCCESS"));
        assert_eq!(done[0][2].as_deref(), Some("2"), "run once, recovered once");
        let finished: i64 = done[0][1].as_deref().unwrap_or("0").parse().expect("completed_at");
        let (total, after_restart) = (finished - began, finished - restarted);
        println!(
            "{:?}: slept 3 s, killed after {} ms, finished {after_restart} ms after the restart ({total} ms after the sleep began)",
            db.backend,
            restarted - began
        );
        assert!(total >= 3000, "woke before the recorded wake-up: {total} ms");
        assert!(total < 3700, "woke long after the recorded wake-up: {total} ms");
        assert!((1500..2600).contains(&after_restart), "slept about the 2 s that remained, not 3: {after_restart} ms");
        let sleeps = x
            .scalar(&format!("SELECT COUNT(*) FROM {s}operation_outputs WHERE workflow_uuid = 'nap'"))
            .await;
        assert_eq!(sleeps, 1, "the replay reused the recorded sleep");
    }
}

#[step]
async fn nap_in_step() -> Result<u32, Error> {
    DBOS::sleep(Duration::from_millis(50)).await?;
    Ok(1)
}

#[workflow]
async fn naps() -> Result<u32, Error> {
    DBOS::sleep(Duration::ZERO).await?;
    DBOS::sleep(Duration::from_millis(300)).await?;
    nap_in_step().await
}

both_backends! {
    async fn a_sleep_records_its_wake_up_and_a_zero_sleep_takes_no_position(db: TestDb) {
        let rt = launch(&db).await;
        let started = Instant::now();
        let before = now_ms();
        within("naps", rt.scope(naps().with_id("naps").into_future())).await.expect("naps");
        assert!(started.elapsed() >= Duration::from_millis(350), "both sleeps ran: {:?}", started.elapsed());
        let x = db.inspect().await;
        let rows = x
            .rows(&format!(
                "SELECT function_id, function_name, output, serialization, started_at_epoch_ms, completed_at_epoch_ms \
                 FROM {}operation_outputs WHERE workflow_uuid = 'naps' ORDER BY function_id",
                db.sys()
            ))
            .await;
        assert_eq!(rows.len(), 2, "the sleep and the step; sleep(0) and the sleep inside the step take no position: {rows:?}");
        assert_eq!((rows[0][0].as_deref(), rows[0][1].as_deref()), (Some("1"), Some("DBOS.sleep")));
        assert_eq!(rows[0][3].as_deref(), Some("portable_json"));
        let wake: f64 = rows[0][2].as_deref().unwrap_or("0").parse().expect("epoch seconds");
        let written: i64 = rows[0][4].as_deref().unwrap_or("0").parse().expect("started_at");
        let completed: i64 = rows[0][5].as_deref().unwrap_or("0").parse().expect("completed_at");
        assert!(written >= before, "written during the run");
        assert_eq!((wake * 1000.0).round() as i64, written + 300, "output = the wake-up in epoch seconds");
        assert_eq!(completed, written + 300, "completed_at_epoch_ms = the wake-up");
        assert_eq!(rows[1][0].as_deref(), Some("2"));
        // Outside a workflow it is a plain sleep.
        let started = Instant::now();
        rt.scope(DBOS::sleep(Duration::from_millis(100))).await.expect("sleep");
        assert!(started.elapsed() >= Duration::from_millis(100));
        rt.shutdown().await;
    }
}
