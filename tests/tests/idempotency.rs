//! Workflow IDs are idempotency keys (issue 2, item 7), on SQLite and Postgres: an existing ID
//! returns its workflow's result and never runs it again, however many starts race, from tasks
//! or from two processes; an ID taken by another function is `Error::WorkflowConflict`.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::within;
use dbos_tests::{both_backends, eventually, Inspect, TestDb};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::future::IntoFuture;
use std::sync::Arc;

const APP: &str = "idempotency-tests";
/// The longest any single wait in these tests may take.
const T: Duration = Duration::from_secs(20);

fn name(f: &str) -> String {
    format!("{}::{f}", module_path!())
}

use dbos_tests::probe;

async fn launch(db: &TestDb) -> Runtime {
    within("launch", Runtime::launch(db.config(APP)))
        .await
        .expect("launch the runtime")
}

fn cell(row: &[Option<String>], i: usize) -> &str {
    row[i].as_deref().unwrap_or("<NULL>")
}

/// `(status, name, inputs, recovery_attempts)` of `id`.
async fn row(x: &Inspect, db: &TestDb, id: &str) -> Vec<String> {
    let s = db.sys();
    let rows = x
        .rows(&format!(
            "SELECT status, name, inputs, recovery_attempts FROM {s}workflow_status WHERE workflow_uuid = '{id}'"
        ))
        .await;
    assert_eq!(rows.len(), 1, "one row for {id}");
    rows[0]
        .iter()
        .map(|c| c.clone().unwrap_or_else(|| "<NULL>".into()))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
enum AppError {
    #[error("boom {0}")]
    Boom(u32),
    #[error("framework: {0}")]
    Framework(String),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Framework(e.to_string())
    }
}

#[workflow]
async fn counted(key: String, n: u32) -> Result<String, Error> {
    probe::bump(&key);
    Ok(format!("n={n}"))
}

#[workflow]
async fn failing(key: String, n: u32) -> Result<String, AppError> {
    probe::bump(&key);
    Err(AppError::Boom(n))
}

both_backends! {
    async fn finished_workflow_id_returns_its_result_and_never_runs_again(db: TestDb) {
        let ok_key = format!("{}/ok", db.url);
        let err_key = format!("{}/err", db.url);
        let rt = launch(&db).await;
        rt.scope(async {
            assert_eq!(within("first", counted(ok_key.clone(), 1).with_id("done")).await.expect("first"), "n=1");
            assert_eq!(within("second", counted(ok_key.clone(), 2).with_id("done")).await.expect("second"), "n=1");
            let handle = DBOS::start_workflow(counted(ok_key.clone(), 3).with_id("done")).await.expect("start");
            assert_eq!(within("handle", handle.get_result()).await.expect("handle"), "n=1");

            assert_eq!(within("fail", failing(err_key.clone(), 1).with_id("failed")).await, Err(AppError::Boom(1)));
            assert_eq!(within("fail again", failing(err_key.clone(), 2).with_id("failed")).await, Err(AppError::Boom(1)));
        })
        .await;
        rt.shutdown().await;

        // After a restart the answer comes from the rows alone.
        let rt = launch(&db).await;
        rt.scope(async {
            assert_eq!(within("after restart", counted(ok_key.clone(), 4).with_id("done")).await.expect("ok"), "n=1");
            assert_eq!(within("fail after restart", failing(err_key.clone(), 4).with_id("failed")).await, Err(AppError::Boom(1)));
        })
        .await;
        rt.shutdown().await;

        assert_eq!(probe::count(&ok_key), 1, "the finished workflow ran once");
        assert_eq!(probe::count(&err_key), 1, "the failed workflow ran once");
        let x = db.inspect().await;
        let done = row(&x, &db, "done").await;
        assert_eq!(done[0], "SUCCESS");
        let inputs: serde_json::Value = serde_json::from_str(&done[2]).expect("inputs");
        assert_eq!(inputs["positionalArgs"][1], 1, "the first start's inputs stay");
        assert_eq!(row(&x, &db, "failed").await[0], "ERROR");
    }
}

