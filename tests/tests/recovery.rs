//! Recovery at launch (issue 2, item 6), on SQLite and Postgres: a crash is simulated by
//! blocking a workflow inside a step, shutting its runtime down (which aborts it and leaves it
//! PENDING) and launching a new runtime on the same database.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{both_backends, eventually, Inspect, TestDb};
use std::future::IntoFuture;

const APP: &str = "recovery-tests";
const VERSION: &str = "recovery-1";
/// The longest any single wait in these tests may take.
const T: Duration = Duration::from_secs(15);

fn name(f: &str) -> String {
    format!("{}::{f}", module_path!())
}

use dbos_tests::probe;

async fn within<F: IntoFuture>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(T, fut.into_future())
        .await
        .unwrap_or_else(|_| panic!("timed out after {T:?}: {what}"))
}

fn config(db: &TestDb) -> DbosConfig {
    db.config(APP)
        .with_version(VERSION)
        .with_executor_id("rec-local")
        // A shutdown in these tests stands in for a crash: a workflow blocked in a step is cut
        // off at once rather than waited for.
        .with_shutdown_timeout(Duration::ZERO)
}

async fn launch(cfg: DbosConfig) -> Runtime {
    within("launch", Runtime::launch(cfg))
        .await
        .expect("launch the runtime")
}

fn cell(row: &[Option<String>], i: usize) -> &str {
    row[i].as_deref().unwrap_or("<NULL>")
}

/// `(status, recovery_attempts, executor_id, application_version, application_name)`.
async fn status(x: &Inspect, db: &TestDb, id: &str) -> Vec<String> {
    let s = db.sys();
    let rows = x
        .rows(&format!(
            "SELECT status, recovery_attempts, executor_id, application_version, application_name \
             FROM {s}workflow_status WHERE workflow_uuid = '{id}'"
        ))
        .await;
    assert_eq!(rows.len(), 1, "one row for {id}");
    rows[0]
        .iter()
        .map(|c| c.clone().unwrap_or_else(|| "<NULL>".into()))
        .collect()
}

/// `(function_id, function_name, output)` in order.
async fn steps(x: &Inspect, db: &TestDb, id: &str) -> Vec<(String, String, String)> {
    let s = db.sys();
    x.rows(&format!(
        "SELECT function_id, function_name, output FROM {s}operation_outputs \
         WHERE workflow_uuid = '{id}' ORDER BY function_id"
    ))
    .await
    .iter()
    .map(|r| {
        (
            cell(r, 0).to_owned(),
            cell(r, 1).to_owned(),
            cell(r, 2).to_owned(),
        )
    })
    .collect()
}

/// Counts its runs under `<key>/<label>` and returns a value no second run would return.
#[step]
async fn tally(key: String, label: String) -> Result<String, Error> {
    let n = probe::bump(&format!("{key}/{label}"));
    Ok(format!("{label}#{n}-{}", uuid::Uuid::new_v4()))
}

/// Counts its runs, then waits at gate `key`.
#[step]
async fn gated(key: String) -> Result<u32, Error> {
    let n = probe::bump(&format!("{key}/gated"));
    probe::pass(&key).await;
    Ok(n)
}

fn gated_runs(key: &str) -> u32 {
    probe::count(&format!("{key}/gated"))
}

async fn wait_gated(key: &str, runs: u32) {
    let k = format!("{key}/gated");
    eventually(
        T,
        &format!("the gated step to have run {runs} time(s)"),
        || async { probe::count(&k) == runs },
    )
    .await;
}

async fn start<Out, E>(rt: &Runtime, call: WorkflowCall<Out, E>)
where
    Out: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    E: dbos_runtime::WorkflowError + std::fmt::Debug,
{
    rt.scope(async {
        within("start", DBOS::start_workflow(call))
            .await
            .expect("start the workflow");
    })
    .await;
}

async fn result<Out>(rt: &Runtime, id: &str) -> Result<Out, Error>
where
    Out: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    rt.scope(async {
        let handle = DBOS::retrieve_workflow::<Out, Error>(id)
            .await
            .expect("retrieve the workflow");
        within(&format!("the result of {id}"), handle.get_result()).await
    })
    .await
}

// ---------------------------------------------------------------------------------------------

#[workflow]
async fn five_steps(key: String) -> Result<Vec<String>, Error> {
    let a = tally(key.clone(), "a".into()).await?;
    let b = tally(key.clone(), "b".into()).await?;
    let g = gated(key.clone()).await?;
    let c = tally(key.clone(), "c".into()).await?;
    let d = tally(key, "d".into()).await?;
    Ok(vec![a, b, g.to_string(), c, d])
}

