//! `shutdown()`: once it returns, nothing the runtime started changes the database; what it
//! cut short resumes at the next launch, exactly once.
//!
//! The worker (`worker_drain`) runs every background writer at once: recovery and the
//! dispatcher's claims of queued workflows, local starts, step checkpoints and transactions
//! (the SQLite group commit or the Postgres pool), events, messages. The scheduler's own case
//! is in `scheduler.rs`.

use dbos_tests::{both_backends, TestDb};
use std::process::Stdio;
use tokio::process::Command;

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