#[step]
async fn gated(key: String) -> Result<u32, Error> {
    let n = probe::bump(&format!("{key}/gated"));
    probe::pass(&key).await;
    Ok(n)
}

#[workflow]
async fn slow(key: String, n: u32) -> Result<String, Error> {
    probe::bump(&format!("{key}/body"));
    gated(key).await?;
    Ok(format!("n={n}"))
}

both_backends! {
    async fn starting_a_running_workflow_id_joins_it_without_running_it_again(db: TestDb) {
        let key = format!("{}/running", db.url);
        let rt = launch(&db).await;
        rt.scope(async {
            let first = DBOS::start_workflow(slow(key.clone(), 1).with_id("running")).await.expect("start");
            let gated_key = format!("{key}/gated");
            eventually(T, "the first execution to be running", || async { probe::count(&gated_key) == 1 }).await;

            let second = within("second start", DBOS::start_workflow(slow(key.clone(), 2).with_id("running")))
                .await
                .expect("the second start returns a handle at once");
            assert_eq!(second.workflow_id(), "running");
            assert_eq!(second.get_status().await.expect("status").status, "PENDING");
            let retrieved = DBOS::retrieve_workflow::<String, Error>("running").await.expect("retrieve");

            probe::open(&key);
            for (what, h) in [("first", &first), ("second", &second), ("retrieved", &retrieved)] {
                assert_eq!(within(what, h.get_result()).await.expect(what), "n=1", "{what} handle");
            }
        })
        .await;
        assert_eq!(probe::count(&format!("{key}/body")), 1, "one execution");
        assert_eq!(probe::count(&format!("{key}/gated")), 1);
        let x = db.inspect().await;
        assert_eq!(row(&x, &db, "running").await[0], "SUCCESS");
        rt.shutdown().await;
    }
}

#[step]
async fn tag() -> Result<String, Error> {
    Ok(uuid::Uuid::new_v4().to_string())
}

#[workflow]
async fn popular(key: String, caller: u32) -> Result<String, Error> {
    probe::bump(&key);
    // Stay running while the other starts arrive.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = tag().await?;
    Ok(format!("caller {caller} tag {t}"))
}

