//! Workflows and steps (issue 2, item 4 and 8): steps recorded at positions 1.., replayed after
//! a crash, plain calls outside a workflow, retries with backoff, child workflows, portable JSON
//! (SYSDB.md §5) and a workflow's own error type, on SQLite and Postgres.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{both_backends, eventually, Inspect, TestDb};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

const APP: &str = "wf-tests";
const VERSION: &str = "wf-tests-1";
/// The longest any single wait in these tests may take.
const T: Duration = Duration::from_secs(15);

/// Registered names are the Rust path: this test crate is `workflows`.
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
        .with_executor_id("wf-local")
        // A shutdown in these tests stands in for a crash: a workflow blocked in a step is cut
        // off at once rather than waited for.
        .with_shutdown_timeout(Duration::ZERO)
}

async fn launch(db: &TestDb) -> Runtime {
    within("launch", Runtime::launch(config(db)))
        .await
        .expect("launch the runtime")
}

fn cell(row: &[Option<String>], i: usize) -> &str {
    row[i].as_deref().unwrap_or("<NULL>")
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The stored text is compact JSON (as `serde_json::to_string` writes): same length as the
/// compact form of its value, whatever the key order.
fn assert_compact(text: &str) {
    let compact = serde_json::to_string(&parse(text)).expect("re-serialize");
    assert_eq!(text.len(), compact.len(), "not compact JSON: {text}");
}

async fn workflow_row(x: &Inspect, db: &TestDb, id: &str) -> Vec<Option<String>> {
    let s = db.sys();
    let rows = x
        .rows(&format!(
            "SELECT status, name, inputs, output, error, serialization, executor_id, application_version, \
             application_name, recovery_attempts, queue_name, parent_workflow_id \
             FROM {s}workflow_status WHERE workflow_uuid = '{id}'"
        ))
        .await;
    assert_eq!(rows.len(), 1, "one workflow_status row for {id}");
    rows.into_iter().next().unwrap_or_default()
}

/// `(function_id, function_name, output, error, child_workflow_id, serialization)` by position.
async fn step_rows(x: &Inspect, db: &TestDb, id: &str) -> Vec<Vec<Option<String>>> {
    let s = db.sys();
    x.rows(&format!(
        "SELECT function_id, function_name, output, error, child_workflow_id, serialization \
         FROM {s}operation_outputs WHERE workflow_uuid = '{id}' ORDER BY function_id"
    ))
    .await
}

/// A user error type: serde, `Display`, and `From<dbos_runtime::Error>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
enum AppError {
    #[error("out of stock: {0}")]
    OutOfStock(String),
    #[error("attempt {0} failed")]
    Flaky(u32),
    #[error("framework: {0}")]
    Framework(String),
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Framework(e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Steps recorded with positions.

#[step]
async fn add_one(x: i64) -> Result<i64, Error> {
    Ok(x + 1)
}

#[step]
async fn shout(s: String) -> Result<String, Error> {
    Ok(s.to_uppercase())
}

#[step]
async fn nothing() -> Result<(), Error> {
    Ok(())
}

#[workflow]
async fn four_steps(x: i64) -> Result<String, Error> {
    let a = add_one(x).await?;
    let b = shout(format!("n{a}")).await?;
    nothing().await?;
    let c = add_one(a).await?;
    Ok(format!("{b}-{c}"))
}

both_backends! {
    async fn steps_are_recorded_in_order_from_position_one_with_name_output_and_times(db: TestDb) {
        let rt = launch(&db).await;
        let before = chrono::Utc::now().timestamp_millis();
        let out = within("four_steps", rt.scope(four_steps(41).with_id("four").into_future())).await;
        let after = chrono::Utc::now().timestamp_millis();
        assert_eq!(out.expect("four_steps succeeds"), "N42-43");

        let x = db.inspect().await;
        let s = db.sys();
        let steps = step_rows(&x, &db, "four").await;
        let got: Vec<(String, String, String)> = steps
            .iter()
            .map(|r| (cell(r, 0).to_owned(), cell(r, 1).to_owned(), cell(r, 2).to_owned()))
            .collect();
        let want = vec![
            ("1".to_owned(), name("add_one"), "42".to_owned()),
            ("2".to_owned(), name("shout"), "\"N42\"".to_owned()),
            ("3".to_owned(), name("nothing"), "null".to_owned()),
            ("4".to_owned(), name("add_one"), "43".to_owned()),
        ];
        assert_eq!(got, want, "positions 1..4, each step's name and JSON output");
        for r in &steps {
            assert_eq!(r[3], None, "no error on a successful step: {r:?}");
            assert_eq!(r[4], None, "no child on a step: {r:?}");
            assert_eq!(cell(r, 5), "portable_json", "{r:?}");
        }
        let times = x
            .rows(&format!(
                "SELECT started_at_epoch_ms, completed_at_epoch_ms, application_name \
                 FROM {s}operation_outputs WHERE workflow_uuid = 'four' ORDER BY function_id"
            ))
            .await;
        for t in &times {
            let started: i64 = cell(t, 0).parse().expect("started_at_epoch_ms is set");
            let completed: i64 = cell(t, 1).parse().expect("completed_at_epoch_ms is set");
            assert!(before <= started && started <= completed && completed <= after, "times {t:?} within [{before}, {after}]");
            assert_eq!(cell(t, 2), APP, "application_name on the step row");
        }

        let w = workflow_row(&x, &db, "four").await;
        assert_eq!(cell(&w, 0), "SUCCESS");
        assert_eq!(cell(&w, 1), name("four_steps"));
        assert_eq!(cell(&w, 3), "\"N42-43\"");
        assert_eq!(cell(&w, 6), "wf-local", "executor_id");
        assert_eq!(cell(&w, 7), VERSION, "application_version");
        assert_eq!(cell(&w, 8), APP, "application_name");
        assert_eq!(cell(&w, 9), "1", "a direct start counts one attempt");
        assert_eq!(w[10], None, "a direct start has no queue");
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Replay: recorded outputs and errors come back after a crash; recorded steps do not run again.

#[step]
async fn fresh_token(key: String) -> Result<String, Error> {
    probe::bump(&format!("{key}/token"));
    Ok(uuid::Uuid::new_v4().to_string())
}

#[step]
async fn refuse(key: String) -> Result<u32, AppError> {
    probe::bump(&format!("{key}/refuse"));
    Err(AppError::OutOfStock(uuid::Uuid::new_v4().to_string()))
}

/// Counts its runs, then waits at gate `key`: a workflow blocked here is "mid-step".
#[step]
async fn gated(key: String) -> Result<u32, Error> {
    let n = probe::bump(&format!("{key}/gated"));
    probe::pass(&key).await;
    Ok(n)
}

#[workflow]
async fn replayed(key: String) -> Result<String, AppError> {
    let token = fresh_token(key.clone()).await?;
    let refused = match refuse(key.clone()).await {
        Err(e) => e.to_string(),
        Ok(n) => format!("accepted {n}"),
    };
    let n = gated(key).await?;
    Ok(format!("{token}|{refused}|{n}"))
}

both_backends! {
    async fn recorded_step_outputs_and_errors_are_replayed_after_a_crash_not_rerun(db: TestDb) {
        let key = format!("{}/replay", db.url);
        let rt = launch(&db).await;
        rt.scope(async {
            DBOS::start_workflow(replayed(key.clone()).with_id("replay")).await.expect("start");
        })
        .await;
        let gated_key = format!("{key}/gated");
        eventually(T, "the workflow reaches its third step", || async { probe::count(&gated_key) == 1 }).await;
        rt.shutdown().await;

        let x = db.inspect().await;
        let before = step_rows(&x, &db, "replay").await;
        assert_eq!(before.len(), 2, "two steps recorded before the crash: {before:?}");
        assert_eq!(cell(&workflow_row(&x, &db, "replay").await, 0), "PENDING", "shutdown leaves it PENDING");
        let token: String = serde_json::from_str(cell(&before[0], 2)).expect("token JSON");
        let error = parse(cell(&before[1], 3));
        let refused_with = error["data"]["OutOfStock"].as_str().expect("recorded OutOfStock").to_owned();

        probe::open(&key);
        let rt2 = launch(&db).await;
        let out = within("the recovered workflow", rt2.scope(async {
            DBOS::retrieve_workflow::<String, AppError>("replay").await.expect("retrieve").get_result().await
        }))
        .await;
        assert_eq!(
            out.expect("the workflow succeeds after recovery"),
            format!("{token}|out of stock: {refused_with}|2"),
            "the first run's output and error are replayed; the unrecorded step ran again"
        );
        assert_eq!(probe::count(&format!("{key}/token")), 1, "a recorded output is not recomputed");
        assert_eq!(probe::count(&format!("{key}/refuse")), 1, "a recorded error is not recomputed");
        let after = step_rows(&x, &db, "replay").await;
        assert_eq!(after.len(), 3);
        assert_eq!(after[..2], before[..], "recorded rows are final");
        assert_eq!(cell(&workflow_row(&x, &db, "replay").await, 0), "SUCCESS");
        rt2.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Steps outside a workflow, and inside a step, are plain calls.

#[step]
async fn outer_step(key: String) -> Result<i64, Error> {
    probe::bump(&key);
    let inner = add_one(1).await?;
    Ok(inner * 10)
}

#[workflow]
async fn nests(key: String) -> Result<i64, Error> {
    outer_step(key).await
}

#[tokio::test]
async fn step_called_without_any_runtime_runs_as_a_plain_call() {
    let out = within("a plain step", add_one(1)).await;
    assert_eq!(out.expect("a step outside a workflow simply runs"), 2);
}

both_backends! {
    async fn a_step_outside_a_workflow_or_inside_a_step_records_nothing(db: TestDb) {
        let key = format!("{}/plain", db.url);
        let rt = launch(&db).await;
        let x = db.inspect().await;
        let s = db.sys();
        let out = within("plain step", rt.scope(outer_step(key.clone()))).await;
        assert_eq!(out.expect("plain call"), 20);
        assert_eq!(probe::count(&key), 1);
        assert_eq!(x.scalar(&format!("SELECT COUNT(*) FROM {s}operation_outputs")).await, 0, "no step rows");
        assert_eq!(x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status")).await, 0, "no workflow rows");

        let out = within("nests", rt.scope(nests(key.clone()).with_id("nests").into_future())).await;
        assert_eq!(out.expect("nests"), 20);
        let steps = step_rows(&x, &db, "nests").await;
        assert_eq!(steps.len(), 1, "the inner step is part of the outer one: {steps:?}");
        assert_eq!((cell(&steps[0], 0), cell(&steps[0], 1), cell(&steps[0], 2)), ("1", name("outer_step").as_str(), "20"));
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Retries with exponential backoff; the final error is recorded.

fn attempts() -> &'static Mutex<HashMap<String, Vec<Instant>>> {
    static A: OnceLock<Mutex<HashMap<String, Vec<Instant>>>> = OnceLock::new();
    A.get_or_init(Default::default)
}

/// Records an attempt of `key`; returns its number (1-based).
fn attempt(key: &str) -> u32 {
    let mut a = attempts().lock().expect("attempts lock");
    let v = a.entry(key.to_owned()).or_default();
    v.push(Instant::now());
    v.len() as u32
}

fn gaps(key: &str) -> Vec<Duration> {
    let a = attempts().lock().expect("attempts lock");
    let v = a.get(key).cloned().unwrap_or_default();
    v.windows(2).map(|w| w[1] - w[0]).collect()
}

#[step(max_attempts = 3, interval = "50ms", backoff = 2.0)]
async fn third_time_lucky(key: String) -> Result<u32, AppError> {
    let n = attempt(&key);
    if n < 3 {
        Err(AppError::Flaky(n))
    } else {
        Ok(n)
    }
}

#[step(max_attempts = 3, interval = "50ms", backoff = 2.0)]
async fn always_fails(key: String) -> Result<u32, AppError> {
    Err(AppError::Flaky(attempt(&key)))
}

#[workflow]
async fn retrying(key: String) -> Result<u32, AppError> {
    let lucky = third_time_lucky(format!("{key}/lucky")).await?;
    let never = always_fails(format!("{key}/fails")).await?;
    Ok(lucky + never)
}

both_backends! {
    async fn failing_step_is_retried_with_exponential_backoff_and_its_final_error_recorded(db: TestDb) {
        let key = format!("{}/retry", db.url);
        let rt = launch(&db).await;
        let out = within("retrying", rt.scope(retrying(key.clone()).with_id("retrying").into_future())).await;
        assert_eq!(out, Err(AppError::Flaky(3)), "the last attempt's error is the workflow's");

        for which in ["lucky", "fails"] {
            let k = format!("{key}/{which}");
            let g = gaps(&k);
            assert_eq!(g.len(), 2, "{which}: exactly max_attempts = 3 attempts ({g:?})");
            assert!(g[0] >= Duration::from_millis(50), "{which}: first wait is the interval: {g:?}");
            assert!(g[1] >= Duration::from_millis(100), "{which}: second wait is interval × backoff: {g:?}");
        }

        let x = db.inspect().await;
        let steps = step_rows(&x, &db, "retrying").await;
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert_eq!((cell(&steps[0], 1), cell(&steps[0], 2)), (name("third_time_lucky").as_str(), "3"));
        assert_eq!(steps[0][3], None, "a step that succeeded after retries records only its output");
        assert_eq!(cell(&steps[1], 1), name("always_fails"));
        assert_eq!(steps[1][2], None, "a failed step has no output");
        let want = json!({"name": "Flaky", "message": "attempt 3 failed", "code": null, "data": {"Flaky": 3}});
        assert_eq!(parse(cell(&steps[1], 3)), want, "the final error, as portable JSON");
        let s = db.sys();
        let span = x
            .scalar(&format!(
                "SELECT completed_at_epoch_ms - started_at_epoch_ms FROM {s}operation_outputs \
                 WHERE workflow_uuid = 'retrying' AND function_id = 2"
            ))
            .await;
        assert!(span >= 150, "started_at is the first attempt ({span} ms before completion)");

        let w = workflow_row(&x, &db, "retrying").await;
        assert_eq!(cell(&w, 0), "ERROR");
        assert_eq!(parse(cell(&w, 4)), want, "the workflow records the error it returned");
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Child workflows.

#[workflow]
async fn kid(key: String) -> Result<String, Error> {
    probe::bump(&format!("{key}/kid"));
    Ok(format!("kid {}", DBOS::workflow_id()?))
}

#[workflow]
async fn parent(key: String) -> Result<Vec<String>, Error> {
    let first = add_one(1).await?; // 1
    let handle = DBOS::start_workflow(kid(key.clone())).await?; // 2
    let a = handle.get_result().await?; // 3
    let b = kid(key.clone()).await?; // 4 (start), 5 (result)
    let me = DBOS::workflow_id()?;
    let c = kid(key.clone()).with_id(format!("{me}-explicit")).await?; // 6, 7
    let n = gated(key).await?; // 8
    Ok(vec![
        first.to_string(),
        handle.workflow_id().to_owned(),
        a,
        b,
        c,
        n.to_string(),
    ])
}

fn expected_parent_rows(p: &str) -> Vec<(String, String, String, String, String)> {
    let kid_out = |id: &str| format!("\"kid {id}\"");
    let null = || "<NULL>".to_owned();
    let e = format!("{p}-explicit");
    vec![
        (
            "1".into(),
            name("add_one"),
            "2".into(),
            null(),
            "portable_json".into(),
        ),
        ("2".into(), name("kid"), null(), format!("{p}-2"), null()),
        (
            "3".into(),
            "DBOS.getResult".into(),
            kid_out(&format!("{p}-2")),
            format!("{p}-2"),
            "portable_json".into(),
        ),
        ("4".into(), name("kid"), null(), format!("{p}-4"), null()),
        (
            "5".into(),
            "DBOS.getResult".into(),
            kid_out(&format!("{p}-4")),
            format!("{p}-4"),
            "portable_json".into(),
        ),
        ("6".into(), name("kid"), null(), e.clone(), null()),
        (
            "7".into(),
            "DBOS.getResult".into(),
            kid_out(&e),
            e.clone(),
            "portable_json".into(),
        ),
        (
            "8".into(),
            name("gated"),
            "1".into(),
            null(),
            "portable_json".into(),
        ),
    ]
}

async fn parent_rows(
    x: &Inspect,
    db: &TestDb,
    p: &str,
) -> Vec<(String, String, String, String, String)> {
    step_rows(x, db, p)
        .await
        .iter()
        .map(|r| {
            assert_eq!(r[3], None, "no errors: {r:?}");
            (
                cell(r, 0).into(),
                cell(r, 1).into(),
                cell(r, 2).into(),
                cell(r, 4).into(),
                cell(r, 5).into(),
            )
        })
        .collect()
}

/// `(workflow_uuid, name, status, updated_at)` of the children of `p`.
async fn children(x: &Inspect, db: &TestDb, p: &str) -> Vec<Vec<Option<String>>> {
    let s = db.sys();
    x.rows(&format!(
        "SELECT workflow_uuid, name, status, updated_at FROM {s}workflow_status \
         WHERE parent_workflow_id = '{p}' ORDER BY workflow_uuid"
    ))
    .await
}

both_backends! {
    async fn child_workflow_ids_are_parent_dash_position_and_recorded_in_the_parent(db: TestDb) {
        let key = format!("{}/kids", db.url);
        probe::open(&key);
        let rt = launch(&db).await;
        let out = within("parent", rt.scope(parent(key.clone()).with_id("mom").into_future())).await.expect("parent succeeds");
        assert_eq!(out, vec!["2", "mom-2", "kid mom-2", "kid mom-4", "kid mom-explicit", "1"]);

        let x = db.inspect().await;
        assert_eq!(parent_rows(&x, &db, "mom").await, expected_parent_rows("mom"));
        let kids = children(&x, &db, "mom").await;
        let got: Vec<(&str, &str, &str)> = kids.iter().map(|r| (cell(r, 0), cell(r, 1), cell(r, 2))).collect();
        let kid_name = name("kid");
        assert_eq!(
            got,
            vec![
                ("mom-2", kid_name.as_str(), "SUCCESS"),
                ("mom-4", kid_name.as_str(), "SUCCESS"),
                ("mom-explicit", kid_name.as_str(), "SUCCESS"),
            ],
            "each child's row names its parent"
        );
        assert_eq!(probe::count(&format!("{key}/kid")), 3);
        rt.shutdown().await;
    }
}

both_backends! {
    async fn child_workflows_are_not_started_again_when_the_parent_replays(db: TestDb) {
        let key = format!("{}/kids-crash", db.url);
        let rt = launch(&db).await;
        rt.scope(async {
            DBOS::start_workflow(parent(key.clone()).with_id("dad")).await.expect("start the parent");
        })
        .await;
        let gated_key = format!("{key}/gated");
        eventually(T, "the parent reaches its last step", || async { probe::count(&gated_key) == 1 }).await;
        rt.shutdown().await;

        let x = db.inspect().await;
        let kids_before = children(&x, &db, "dad").await;
        assert_eq!(kids_before.len(), 3, "three children before the crash: {kids_before:?}");
        assert_eq!(probe::count(&format!("{key}/kid")), 3);

        probe::open(&key);
        let rt2 = launch(&db).await;
        let out = within("the recovered parent", rt2.scope(async {
            DBOS::retrieve_workflow::<Vec<String>, Error>("dad").await.expect("retrieve").get_result().await
        }))
        .await
        .expect("the parent succeeds after recovery");
        assert_eq!(out, vec!["2", "dad-2", "kid dad-2", "kid dad-4", "kid dad-explicit", "2"]);
        assert_eq!(probe::count(&format!("{key}/kid")), 3, "no child body ran again");
        let kids_after = children(&x, &db, "dad").await;
        assert_eq!(kids_after, kids_before, "no child was started again (not even an upsert touching updated_at)");
        let mut want = expected_parent_rows("dad");
        want[7].2 = "2".into(); // the gated step was not recorded before the crash, so it ran twice
        assert_eq!(parent_rows(&x, &db, "dad").await, want);
        let s = db.sys();
        assert_eq!(x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status")).await, 4, "parent + three children");
        rt2.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Portable JSON.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    items: Vec<String>,
    note: Option<String>,
}

#[workflow]
async fn portable_io(
    count: i64,
    label: String,
    order: Order,
    missing: Option<u32>,
) -> Result<Order, Error> {
    nothing().await?;
    Ok(Order {
        id: order.id + count as u64,
        items: vec![label],
        note: missing.map(|m| m.to_string()),
    })
}

#[workflow]
async fn unit_result() -> Result<(), Error> {
    Ok(())
}

#[workflow]
async fn framework_failure(id: String) -> Result<u8, Error> {
    Err(Error::NonExistentWorkflow(id))
}

#[workflow]
async fn app_failure(key: String, item: String) -> Result<u32, AppError> {
    probe::bump(&key);
    Err(AppError::OutOfStock(item))
}

both_backends! {
    async fn inputs_outputs_and_errors_are_stored_as_portable_json(db: TestDb) {
        let key = format!("{}/portable", db.url);
        let rt = launch(&db).await;
        let order = Order { id: 1, items: vec!["a".into(), "b".into()], note: None };
        rt.scope(async {
            let out = within("portable_io", portable_io(7, "café ☕".into(), order.clone(), None).with_id("io")).await;
            assert_eq!(out.expect("portable_io"), Order { id: 8, items: vec!["café ☕".into()], note: None });
            within("unit_result", unit_result().with_id("unit")).await.expect("unit_result");
            let err = within("framework_failure", framework_failure("ghost".into()).with_id("fw-err")).await;
            assert!(matches!(err, Err(Error::NonExistentWorkflow(ref id)) if id == "ghost"), "{err:?}");
            let err = within("app_failure", app_failure(key.clone(), "widget".into()).with_id("app-err")).await;
            assert_eq!(err, Err(AppError::OutOfStock("widget".into())));
        })
        .await;

        let x = db.inspect().await;
        let io = workflow_row(&x, &db, "io").await;
        let inputs = cell(&io, 2);
        assert_eq!(
            parse(inputs),
            json!({"positionalArgs": [7, "café ☕", {"id": 1, "items": ["a", "b"], "note": null}, null], "namedArgs": {}}),
            "inputs: positional arguments in order, namedArgs always written"
        );
        assert_compact(inputs);
        assert!(inputs.contains("café ☕"), "UTF-8 is written unescaped: {inputs}");
        assert_eq!(parse(cell(&io, 3)), json!({"id": 8, "items": ["café ☕"], "note": null}), "output is the value itself");
        assert_compact(cell(&io, 3));
        assert_eq!(cell(&io, 5), "portable_json");
        let steps = step_rows(&x, &db, "io").await;
        assert_eq!((cell(&steps[0], 2), cell(&steps[0], 5)), ("null", "portable_json"), "a step's () is JSON null");

        let unit = workflow_row(&x, &db, "unit").await;
        assert_eq!(cell(&unit, 0), "SUCCESS");
        assert_eq!(unit[3].as_deref(), Some("null"), "() is JSON null, never SQL NULL");
        assert_eq!(parse(cell(&unit, 2)), json!({"positionalArgs": [], "namedArgs": {}}));
        assert_eq!(cell(&unit, 5), "portable_json");

        let fw = workflow_row(&x, &db, "fw-err").await;
        assert_eq!((cell(&fw, 0), fw[3].as_deref()), ("ERROR", None), "a failed workflow has an error, no output");
        assert_eq!(
            parse(cell(&fw, 4)),
            json!({"name": "NonExistentWorkflow", "message": "workflow `ghost` does not exist", "code": null, "data": null}),
            "framework errors: the variant name and the Display text, all four keys"
        );
        assert_compact(cell(&fw, 4));
        assert_eq!(cell(&fw, 5), "portable_json");

        let app = workflow_row(&x, &db, "app-err").await;
        assert_eq!(cell(&app, 0), "ERROR");
        assert_eq!(
            parse(cell(&app, 4)),
            json!({"name": "OutOfStock", "message": "out of stock: widget", "code": null, "data": {"OutOfStock": "widget"}}),
            "a user error: its variant name, its Display text and its own JSON as data"
        );
        assert_compact(cell(&app, 4));
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// A workflow's own error type is recorded and returned again on replay.

both_backends! {
    async fn a_workflows_own_error_is_recorded_and_returned_again_on_replay(db: TestDb) {
        let key = format!("{}/own-error", db.url);
        let want = Err(AppError::OutOfStock("widget".into()));
        let rt = launch(&db).await;
        rt.scope(async {
            let first = within("app_failure", app_failure(key.clone(), "widget".into()).with_id("oos")).await;
            assert_eq!(first, want);
            let again = within("app_failure again", app_failure(key.clone(), "gadget".into()).with_id("oos")).await;
            assert_eq!(again, want, "the recorded error, not a new run with new arguments");
            let fw = within("framework_failure", framework_failure("ghost".into()).with_id("fw")).await;
            assert!(fw.is_err());
        })
        .await;
        rt.shutdown().await;
        assert_eq!(probe::count(&key), 1, "the failed workflow ran once");

        let x = db.inspect().await;
        let row = workflow_row(&x, &db, "oos").await;
        let recorded = parse(cell(&row, 4));
        assert_eq!((recorded["name"].as_str(), recorded["message"].as_str()), (Some("OutOfStock"), Some("out of stock: widget")));

        // A new runtime has no in-memory result: the error comes back from its row.
        let rt2 = launch(&db).await;
        rt2.scope(async {
            let handle = DBOS::retrieve_workflow::<u32, AppError>("oos").await.expect("retrieve");
            assert_eq!(within("get_result", handle.get_result()).await, want, "the same typed error");
            let status = handle.get_status().await.expect("status");
            assert_eq!(status.status, "ERROR");
            let again = within("app_failure replay", app_failure(key.clone(), "gizmo".into()).with_id("oos")).await;
            assert_eq!(again, want);
            let fw = DBOS::retrieve_workflow::<u8, Error>("fw").await.expect("retrieve fw");
            let err = within("fw get_result", fw.get_result()).await.expect_err("recorded failure");
            assert_eq!(err.kind(), "NonExistentWorkflow", "{err:?}");
            assert!(err.to_string().contains("workflow `ghost` does not exist"), "{err}");
        })
        .await;
        assert_eq!(probe::count(&key), 1, "replaying never ran the body again");
        rt2.shutdown().await;
    }
}
