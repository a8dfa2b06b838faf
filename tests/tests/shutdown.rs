//! `shutdown()`: once it returns, nothing the runtime started changes the database; what it
//! cut short resumes at the next launch, exactly once.
//!
//! The worker (`worker_drain`) runs every background writer at once: recovery and the
//! dispatcher's claims of queued workflows, local starts, step checkpoints and transactions
//! (the SQLite group commit or the Postgres pool), events, messages. The scheduler's own case
//! is in `scheduler.rs`.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{both_backends, eventually, within, TestDb};
use std::process::Stdio;
use std::time::Instant;
use tokio::process::Command;

#[workflow]
async fn waits_for_a_message() -> Result<Option<String>, Error> {
    DBOS::recv("go", Duration::from_secs(120)).await
}

#[workflow]
async fn sleeps_long() -> Result<u32, Error> {
    DBOS::sleep(Duration::from_secs(120)).await?;
    Ok(7)
}

fn worker(db: &TestDb, mode: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker_drain"));
    cmd.env("DB_URL", &db.url)
        .env("MODE", mode)
        .env("RUST_LOG", "warn")
        .env_remove("DBOS__VMID")
        .env_remove("DBOS__APPVERSION")
        .kill_on_drop(true)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

async fn run_worker(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

both_backends! {
    async fn nothing_changes_after_shutdown_returns_and_the_next_launch_finishes_the_rest(db: TestDb) {
        let s = db.sys();
        let mut x = None;
        // Shut down 0-150 ms after launch: during recovery, the first claims, the first
        // checkpoints, and with hundreds of workflows mid-flight.
        for end_ms in [0, 2, 5, 10, 20, 40, 80, 150] {
            let mut seed = worker(&db, "seed");
            seed.env("SEED", "60");
            run_worker(seed, "seeding").await;
            let x = match &x {
                Some(x) => x,
                None => x.insert(db.inspect().await),
            };
            let pending = x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE status = 'PENDING'")).await;
            let mut drain = worker(&db, "drain");
            drain.env("END_MS", end_ms.to_string()).env("LINGER_MS", "1000");
            let text = run_worker(drain, "the draining worker").await;
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix("fingerprint "))
                .unwrap_or_else(|| panic!("the worker printed no fingerprint: {text}"));
            let (at, after) = line.split_once(" | ").expect("two fingerprints");
            assert_eq!(at, after, "the database changed after shutdown returned (END_MS {end_ms}, {pending} pending before launch): {text}");
        }
        // What each shutdown cut short, one more launch finishes: every workflow succeeds and
        // each transaction committed exactly once.
        run_worker(worker(&db, "finish"), "the finishing worker").await;
        let x = x.expect("seeded");
        let statuses = x
            .rows(&format!("SELECT status, COUNT(*) FROM {s}workflow_status GROUP BY status"))
            .await;
        assert!(
            statuses.iter().all(|r| r[0].as_deref() == Some("SUCCESS")),
            "every workflow finished: {statuses:?}"
        );
        let workflows = x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status")).await;
        let effects = x.scalar("SELECT COUNT(*) FROM effects").await;
        let distinct = x
            .scalar("SELECT COUNT(*) FROM (SELECT DISTINCT workflow_id, round FROM effects) d")
            .await;
        assert_eq!(effects, distinct, "a transaction committed twice");
        assert_eq!(effects, workflows * 3, "every round of every workflow committed its transaction");
        assert!(workflows >= 8 * 60, "every seeded workflow is there: {workflows}");
        println!("{:?}: 8 shutdowns under load, nothing changed after any returned; {workflows} workflows finished, {effects} transactions, each once", db.backend);
    }
}

both_backends! {
    async fn waits_end_at_shutdown_and_resume_at_the_next_launch(db: TestDb) {
        let config = || db.config("shutdown-waits").with_executor_id("waits");
        let rt = within("launch", Runtime::launch(config())).await.expect("launch");
        rt.start_workflow(waits_for_a_message().with_id("recv-1")).await.expect("start recv-1");
        rt.start_workflow(sleeps_long().with_id("sleep-1")).await.expect("start sleep-1");
        // Both are waiting once their deadlines are recorded (a DBOS.sleep row each).
        let x = db.inspect().await;
        let waiting = format!("SELECT COUNT(*) FROM {}operation_outputs WHERE function_name = 'DBOS.sleep'", db.sys());
        eventually(Duration::from_secs(20), "both workflows wait", || async { x.scalar(&waiting).await == 2 }).await;

        // The waits end at once: shutdown does not sit out its 10 s timeout.
        let started = Instant::now();
        rt.shutdown().await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "shutdown waited {took:?} for workflows that only wait");
        let after = rt.start_workflow(sleeps_long().with_id("sleep-2")).await;
        assert!(matches!(after, Err(Error::ShuttingDown)), "a start after shutdown: {after:?}");
        let statuses = x
            .rows(&format!("SELECT workflow_uuid, status FROM {}workflow_status ORDER BY workflow_uuid", db.sys()))
            .await;
        assert_eq!(
            statuses,
            vec![
                vec![Some("recv-1".to_owned()), Some("PENDING".to_owned())],
                vec![Some("sleep-1".to_owned()), Some("PENDING".to_owned())],
            ],
            "cut-short waits record no outcome"
        );

        // The next launch resumes both: the message arrives, the sleep keeps its recorded wake-up.
        let rt = within("relaunch", Runtime::launch(config())).await.expect("relaunch");
        rt.send("recv-1", &"now", "go").await.expect("send");
        let handle = rt.retrieve_workflow::<Option<String>, Error>("recv-1").await.expect("recv-1");
        assert_eq!(within("recv-1 finishes", handle.get_result()).await.expect("recv-1"), Some("now".to_owned()));
        assert_eq!(status_of(&rt, "sleep-1").await, "PENDING", "still sleeping toward its recorded wake-up");
        rt.shutdown().await;
    }
}

async fn status_of(rt: &Runtime, id: &str) -> String {
    rt.get_status(id)
        .await
        .expect("status")
        .expect("exists")
        .status
}
