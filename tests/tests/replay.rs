//! The replay check (issue 14, part 3): recorded workflows re-run with today's code against
//! their checkpoints, nothing executed or written; a workflow whose code now takes another path
//! is named with the first operation that differs. On SQLite and Postgres, in process (the code
//! "version" is a switch), and through `DBOS__REPLAY_CHECK` on a launch in another process.

use dbos_runtime::prelude::*;
use dbos_runtime::{ReplayVerdict, Runtime, WorkflowFilter};
use dbos_tests::{both_backends, eventually, within, TestDb};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

const T: Duration = Duration::from_secs(20);

fn versions() -> &'static Mutex<HashMap<String, u8>> {
    static V: OnceLock<Mutex<HashMap<String, u8>>> = OnceLock::new();
    V.get_or_init(Default::default)
}

fn version(key: &str) -> u8 {
    versions()
        .lock()
        .expect("versions")
        .get(key)
        .copied()
        .unwrap_or(1)
}

fn set_version(key: &str, v: u8) {
    versions()
        .lock()
        .expect("versions")
        .insert(key.to_owned(), v);
}

fn runs() -> &'static Mutex<HashMap<String, u32>> {
    static R: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

#[step]
async fn reserve(key: String) -> Result<u32, Error> {
    *runs()
        .lock()
        .expect("runs")
        .entry(format!("{key}/reserve"))
        .or_default() += 1;
    Ok(1)
}

#[step]
async fn charge(key: String) -> Result<u32, Error> {
    *runs()
        .lock()
        .expect("runs")
        .entry(format!("{key}/charge"))
        .or_default() += 1;
    Ok(2)
}

#[step]
async fn audit(key: String) -> Result<u32, Error> {
    *runs()
        .lock()
        .expect("runs")
        .entry(format!("{key}/audit"))
        .or_default() += 1;
    Ok(0)
}

/// v1: reserve, charge, wait for "ship". v2: charge before reserve. v3: reserve only, no wait.
/// v4: reserve, charge, a new audit step, then the wait.
#[workflow]
async fn order(key: String) -> Result<u32, Error> {
    match version(&key) {
        1 => {
            let a = reserve(key.clone()).await?;
            let b = charge(key.clone()).await?;
            DBOS::recv::<u8>("ship", Duration::from_secs(60)).await?;
            Ok(a + b)
        }
        2 => {
            let b = charge(key.clone()).await?;
            let a = reserve(key.clone()).await?;
            DBOS::recv::<u8>("ship", Duration::from_secs(60)).await?;
            Ok(a + b)
        }
        3 => reserve(key).await,
        _ => {
            let a = reserve(key.clone()).await?;
            let b = charge(key.clone()).await?;
            audit(key.clone()).await?;
            DBOS::recv::<u8>("ship", Duration::from_secs(60)).await?;
            Ok(a + b)
        }
    }
}

/// Sleeps an hour.
#[workflow]
async fn napper() -> Result<(), Error> {
    DBOS::sleep(Duration::from_secs(3600)).await
}

async fn launch(db: &TestDb) -> Runtime {
    let cfg = db.config("replay-check").with_executor_id("replay-local");
    within("launch", Runtime::launch(cfg))
        .await
        .expect("launch")
}