both_backends! {
    async fn same_workflow_id_runs_once_under_50_concurrent_starts(db: TestDb) {
        const STARTS: usize = 50;
        let key = format!("{}/popular", db.url);
        let rt = launch(&db).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(STARTS));
        let tasks: Vec<_> = (0..STARTS)
            .map(|i| {
                let (rt, key, barrier) = (rt.clone(), key.clone(), barrier.clone());
                tokio::spawn(async move {
                    let rt2 = rt.clone();
                    rt2.scope(async move {
                        barrier.wait().await;
                        let call = popular(key, i as u32).with_id("popular");
                        // Half await the call, half start it and await the handle.
                        if i % 2 == 0 {
                            call.await
                        } else {
                            DBOS::start_workflow(call).await?.get_result().await
                        }
                    })
                    .await
                })
            })
            .collect();
        let mut results = HashSet::new();
        for t in tasks {
            let out = within("a racing start", t).await.expect("the task panicked");
            results.insert(out.expect("every start returns the one result"));
        }
        assert_eq!(results.len(), 1, "every start saw the same result: {results:?}");
        assert_eq!(probe::count(&key), 1, "the body ran once");

        let x = db.inspect().await;
        let r = row(&x, &db, "popular").await;
        assert_eq!((r[0].as_str(), r[3].as_str()), ("SUCCESS", "1"));
        let s = db.sys();
        let steps = x.rows(&format!("SELECT function_id, output FROM {s}operation_outputs WHERE workflow_uuid = 'popular'")).await;
        assert_eq!(steps.len(), 1, "its step was recorded once: {steps:?}");
        let only = results.into_iter().next().unwrap_or_default();
        assert!(only.ends_with(&serde_json::from_str::<String>(cell(&steps[0], 1)).expect("tag")), "{only}");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn same_workflow_id_runs_once_when_two_processes_each_start_it_50_times(db: TestDb) {
        // Migrate first and create the racers' side-effect table.
        launch(&db).await.shutdown().await;
        let x = db.inspect().await;
        x.exec("CREATE TABLE racer_runs (workflow_id TEXT NOT NULL, pid BIGINT NOT NULL)").await;

        let dir = std::env::temp_dir().join(format!("worker-racer-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("signal dir");
        let go = dir.join("go");
        let mut racers = Vec::new();
        for n in 0..2 {
            let ready = dir.join(format!("ready-{n}"));
            let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker_racer"))
                .env("DB_URL", &db.url)
                .env("WF_ID", "contested")
                .env("EXECUTOR", format!("racer-{n}"))
                .env("STARTS", "50")
                .env("READY_FILE", &ready)
                .env("GO_FILE", &go)
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn a racer");
            racers.push((ready, child));
        }
        eventually(T, "both racers to be launched", || {
            let all = racers.iter().all(|(ready, _)| ready.exists());
            async move { all }
        })
        .await;
        std::fs::write(&go, b"go").expect("go");

        let mut results: BTreeMap<String, usize> = BTreeMap::new();
        let mut pids = Vec::new();
        for (_, child) in racers {
            pids.push(child.id().unwrap_or(0));
            let out = within("a racer", child.wait_with_output()).await.expect("wait for a racer");
            assert!(out.status.success(), "a racer failed: {}", out.status);
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(r) = line.strip_prefix("result\t") {
                    *results.entry(r.to_owned()).or_default() += 1;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(results.values().sum::<usize>(), 100, "every start returned: {results:?}");
        assert_eq!(results.len(), 1, "all 100 starts saw one result: {results:?}");
        let runs = x.rows("SELECT pid FROM racer_runs WHERE workflow_id = 'contested'").await;
        assert_eq!(runs.len(), 1, "the body ran once across both processes: {runs:?}");
        let ran_in: u32 = cell(&runs[0], 0).parse().expect("pid");
        assert!(pids.contains(&ran_in), "it ran in one of the racers ({ran_in} in {pids:?})");
        let r = row(&x, &db, "contested").await;
        assert_eq!((r[0].as_str(), r[3].as_str()), ("SUCCESS", "1"));
    }
}

#[workflow]
async fn interloper(key: String) -> Result<String, Error> {
    probe::bump(&key);
    Ok("interloper ran".into())
}

both_backends! {
    async fn same_workflow_id_with_a_different_function_is_a_workflow_conflict(db: TestDb) {
        let key = format!("{}/owner", db.url);
        let other = format!("{}/interloper", db.url);
        let rt = launch(&db).await;
        rt.scope(async {
            within("owner", counted(key.clone(), 1).with_id("taken")).await.expect("owner");
            let expect_conflict = |e: Error| match e {
                Error::WorkflowConflict { id, existing, requested } => {
                    assert_eq!((id.as_str(), existing, requested), ("taken", name("counted"), name("interloper")));
                }
                other => panic!("expected WorkflowConflict, got {other:?}"),
            };
            expect_conflict(within("await", interloper(other.clone()).with_id("taken")).await.expect_err("conflict"));
            expect_conflict(
                within("start", DBOS::start_workflow(interloper(other.clone()).with_id("taken")))
                    .await
                    .expect_err("conflict"),
            );
        })
        .await;
        assert_eq!(probe::count(&other), 0, "the other function never ran");
        assert_eq!(probe::count(&key), 1);
        let x = db.inspect().await;
        let r = row(&x, &db, "taken").await;
        assert_eq!((r[0].as_str(), r[1].as_str()), ("SUCCESS", name("counted").as_str()), "the row is untouched");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn blank_workflow_id_is_rejected_and_records_nothing(db: TestDb) {
        let key = format!("{}/blank", db.url);
        let rt = launch(&db).await;
        for id in ["", "  \t"] {
            let err = within("blank id", rt.scope(counted(key.clone(), 1).with_id(id).into_future())).await;
            assert!(matches!(err, Err(Error::InvalidWorkflowId { .. })), "{id:?}: {err:?}");
        }
        assert_eq!(probe::count(&key), 0);
        let x = db.inspect().await;
        let s = db.sys();
        assert_eq!(x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status")).await, 0);
        rt.shutdown().await;
    }
}