both_backends! {
    async fn resumed_workflow_goes_on_from_its_first_unrecorded_step_without_rerunning_recorded_ones(db: TestDb) {
        let key = format!("{}/resume", db.url);
        let rt = launch(config(&db)).await;
        start(&rt, five_steps(key.clone()).with_id("five")).await;
        wait_gated(&key, 1).await;
        rt.shutdown().await;

        let x = db.inspect().await;
        let before = steps(&x, &db, "five").await;
        assert_eq!(before.len(), 2, "steps 1 and 2 recorded before the crash: {before:?}");
        assert_eq!(status(&x, &db, "five").await[..2], ["PENDING".to_owned(), "1".to_owned()]);

        probe::open(&key);
        let rt2 = launch(config(&db)).await;
        let out = result::<Vec<String>>(&rt2, "five").await.expect("the recovered workflow succeeds");
        let recorded_a: String = serde_json::from_str(&before[0].2).expect("a");
        let recorded_b: String = serde_json::from_str(&before[1].2).expect("b");
        assert_eq!(out[..3], [recorded_a, recorded_b, "2".to_owned()], "recorded outputs replayed; step 3 ran again");
        for (label, runs) in [("a", 1), ("b", 1), ("gated", 2), ("c", 1), ("d", 1)] {
            assert_eq!(probe::count(&format!("{key}/{label}")), runs, "runs of step {label}");
        }
        let after = steps(&x, &db, "five").await;
        let names: Vec<(&str, String)> = after.iter().map(|(n, f, _)| (n.as_str(), f.clone())).collect();
        assert_eq!(
            names,
            vec![("1", name("tally")), ("2", name("tally")), ("3", name("gated")), ("4", name("tally")), ("5", name("tally"))],
        );
        assert_eq!(after[..2], before[..], "rows 1 and 2 untouched");
        let st = status(&x, &db, "five").await;
        assert_eq!(st[..3], ["SUCCESS".to_owned(), "2".to_owned(), "rec-local".to_owned()], "one recovery counted");
        rt2.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------

#[workflow]
async fn stuck(key: String) -> Result<u32, Error> {
    gated(key).await
}

both_backends! {
    async fn recovery_attempts_are_counted_and_past_the_limit_the_workflow_is_set_aside(db: TestDb) {
        assert_eq!(DbosConfig::new("x").max_recovery_attempts, 100, "the default limit");
        let key = format!("{}/attempts", db.url);
        let mut cfg = config(&db);
        cfg.max_recovery_attempts = 2;

        let rt = launch(cfg.clone()).await;
        let x = db.inspect().await;
        start(&rt, stuck(key.clone()).with_id("stuck")).await;
        wait_gated(&key, 1).await;
        assert_eq!(status(&x, &db, "stuck").await[1], "1", "a direct start is attempt 1");
        rt.shutdown().await;

        // Two recoveries are allowed: each runs the workflow again and counts an attempt.
        for attempt in 2..=3 {
            let rt = launch(cfg.clone()).await;
            wait_gated(&key, attempt).await;
            let st = status(&x, &db, "stuck").await;
            assert_eq!(st[..2], ["PENDING".to_owned(), attempt.to_string()], "recovery {}", attempt - 1);
            rt.shutdown().await;
        }

        // The third recovery is past the limit: set aside, not run.
        let rt = launch(cfg.clone()).await;
        eventually(T, "the workflow to be set aside", || async {
            status(&x, &db, "stuck").await[0] == "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
        })
        .await;
        let s = db.sys();
        let row = &x
            .rows(&format!(
                "SELECT recovery_attempts, queue_name, completed_at FROM {s}workflow_status WHERE workflow_uuid = 'stuck'"
            ))
            .await[0];
        assert_eq!(cell(row, 0), "4");
        assert_eq!(row[1], None, "a dead-lettered workflow leaves the queue");
        assert!(row[2].is_some(), "completed_at is set");
        let err = result::<u32>(&rt, "stuck").await.expect_err("no result");
        assert!(matches!(err, Error::MaxRecoveryAttemptsExceeded(ref id) if id == "stuck"), "{err:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(gated_runs(&key), 3, "the set-aside workflow did not run");
        rt.shutdown().await;

        // And it is left alone from then on.
        probe::open(&key);
        let rt = launch(cfg).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(status(&x, &db, "stuck").await[..2], ["MAX_RECOVERY_ATTEMPTS_EXCEEDED".to_owned(), "4".to_owned()]);
        assert_eq!(gated_runs(&key), 3);
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------

#[step]
async fn first_path(key: String) -> Result<String, Error> {
    probe::bump(&format!("{key}/first"));
    Ok("first".into())
}

#[step]
async fn second_path(key: String) -> Result<String, Error> {
    probe::bump(&format!("{key}/second"));
    Ok("second".into())
}

#[workflow]
async fn fickle(key: String) -> Result<String, Error> {
    let took = if probe::count(&format!("{key}/switched")) == 0 {
        first_path(key.clone()).await?
    } else {
        second_path(key.clone()).await?
    };
    let n = gated(key).await?;
    Ok(format!("{took}{n}"))
}

both_backends! {
    async fn resumed_workflow_taking_another_step_fails_naming_both_steps(db: TestDb) {
        let key = format!("{}/fickle", db.url);
        let rt = launch(config(&db)).await;
        start(&rt, fickle(key.clone()).with_id("fickle")).await;
        wait_gated(&key, 1).await;
        rt.shutdown().await;

        probe::bump(&format!("{key}/switched"));
        probe::open(&key);
        let rt2 = launch(config(&db)).await;
        let err = result::<String>(&rt2, "fickle").await.expect_err("a non-deterministic workflow fails");
        let text = err.to_string();
        assert_eq!(err.kind(), "NonDeterministic", "{err:?}");
        assert!(text.contains(&name("first_path")) && text.contains(&name("second_path")), "both names: {text}");

        let x = db.inspect().await;
        assert_eq!(status(&x, &db, "fickle").await[0], "ERROR");
        let s = db.sys();
        let error = x.rows(&format!("SELECT error FROM {s}workflow_status WHERE workflow_uuid = 'fickle'")).await;
        let error: serde_json::Value = serde_json::from_str(cell(&error[0], 0)).expect("error JSON");
        assert_eq!(error["name"], "NonDeterministic");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(&name("first_path")) && message.contains(&name("second_path")), "{message}");
        assert_eq!(probe::count(&format!("{key}/second")), 0, "the other step's body never ran");
        assert_eq!(gated_runs(&key), 1, "nothing after the divergence ran");
        let recorded = steps(&x, &db, "fickle").await;
        assert_eq!(recorded, vec![("1".to_owned(), name("first_path"), "\"first\"".to_owned())], "no mixed records");
        rt2.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------

both_backends! {
    async fn only_this_executors_pending_workflows_of_this_version_and_app_are_recovered(db: TestDb) {
        let base = format!("{}/only-mine", db.url);
        let k = |which: &str| format!("{base}/{which}");
        let mine = config(&db);
        let variants = [
            (vec!["mine", "unclaimed"], mine.clone()),
            (vec!["other-executor"], mine.clone().with_executor_id("rec-other")),
            (vec!["other-version"], mine.clone().with_version("recovery-2")),
            (vec!["other-app"], DbosConfig { name: "another-app".into(), ..mine.clone() }),
        ];
        // Each runtime leaves its workflows PENDING mid-step.
        for (ids, cfg) in &variants {
            let rt = launch(cfg.clone()).await;
            for id in ids {
                start(&rt, stuck(k(id)).with_id(*id)).await;
                wait_gated(&k(id), 1).await;
            }
            rt.shutdown().await;
            if db.backend == dbos_tests::Backend::Postgres {
                // Each executor stands for a process still alive elsewhere: a shutdown hands
                // its work over to live processes (it expires its liveness record), so renew
                // the record; this test is about what a launch recovers by itself.
                let now = chrono::Utc::now().timestamp_millis();
                db.inspect().await.exec(&format!("UPDATE dbos.rs_executor_liveness SET last_seen_at = {now} WHERE executor_id = '{}'", cfg.executor_id)).await;
            }
        }
        let x = db.inspect().await;
        let s = db.sys();
        // A row no application has claimed yet (as DBOS tools may write) belongs to whoever recovers it.
        x.exec(&format!("UPDATE {s}workflow_status SET application_name = NULL WHERE workflow_uuid = 'unclaimed'")).await;
        let others = ["other-executor", "other-version", "other-app"];
        let mut before = Vec::new();
        for id in others {
            before.push(status(&x, &db, id).await);
        }

        for id in variants.iter().flat_map(|(ids, _)| ids) {
            probe::open(&k(id));
        }
        let rt = launch(mine).await;
        assert_eq!(result::<u32>(&rt, "mine").await.expect("mine is recovered"), 2);
        assert_eq!(result::<u32>(&rt, "unclaimed").await.expect("the unclaimed row is recovered"), 2);
        assert_eq!(status(&x, &db, "unclaimed").await[4], APP, "recovery claims it for this app");
        // Give a dispatcher pass (every second) the chance to do something wrong.
        tokio::time::sleep(Duration::from_millis(1300)).await;
        for (id, was) in others.iter().zip(&before) {
            assert_eq!(&status(&x, &db, id).await, was, "{id} is left PENDING as it was");
            assert_eq!(gated_runs(&k(id)), 1, "{id} did not run again");
            assert_eq!(was[0], "PENDING");
        }
        rt.shutdown().await;
    }
}