both_backends! {
    async fn reordered_steps_are_named_and_unchanged_code_passes(db: TestDb) {
        let key = db.url.clone();
        set_version(&key, 1);
        let rt = launch(&db).await;
        rt.start_workflow(order(key.clone()).with_id("o-pending")).await.expect("start");
        let x = db.inspect().await;
        let waiting = format!(
            "SELECT COUNT(*) FROM {}operation_outputs WHERE workflow_uuid = 'o-pending' AND function_name = 'DBOS.sleep'",
            db.sys()
        );
        eventually(T, "o-pending waits", || async { x.scalar(&waiting).await == 1 }).await;
        let before = runs().lock().expect("runs").clone();

        // Unchanged code: consistent, having replayed both steps (and the recv's deadline).
        let pending = WorkflowFilter::default();
        let reports = rt.check_replay(&pending).await.expect("check");
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].workflow_id, "o-pending");
        assert!(matches!(reports[0].verdict, ReplayVerdict::Consistent { operations } if operations >= 2), "{reports:?}");

        // A new step before the waiting recv: a recovery would run it at 3 and then meet the
        // recv's recorded deadline at 4 under another name.
        set_version(&key, 4);
        let reports = rt.check_replay(&pending).await.expect("check");
        assert_eq!(
            reports[0].verdict,
            ReplayVerdict::Diverged {
                function_id: 3,
                recorded: "nothing (then DBOS.sleep at 4)".into(),
                current: "replay::audit".into(),
            }
        );

        // The two steps swapped: the check names the workflow and the first step.
        set_version(&key, 2);
        let reports = rt.check_replay(&pending).await.expect("check");
        assert_eq!(
            reports[0].verdict,
            ReplayVerdict::Diverged {
                function_id: 1,
                recorded: "replay::reserve".into(),
                current: "replay::charge".into(),
            }
        );
        // Nothing ran or was written by either check.
        assert_eq!(*runs().lock().expect("runs"), before, "a step ran during the check");
        let rows = format!("SELECT COUNT(*) FROM {}operation_outputs WHERE workflow_uuid = 'o-pending'", db.sys());
        assert_eq!(x.scalar(&rows).await, 3, "the check wrote a record");

        // A finished workflow checked against code that stops early: the unreached step.
        set_version(&key, 1);
        rt.send("o-pending", &1u8, "ship").await.expect("ship");
        let h = rt.retrieve_workflow::<u32, Error>("o-pending").await.expect("retrieve");
        assert_eq!(within("o-pending", h.get_result()).await.expect("done"), 3);
        let mut done = WorkflowFilter::default();
        done.statuses.push("SUCCESS".into());
        // Unchanged code replays the finished workflow, its recv's deadline included.
        let reports = rt.check_replay(&done).await.expect("check");
        assert!(matches!(reports[0].verdict, ReplayVerdict::Consistent { .. }), "{reports:?}");
        set_version(&key, 3);
        let reports = rt.check_replay(&done).await.expect("check");
        assert_eq!(
            reports[0].verdict,
            ReplayVerdict::Unreached { function_id: 2, recorded: "replay::charge".into() },
            "{reports:?}"
        );
        // A workflow in an hour-long durable sleep replays at once (the sleep is not waited).
        rt.start_workflow(napper().with_id("napper")).await.expect("start napper");
        let slept = format!("SELECT COUNT(*) FROM {}operation_outputs WHERE workflow_uuid = 'napper'", db.sys());
        eventually(T, "napper sleeps", || async { x.scalar(&slept).await == 1 }).await;
        let mut nap = WorkflowFilter::default();
        nap.workflow_ids.push("napper".into());
        let started = std::time::Instant::now();
        let reports = rt.check_replay(&nap).await.expect("check");
        assert!(matches!(reports[0].verdict, ReplayVerdict::Consistent { operations: 1 }), "{reports:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "the check waited out the sleep");
        rt.shutdown().await;
    }
}

/// Branches on the recorded clock and dice.
#[workflow]
async fn stamped() -> Result<(i64, u64, String), Error> {
    let now = DBOS::now().await?;
    let dice = DBOS::random().await?;
    let path = if dice % 2 == 0 { "even" } else { "odd" };
    DBOS::sleep(Duration::from_millis(1)).await?;
    Ok((now.timestamp_micros(), dice, path.to_owned()))
}

both_backends! {
    async fn recorded_time_and_randomness_replay_their_values(db: TestDb) {
        let rt = launch(&db).await;
        let h = rt.start_workflow(stamped().with_id("stamped")).await.expect("start");
        let first = within("stamped", h.get_result()).await.expect("stamped");
        // A fork from the sleep replays DBOS.now and DBOS.random: the same values, the same path.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let fork = rt
            .fork_workflow("stamped", 3, dbos_runtime::ForkOptions::new().workflow_id("stamped-fork"))
            .await
            .expect("fork");
        let f = rt.retrieve_workflow::<(i64, u64, String), Error>(&fork).await.expect("retrieve");
        assert_eq!(within("fork", f.get_result()).await.expect("fork"), first);
        let x = db.inspect().await;
        let names = x
            .rows(&format!("SELECT function_name FROM {}operation_outputs WHERE workflow_uuid = 'stamped' ORDER BY function_id", db.sys()))
            .await;
        let names: Vec<&str> = names.iter().filter_map(|r| r[0].as_deref()).collect();
        assert_eq!(names, ["DBOS.now", "DBOS.random", "DBOS.sleep"]);
        // Outside a workflow they are plain values.
        let a = rt.scope(DBOS::random()).await.expect("random");
        let b = rt.scope(DBOS::random()).await.expect("random");
        assert_ne!(a, b);
        rt.shutdown().await;
    }
}
