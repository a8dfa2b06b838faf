//! Exactly-once `#[transaction]` (issue 3): the application's writes and their checkpoint in
//! one commit, conflicts retried, errors and panics rolled back and recorded, money and
//! timestamps exact, on SQLite, Postgres, and Postgres (or SQLite) with the application tables
//! in a database of their own (`DbosConfig::with_system_database_url`).

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use dbos_runtime::prelude::*;
use dbos_runtime::{Numeric, Runtime};
use dbos_tests::{eventually, Backend, Inspect, TestDb};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::future::IntoFuture;
use std::path::PathBuf;
use tokio::process::Command;

const APP: &str = "tx-tests";
const VERSION: &str = "tx-tests-1";
/// The longest any single wait in these tests may take.
const T: Duration = Duration::from_secs(30);

/// Registered names are the Rust path: this test crate is `transactions`.
fn name(f: &str) -> String {
    format!("{}::{f}", module_path!())
}

/// Where the system tables live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// In the application database (the default): one commit per transaction step.
    Shared,
    /// In a second database: `transaction_outputs` in the application database.
    Separate,
}

/// The databases of one test.
struct Dbs {
    app: TestDb,
    sys: Option<TestDb>,
}

impl Dbs {
    async fn new(backend: Backend, layout: Layout, name: &str) -> Dbs {
        let app = TestDb::fresh(backend, name).await;
        let sys = match layout {
            Layout::Shared => None,
            Layout::Separate => Some(app.sibling("sys").await),
        };
        Dbs { app, sys }
    }

    fn separate(&self) -> bool {
        self.sys.is_some()
    }

    fn postgres(&self) -> bool {
        self.app.backend == Backend::Postgres
    }

    fn sys_db(&self) -> &TestDb {
        self.sys.as_ref().unwrap_or(&self.app)
    }

    /// Where `transaction_outputs` is in the application database: `dbos.` on Postgres.
    fn app_prefix(&self) -> &'static str {
        self.app.sys()
    }

    /// `dbos.` on Postgres.
    fn s(&self) -> &'static str {
        self.sys_db().sys()
    }

    fn config(&self) -> DbosConfig {
        let cfg = self
            .app
            .config(APP)
            .with_version(VERSION)
            .with_executor_id("tx-local");
        match &self.sys {
            Some(sys) => cfg.with_system_database_url(&sys.url),
            None => cfg,
        }
    }

    async fn launch(&self) -> Runtime {
        within("launch", Runtime::launch(self.config()))
            .await
            .expect("launch the runtime")
    }

    /// The worker process, pointed at these databases.
    fn worker(&self, mode: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker_transactions"));
        cmd.env("DB_URL", &self.app.url)
            .env("MODE", mode)
            .env("RUST_LOG", "error")
            .kill_on_drop(true)
            .stdout(std::process::Stdio::piped());
        if let Some(sys) = &self.sys {
            cmd.env("SYS_URL", &sys.url);
        }
        cmd
    }

    /// A scratch directory for files the worker writes.
    fn scratch(&self, what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "dbos-tx-{}-{}",
            std::process::id(),
            self.app
                .url
                .rsplit('/')
                .next()
                .unwrap_or("db")
                .replace(['.', ':'], "_")
        ));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        let path = dir.join(what);
        let _ = std::fs::remove_file(&path);
        path
    }
}

/// Defines one `#[tokio::test]` per listed variant (`sqlite`, `postgres`, `postgres_separate`,
/// `sqlite_separate`) from one async body taking the test's [`Dbs`].
macro_rules! tx_test {
    ([$($variant:ident),+] async fn $name:ident($dbs:ident: Dbs) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($dbs: Dbs) $body
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $variant() {
                    let (backend, layout) = variant!($variant);
                    let dbs = Dbs::new(backend, layout, concat!(module_path!(), "_", stringify!($variant))).await;
                    tokio::time::timeout(Duration::from_secs(240), run(dbs)).await.expect("test timed out");
                }
            )+
        }
    };
}

macro_rules! variant {
    (sqlite) => {
        (Backend::Sqlite, Layout::Shared)
    };
    (postgres) => {
        (Backend::Postgres, Layout::Shared)
    };
    (postgres_separate) => {
        (Backend::Postgres, Layout::Separate)
    };
    (sqlite_separate) => {
        (Backend::Sqlite, Layout::Separate)
    };
}

async fn within<F: IntoFuture>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(T, fut.into_future())
        .await
        .unwrap_or_else(|_| panic!("timed out after {T:?}: {what}"))
}

fn cell(row: &[Option<String>], i: usize) -> &str {
    row[i].as_deref().unwrap_or("<NULL>")
}

/// In-process counters of body runs, keyed by a string the test passes as an argument (the
/// variants of a test run at once in one process).
mod probe {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    fn counts() -> &'static Mutex<HashMap<String, u32>> {
        static C: OnceLock<Mutex<HashMap<String, u32>>> = OnceLock::new();
        C.get_or_init(Default::default)
    }

    pub fn bump(key: &str) {
        *counts()
            .lock()
            .expect("probe lock")
            .entry(key.to_owned())
            .or_default() += 1;
    }

    pub fn count(key: &str) -> u32 {
        counts()
            .lock()
            .expect("probe lock")
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

/// Runs one statement in its own transaction (a `#[transaction]` outside any workflow).
#[transaction]
async fn exec(tx: &mut Tx, sql: String) -> Result<u64, Error> {
    tx.query(&sql).execute().await
}

async fn exec_all(rt: &Runtime, statements: &[&str]) {
    for sql in statements {
        within(sql, rt.scope(exec(sql.to_string())))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A user error type: serde, `Display`, and `From<dbos_runtime::Error>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
enum ShopError {
    #[error("out of stock: {0}")]
    OutOfStock(String),
    #[error("framework: {0}")]
    Framework(String),
}

impl From<Error> for ShopError {
    fn from(e: Error) -> Self {
        ShopError::Framework(e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Crash test: workflows of three transactions, SIGKILLed at random moments.

/// Workflows per crash test: enough that 30 short-lived runs cannot finish them (SQLite runs
/// them faster than Postgres, whose three hot rows make SERIALIZABLE transactions retry).
fn crash_workflows(dbs: &Dbs) -> usize {
    if dbs.postgres() {
        1200
    } else {
        2400
    }
}
const KILLS: usize = 30;

tx_test! {
    [sqlite, postgres, postgres_separate]
    async fn every_counter_equals_the_workflow_count_after_30_sigkills(dbs: Dbs) {
        let workflows = crash_workflows(&dbs);
        let worker = |dbs: &Dbs| {
            let mut cmd = dbs.worker("crash");
            cmd.env("WORKFLOWS", workflows.to_string())
                .env("CONCURRENCY", "8")
                .env("TX_SLEEP_MS", "4")
                .stdout(std::process::Stdio::null());
            cmd
        };
        let mut kills = 0;
        while kills < KILLS {
            let mut child = worker(&dbs).spawn().expect("spawn the worker");
            // Launching takes a few hundred milliseconds (debug build): most kills land while
            // transactions run.
            tokio::time::sleep(Duration::from_millis(fastrand::u64(250..900))).await;
            if let Some(status) = child.try_wait().expect("poll the worker") {
                panic!("the worker exited ({status}) before it was killed {KILLS} times ({kills}): give it more work");
            }
            child.start_kill().expect("SIGKILL the worker");
            let _ = child.wait().await;
            kills += 1;
        }
        let sys = dbs.sys_db().inspect().await;
        let s = dbs.s();
        let done_before = sys
            .scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE workflow_uuid LIKE 'tx-%' AND status = 'SUCCESS'"))
            .await;
        let started = std::time::Instant::now();
        // SQLite serializes the transactions (each holds the writer for TX_SLEEP_MS): the rest of
        // the work can take tens of seconds on a loaded 2-core machine.
        let status = tokio::time::timeout(Duration::from_secs(240), worker(&dbs).status())
            .await
            .expect("the final worker run finished within 240 s")
            .expect("run the worker");
        assert!(status.success(), "the final worker run failed: {status}");

        let app = dbs.app.inspect().await;
        let counters = app.rows("SELECT id, n FROM counters ORDER BY id").await;
        let want: Vec<Vec<Option<String>>> = (1..=3)
            .map(|id| vec![Some(id.to_string()), Some(workflows.to_string())])
            .collect();
        assert_eq!(counters, want, "each counter was incremented exactly once per workflow");
        let done = sys
            .scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE workflow_uuid LIKE 'tx-%' AND status = 'SUCCESS'"))
            .await;
        assert_eq!(done as usize, workflows, "every workflow is SUCCESS");
        let steps = sys
            .scalar(&format!(
                "SELECT COUNT(*) FROM {s}operation_outputs WHERE workflow_uuid LIKE 'tx-%' \
                 AND function_name = 'worker_transactions::bump' AND output IS NOT NULL AND error IS NULL"
            ))
            .await;
        assert_eq!(steps as usize, 3 * workflows, "three recorded transaction steps per workflow");
        if dbs.separate() {
            let rows = app.scalar(&format!("SELECT COUNT(*) FROM {}transaction_outputs", dbs.app_prefix())).await;
            assert_eq!(rows as usize, 3 * workflows, "one transaction_outputs row per transaction step");
        }
        println!(
            "{:?}{}: {kills} SIGKILLs ({done_before} workflows done by then), then the last run finished in {:.1}s; counters = {workflows} each, {done} workflows SUCCESS",
            dbs.app.backend,
            if dbs.separate() { " (separate system database)" } else { "" },
            started.elapsed().as_secs_f64()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Conflicts: 32 concurrent read-modify-write decrements of one row.

#[transaction]
async fn take_one(tx: &mut Tx, hold_ms: u64) -> Result<i64, Error> {
    let left: i64 = tx
        .query("SELECT inventory FROM stock WHERE id = 1")
        .fetch_scalar()
        .await?;
    // Between the read and the write: every concurrent buyer read the same value.
    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
    tx.query("UPDATE stock SET inventory = $1 WHERE id = 1")
        .bind(left - 1)
        .execute()
        .await?;
    Ok(left - 1)
}

#[workflow]
async fn buy(_i: u32) -> Result<i64, Error> {
    take_one(3).await
}

tx_test! {
    [sqlite, postgres, postgres_separate]
    async fn thirty_two_concurrent_decrements_lose_no_update(dbs: Dbs) {
        let rt = dbs.launch().await;
        exec_all(&rt, &[
            "CREATE TABLE stock (id INTEGER PRIMARY KEY, inventory BIGINT NOT NULL)",
            "INSERT INTO stock (id, inventory) VALUES (1, 1000)",
        ]).await;
        let before = rt.metrics_snapshot();
        let started = std::time::Instant::now();
        let handles = rt
            .scope(async {
                let mut handles = Vec::new();
                for i in 0..32 {
                    handles.push(DBOS::start_workflow(buy(i).with_id(format!("buy-{i}"))).await.expect("start"));
                }
                handles
            })
            .await;
        let mut left = BTreeSet::new();
        for h in handles {
            left.insert(within("a buyer", rt.scope(h.get_result())).await.expect("every decrement commits"));
        }
        let retries = rt.metrics_snapshot().transaction_retries - before.transaction_retries;
        let app = dbs.app.inspect().await;
        assert_eq!(app.scalar("SELECT inventory FROM stock WHERE id = 1").await, 1000 - 32, "no lost update");
        assert_eq!(left, (968..1000).collect::<BTreeSet<i64>>(), "each buyer saw its own inventory: serial order");
        println!(
            "{:?}{}: 32 concurrent decrements -> 968 in {:.2}s with {retries} conflict retries",
            dbs.app.backend,
            if dbs.separate() { " (separate)" } else { "" },
            started.elapsed().as_secs_f64()
        );
        if dbs.postgres() {
            assert!(retries > 0, "SERIALIZABLE read-modify-writes that overlap must conflict and retry");
        }
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Errors: an `Err` after a write leaves nothing and is replayed after a SIGKILL.

tx_test! {
    [sqlite, postgres, postgres_separate]
    async fn an_err_after_a_write_leaves_nothing_and_replays_after_sigkill_without_running_again(dbs: Dbs) {
        let body_runs = dbs.scratch("body_runs");
        let at_gate = dbs.scratch("at_gate");
        let runs = |p: &PathBuf| std::fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0);

        // First run: the transaction fails, its error is recorded, the workflow waits at a gate.
        let mut first = dbs.worker("error");
        first.env("BODY_RUNS", &body_runs).env("AT_GATE", &at_gate).env("HANG", "1");
        let mut child = first.spawn().expect("spawn the worker");
        eventually(T, "the workflow to reach its gate", || async { at_gate.exists() }).await;

        let app = dbs.app.inspect().await;
        let sys = dbs.sys_db().inspect().await;
        let s = dbs.s();
        assert_eq!(runs(&body_runs), 1, "the body ran once");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM orders").await, 0, "the failed transaction's insert was rolled back");
        let step = sys
            .rows(&format!("SELECT function_name, output, error FROM {s}operation_outputs WHERE workflow_uuid = 'declined-7' AND function_id = 1"))
            .await;
        assert_eq!(step.len(), 1, "the error is recorded at position 1");
        assert_eq!(cell(&step[0], 0), "worker_transactions::charge_then_decline");
        assert_eq!(step[0][1], None, "no output");
        let recorded: serde_json::Value = serde_json::from_str(cell(&step[0], 2)).expect("error JSON");
        assert_eq!(recorded["name"], "Declined", "{recorded}");
        assert_eq!(recorded["message"], "card declined for order 7", "{recorded}");
        if dbs.separate() {
            let p = dbs.app_prefix();
            let rows = app.rows(&format!("SELECT function_name, output, error FROM {p}transaction_outputs WHERE workflow_uuid = 'declined-7'")).await;
            assert_eq!(rows.len(), 1, "the error is recorded in transaction_outputs too");
            assert_eq!(rows[0][2].as_deref(), step[0][2].as_deref(), "same error text in both tables");
        }

        child.start_kill().expect("SIGKILL the worker");
        let _ = child.wait().await;

        // Second run: recovery replays the recorded error; the body does not run again.
        let mut second = dbs.worker("error");
        second.env("BODY_RUNS", &body_runs);
        let out = within("the recovering worker", second.output()).await.expect("run the worker");
        assert!(out.status.success(), "the second run failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(r#"RESULT: {"Err":"card declined for order 7"}"#),
            "the workflow returns the recorded error: {stdout}"
        );
        assert_eq!(runs(&body_runs), 1, "the body did not run again after recovery");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM orders").await, 0, "still nothing written");
        let wf = sys
            .rows(&format!("SELECT status, error FROM {s}workflow_status WHERE workflow_uuid = 'declined-7'"))
            .await;
        assert_eq!(cell(&wf[0], 0), "ERROR");
        let error: serde_json::Value = serde_json::from_str(cell(&wf[0], 1)).expect("workflow error JSON");
        assert_eq!(error["name"], "Declined", "{error}");
        assert_eq!(error["data"], serde_json::json!({"Declined": 7}), "{error}");
    }
}

#[transaction]
async fn insert_then_fail(tx: &mut Tx, key: String) -> Result<(), ShopError> {
    probe::bump(&key);
    tx.query("INSERT INTO notes (k) VALUES ($1)")
        .bind(&key)
        .execute()
        .await?;
    Err(ShopError::OutOfStock(key))
}

#[workflow]
async fn failing(key: String) -> Result<(), ShopError> {
    insert_then_fail(key).await
}

tx_test! {
    [sqlite, postgres, postgres_separate]
    async fn an_err_rolls_back_inside_and_outside_workflows(dbs: Dbs) {
        let rt = dbs.launch().await;
        exec_all(&rt, &["CREATE TABLE notes (k TEXT NOT NULL)"]).await;
        let key = format!("err-{}", dbs.app.url);
        let got = within("failing", rt.scope(failing(key.clone()).with_id("failing-1").into_future())).await;
        assert_eq!(got, Err(ShopError::OutOfStock(key.clone())));
        // Outside a workflow: rolled back, nothing recorded.
        let plain = within("insert_then_fail", rt.scope(insert_then_fail(key.clone()))).await;
        assert_eq!(plain, Err(ShopError::OutOfStock(key.clone())));
        assert_eq!(probe::count(&key), 2, "one body run each");
        let app = dbs.app.inspect().await;
        assert_eq!(app.scalar("SELECT COUNT(*) FROM notes").await, 0, "both inserts rolled back");
        // The recorded error answers a second start of the same ID.
        let again = within("failing again", rt.scope(failing(key.clone()).with_id("failing-1").into_future())).await;
        assert_eq!(again, Err(ShopError::OutOfStock(key.clone())));
        assert_eq!(probe::count(&key), 2, "the body did not run again");
        let sys = dbs.sys_db().inspect().await;
        let s = dbs.s();
        assert_eq!(sys.scalar(&format!("SELECT COUNT(*) FROM {s}operation_outputs")).await, 1, "only the workflow's step is recorded");
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Panics roll back and fail the workflow; the process stays up.

#[transaction]
async fn insert_then_panic(tx: &mut Tx, key: String) -> Result<(), Error> {
    tx.query("INSERT INTO notes (k) VALUES ($1)")
        .bind(&key)
        .execute()
        .await?;
    if !key.is_empty() {
        panic!("boom: {key}");
    }
    Ok(())
}

#[workflow]
async fn panicking(key: String) -> Result<(), Error> {
    insert_then_panic(key).await
}

tx_test! {
    [sqlite, postgres, postgres_separate]
    async fn a_panic_rolls_back_and_fails_the_workflow_with_a_clear_error(dbs: Dbs) {
        let rt = dbs.launch().await;
        exec_all(&rt, &["CREATE TABLE notes (k TEXT NOT NULL)"]).await;
        let err = within("panicking", rt.scope(panicking("p1".into()).with_id("panicking-1").into_future()))
            .await
            .expect_err("the workflow fails");
        let text = err.to_string();
        for part in ["panicked", "boom: p1", &name("insert_then_panic"), "rolled back"] {
            assert!(text.contains(part), "{part:?} in {text:?}");
        }
        let app = dbs.app.inspect().await;
        assert_eq!(app.scalar("SELECT COUNT(*) FROM notes").await, 0, "the insert was rolled back");
        let sys = dbs.sys_db().inspect().await;
        let s = dbs.s();
        let wf = sys.rows(&format!("SELECT status, error FROM {s}workflow_status WHERE workflow_uuid = 'panicking-1'")).await;
        assert_eq!(cell(&wf[0], 0), "ERROR");
        assert!(cell(&wf[0], 1).contains("boom: p1"), "{wf:?}");
        let step = sys.rows(&format!("SELECT error FROM {s}operation_outputs WHERE workflow_uuid = 'panicking-1' AND function_id = 1")).await;
        assert!(cell(&step[0], 0).contains("\"name\":\"Panic\""), "the panic is the step's recorded error: {step:?}");
        // The process, the runtime and its connections are fine.
        within("a later workflow", rt.scope(panicking(String::new()).with_id("panicking-2").into_future()))
            .await
            .expect("the next transaction commits");
        assert_eq!(app.scalar("SELECT COUNT(*) FROM notes").await, 1);
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Commits: one per transaction step when the databases are shared, two when separate.

#[transaction]
async fn bump_row(tx: &mut Tx, id: i64) -> Result<i64, Error> {
    tx.query("UPDATE rows_t SET v = v + 1 WHERE id = $1 RETURNING v")
        .bind(id)
        .fetch_scalar()
        .await
}

#[workflow]
async fn three_updates(base: i64) -> Result<i64, Error> {
    let mut sum = 0;
    for id in base..base + 3 {
        sum += bump_row(id).await?;
    }
    Ok(sum)
}

tx_test! {
    [sqlite, postgres, postgres_separate, sqlite_separate]
    async fn one_commit_per_transaction_step_two_with_a_separate_system_database(dbs: Dbs) {
        let rt = dbs.launch().await;
        exec_all(&rt, &[
            "CREATE TABLE rows_t (id INTEGER PRIMARY KEY, v BIGINT NOT NULL)",
            "INSERT INTO rows_t (id, v) VALUES (0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0)",
        ]).await;
        within("warm-up", rt.scope(three_updates(3).into_future())).await.expect("warm-up");
        const N: u64 = 10;
        let before = rt.metrics_snapshot();
        for i in 0..N {
            within("three_updates", rt.scope(three_updates(0).with_id(format!("commits-{i}")).into_future()))
                .await
                .expect("the workflow succeeds");
        }
        let delta = rt.metrics_snapshot().commits - before.commits;
        let per_step = if dbs.separate() { 2 } else { 1 };
        // Start and finish are one commit each; the transaction steps the rest.
        assert_eq!(delta, N * (2 + 3 * per_step), "commits for {N} workflows of three transaction steps");
        println!("{:?}{}: {} commits per workflow of 3 transactions", dbs.app.backend,
            if dbs.separate() { " (separate)" } else { "" }, delta / N);
        let app = dbs.app.inspect().await;
        assert_eq!(app.scalar("SELECT CAST(SUM(v) AS BIGINT) FROM rows_t WHERE id < 3").await, 3 * N as i64);
        rt.shutdown().await;
    }
}

/// Statements to run from a workflow body (outside any operation) before its transaction:
/// they play another execution that recorded the same step first.
fn racers() -> &'static std::sync::Mutex<std::collections::HashMap<String, (Inspect, String)>> {
    static R: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, (Inspect, String)>>,
    > = std::sync::OnceLock::new();
    R.get_or_init(Default::default)
}

#[workflow]
async fn raced(key: String) -> Result<i64, Error> {
    let racer = racers().lock().expect("racers lock").get(&key).cloned();
    if let Some((db, sql)) = racer {
        db.exec(&sql).await;
    }
    bump_row(0).await
}

tx_test! {
    [sqlite, postgres, postgres_separate, sqlite_separate]
    async fn the_writes_roll_back_when_their_checkpoint_cannot_be_written(dbs: Dbs) {
        let rt = dbs.launch().await;
        exec_all(&rt, &[
            "CREATE TABLE rows_t (id INTEGER PRIMARY KEY, v BIGINT NOT NULL)",
            "INSERT INTO rows_t (id, v) VALUES (0, 0)",
        ]).await;
        let app = dbs.app.inspect().await;
        let sys = dbs.sys_db().inspect().await;
        let s = dbs.s();
        // The row the transaction writes with its effect: operation_outputs when the databases
        // are shared, transaction_outputs when separate.
        let (db, sql) = if dbs.separate() {
            let p = dbs.app_prefix();
            (app.clone(), format!(
                "INSERT INTO {p}transaction_outputs (workflow_uuid, function_id, output, txn_snapshot, function_name) \
                 VALUES ('raced-1', 1, '41', '', '{}')", name("bump_row")))
        } else {
            (sys.clone(), format!(
                "INSERT INTO {s}operation_outputs (workflow_uuid, function_id, function_name, output, completed_at_epoch_ms) \
                 VALUES ('raced-1', 1, '{}', '41', 1)", name("bump_row")))
        };
        let key = format!("raced-{}", dbs.app.url);
        racers().lock().expect("racers lock").insert(key.clone(), (db, sql));
        within("start raced", rt.scope(DBOS::start_workflow(raced(key).with_id("raced-1")))).await.expect("start");
        // The execution stops with ConcurrentExecution and leaves the outcome to the other one.
        eventually(T, "the execution to stop", || async { rt.running_workflows() == 0 }).await;
        assert_eq!(app.scalar("SELECT v FROM rows_t WHERE id = 0").await, 0, "the update was rolled back with its checkpoint");
        let status = sys.rows(&format!("SELECT status FROM {s}workflow_status WHERE workflow_uuid = 'raced-1'")).await;
        assert_eq!(cell(&status[0], 0), "PENDING", "no outcome recorded by the execution that lost the race");
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Separate databases: a commit whose step record was lost is healed on replay.

#[transaction]
async fn counted_bump(tx: &mut Tx, key: String, id: i64) -> Result<i64, Error> {
    probe::bump(&format!("{key}/{id}"));
    tx.query("UPDATE rows_t SET v = v + 1 WHERE id = $1 RETURNING v")
        .bind(id)
        .fetch_scalar()
        .await
}

#[workflow]
async fn counted_three(key: String) -> Result<Vec<i64>, Error> {
    let mut out = Vec::new();
    for id in 0..3 {
        out.push(counted_bump(key.clone(), id).await?);
    }
    Ok(out)
}

tx_test! {
    [postgres_separate, sqlite_separate]
    async fn a_commit_whose_step_record_was_lost_is_not_run_again(dbs: Dbs) {
        let rt = dbs.launch().await;
        exec_all(&rt, &[
            "CREATE TABLE rows_t (id INTEGER PRIMARY KEY, v BIGINT NOT NULL)",
            "INSERT INTO rows_t (id, v) VALUES (0, 0), (1, 0), (2, 0)",
        ]).await;
        let key = format!("heal-{}", dbs.app.url);
        let out = within("counted_three", rt.scope(counted_three(key.clone()).with_id("heal-1").into_future())).await;
        assert_eq!(out.expect("first run"), vec![1, 1, 1]);
        rt.shutdown().await;

        // A crash right after the third transaction committed: its operation_outputs row and
        // the workflow's outcome were never written.
        let sys = dbs.sys_db().inspect().await;
        let s = dbs.s();
        sys.exec(&format!("DELETE FROM {s}operation_outputs WHERE workflow_uuid = 'heal-1' AND function_id = 3")).await;
        sys.exec(&format!("UPDATE {s}workflow_status SET status = 'PENDING', output = NULL WHERE workflow_uuid = 'heal-1'")).await;

        let rt = dbs.launch().await;
        eventually(T, "recovery to finish heal-1", || async {
            sys.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE workflow_uuid = 'heal-1' AND status = 'SUCCESS'")).await == 1
        }).await;
        for id in 0..3 {
            assert_eq!(probe::count(&format!("{key}/{id}")), 1, "transaction {id} ran once");
        }
        let app = dbs.app.inspect().await;
        assert_eq!(app.scalar("SELECT CAST(SUM(v) AS BIGINT) FROM rows_t").await, 3, "each update applied once");
        let healed = sys
            .rows(&format!("SELECT function_name, output FROM {s}operation_outputs WHERE workflow_uuid = 'heal-1' AND function_id = 3"))
            .await;
        assert_eq!(healed, vec![vec![Some(name("counted_bump")), Some("1".into())]], "the step record was copied back");
        let output = sys.rows(&format!("SELECT output FROM {s}workflow_status WHERE workflow_uuid = 'heal-1'")).await;
        assert_eq!(cell(&output[0], 0), "[1,1,1]");
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Outside a workflow: once, its own transaction, no checkpoint. Nested: refused.

#[transaction]
async fn add_note(tx: &mut Tx, k: String) -> Result<i64, Error> {
    tx.query("INSERT INTO notes (k) VALUES ($1)")
        .bind(&k)
        .execute()
        .await?;
    tx.query("SELECT COUNT(*) FROM notes").fetch_scalar().await
}

#[transaction]
async fn nested(tx: &mut Tx) -> Result<i64, Error> {
    tx.query("INSERT INTO notes (k) VALUES ('outer')")
        .execute()
        .await?;
    add_note("inner".into()).await
}

tx_test! {
    [sqlite, postgres, postgres_separate]
    async fn outside_a_workflow_a_transaction_commits_once_and_records_nothing(dbs: Dbs) {
        let rt = dbs.launch().await;
        exec_all(&rt, &["CREATE TABLE notes (k TEXT NOT NULL)"]).await;
        let sys = dbs.sys_db().inspect().await;
        let s = dbs.s();
        let before = rt.metrics_snapshot();
        let n = within("add_note", rt.scope(add_note("plain".into()))).await.expect("commits");
        assert_eq!(n, 1);
        assert_eq!(rt.metrics_snapshot().commits - before.commits, 1, "one commit, no checkpoint");
        assert_eq!(sys.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status")).await, 0, "no workflow");
        assert_eq!(sys.scalar(&format!("SELECT COUNT(*) FROM {s}operation_outputs")).await, 0, "no step record");

        let err = within("nested", rt.scope(nested())).await.expect_err("a nested transaction is refused");
        assert!(matches!(err, Error::InStep(_)), "{err:?}");
        let app = dbs.app.inspect().await;
        assert_eq!(app.scalar("SELECT COUNT(*) FROM notes").await, 1, "the outer transaction rolled back");
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Options: read_only and isolation.

#[transaction(read_only)]
async fn count_notes(tx: &mut Tx) -> Result<i64, Error> {
    tx.query("SELECT COUNT(*) FROM notes").fetch_scalar().await
}

#[transaction(read_only)]
async fn write_in_read_only(tx: &mut Tx) -> Result<u64, Error> {
    tx.query("INSERT INTO notes (k) VALUES ('nope')")
        .execute()
        .await
}

async fn isolation(tx: &mut Tx) -> Result<String, Error> {
    if tx.backend_name() == "postgres" {
        tx.query("SELECT current_setting('transaction_isolation')")
            .fetch_scalar()
            .await
    } else {
        Ok("serializable".into())
    }
}

#[transaction]
async fn default_level(tx: &mut Tx) -> Result<String, Error> {
    isolation(tx).await
}

#[transaction(isolation = "repeatable_read")]
async fn repeatable_read_level(tx: &mut Tx) -> Result<String, Error> {
    isolation(tx).await
}

#[transaction(isolation = "read_committed")]
async fn read_committed_level(tx: &mut Tx) -> Result<String, Error> {
    isolation(tx).await
}

#[workflow]
async fn with_options() -> Result<(i64, bool, Vec<String>), Error> {
    let count = count_notes().await?;
    let refused = write_in_read_only().await.is_err();
    let levels = vec![
        default_level().await?,
        repeatable_read_level().await?,
        read_committed_level().await?,
    ];
    Ok((count, refused, levels))
}

tx_test! {
    [sqlite, postgres, postgres_separate]
    async fn read_only_and_isolation_options_apply(dbs: Dbs) {
        let rt = dbs.launch().await;
        exec_all(&rt, &["CREATE TABLE notes (k TEXT NOT NULL)", "INSERT INTO notes (k) VALUES ('a'), ('b')"]).await;
        let before = rt.metrics_snapshot();
        let (count, refused, levels) = within("with_options", rt.scope(with_options().with_id("options-1").into_future()))
            .await
            .expect("the workflow succeeds");
        let commits = rt.metrics_snapshot().commits - before.commits;
        assert_eq!(count, 2);
        assert!(refused, "a read-only transaction cannot write");
        if dbs.postgres() {
            assert_eq!(levels, ["serializable", "repeatable read", "read committed"]);
        }
        let per_rw_step = if dbs.separate() { 2 } else { 1 };
        // start + finish + 2 read-only steps (their record only) + 3 read-write steps.
        assert_eq!(commits, 2 + 2 + 3 * per_rw_step, "read-only steps cost their record only");
        let app = dbs.app.inspect().await;
        assert_eq!(app.scalar("SELECT COUNT(*) FROM notes").await, 2, "nothing written");
        let sys = dbs.sys_db().inspect().await;
        let s = dbs.s();
        let steps = sys
            .rows(&format!("SELECT function_id, function_name, output, error FROM {s}operation_outputs WHERE workflow_uuid = 'options-1' ORDER BY function_id"))
            .await;
        assert_eq!(steps.len(), 5, "{steps:?}");
        assert_eq!((cell(&steps[0], 1), cell(&steps[0], 2)), (name("count_notes").as_str(), "2"));
        assert_eq!(cell(&steps[1], 1), name("write_in_read_only"));
        assert!(steps[1][3].is_some(), "the refused write's error is recorded: {steps:?}");
        if dbs.separate() {
            let p = dbs.app_prefix();
            let ids = app.rows(&format!("SELECT function_id FROM {p}transaction_outputs WHERE workflow_uuid = 'options-1' ORDER BY function_id")).await;
            assert_eq!(ids, vec![vec![Some("3".to_owned())], vec![Some("4".to_owned())], vec![Some("5".to_owned())]],
                "read-only steps skip the app-side row");
        }
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Money and timestamps round-trip exactly on both backends.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
struct Entry {
    id: i32,
    amount: Numeric,
    approx: Option<Numeric>,
    at: DateTime<Utc>,
    local_at: Option<NaiveDateTime>,
    day: Option<NaiveDate>,
}

#[transaction]
async fn insert_entries(tx: &mut Tx, entries: Vec<Entry>) -> Result<(), Error> {
    for e in &entries {
        tx.query("INSERT INTO ledger (id, amount, approx, at, local_at, day) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(e.id)
            .bind(e.amount)
            .bind(e.approx)
            .bind(e.at)
            .bind(e.local_at)
            .bind(e.day)
            .execute()
            .await?;
    }
    Ok(())
}

#[transaction(read_only)]
async fn read_entries(tx: &mut Tx) -> Result<Vec<Entry>, Error> {
    tx.query("SELECT id, amount, approx, at, local_at, day FROM ledger ORDER BY at")
        .fetch_all()
        .await
}

/// Adds `cents` to one amount: read, compute in Rust, write back (exact on both backends).
#[transaction]
async fn credit(tx: &mut Tx, id: i32, amount: Numeric) -> Result<Numeric, Error> {
    let old: Numeric = tx
        .query("SELECT amount FROM ledger WHERE id = $1")
        .bind(id)
        .fetch_scalar()
        .await?;
    let new = Numeric(old.get() + amount.get());
    tx.query("UPDATE ledger SET amount = $1 WHERE id = $2")
        .bind(new)
        .bind(id)
        .execute()
        .await?;
    Ok(new)
}

#[workflow]
async fn ledger_round_trip(entries: Vec<Entry>) -> Result<(Vec<Entry>, Numeric), Error> {
    insert_entries(entries).await?;
    let credited = credit(1, "0.2".parse().map_err(|e| Error::Config(format!("{e}")))?).await?;
    Ok((read_entries().await?, credited))
}

fn num(s: &str) -> Numeric {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

tx_test! {
    [sqlite, postgres, postgres_separate]
    async fn money_and_timestamps_round_trip_exactly(dbs: Dbs) {
        let rt = dbs.launch().await;
        let ddl = if dbs.postgres() {
            "CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount NUMERIC NOT NULL, approx NUMERIC,              at TIMESTAMPTZ NOT NULL, local_at TIMESTAMP, day DATE)"
        } else {
            // Exact decimals are TEXT on SQLite; `approx` has NUMERIC affinity (SQLite may
            // store its values as integers or doubles: exact up to 15 digits).
            "CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount TEXT NOT NULL, approx NUMERIC,              at TEXT NOT NULL, local_at TEXT, day TEXT)"
        };
        exec_all(&rt, &[ddl]).await;
        let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("timestamp").with_timezone(&Utc);
        let entries = vec![
            Entry { id: 1, amount: num("0.10"), approx: Some(num("0.1")), at: at("2026-10-05T12:00:00.123456Z"),
                local_at: Some(at("2026-10-05T12:00:00.5Z").naive_utc()), day: NaiveDate::from_ymd_opt(2026, 10, 5) },
            Entry { id: 2, amount: num("12345678901234567.8901"), approx: Some(num("1234567.89")), at: at("1969-12-31T23:59:59.999999Z"),
                local_at: None, day: None },
            Entry { id: 3, amount: num("-0.0001"), approx: Some(num("42")), at: at("2026-10-05T12:00:00Z"),
                local_at: Some(at("1999-01-01T00:00:00Z").naive_utc()), day: NaiveDate::from_ymd_opt(1999, 12, 31) },
            Entry { id: 4, amount: num("79228162514264337593543950335"), approx: None, at: at("2026-10-05T12:00:00.000001Z"),
                local_at: None, day: None },
            // Nanoseconds are truncated to microseconds on both backends, the same way.
            Entry { id: 5, amount: num("0"), approx: Some(num("-3.5")), at: Utc.timestamp_opt(1_791_201_600, 999_999_999).unwrap(),
                local_at: None, day: None },
        ];
        let (read, credited) = within("ledger_round_trip", rt.scope(ledger_round_trip(entries.clone()).with_id("ledger-1").into_future()))
            .await
            .expect("the workflow succeeds");
        assert_eq!(credited, num("0.30"));
        let mut want: Vec<Entry> = entries
            .iter()
            .cloned()
            .map(|mut e| {
                e.at = micros(e.at);
                if e.id == 1 {
                    e.amount = num("0.30");
                }
                e
            })
            .collect();
        want.sort_by_key(|e| e.at);
        assert_eq!(read.iter().map(|e| e.id).collect::<Vec<_>>(), want.iter().map(|e| e.id).collect::<Vec<_>>(),
            "ORDER BY at is time order");
        for (got, want) in read.iter().zip(&want) {
            assert_eq!(got, want, "entry {} round-trips", want.id);
            assert_eq!(got.amount.to_string(), want.amount.to_string(), "the decimal keeps its scale");
        }
        // The recorded output (portable JSON) decodes to the same values.
        let replayed: (Vec<Entry>, Numeric) = within("get_result", rt.scope(async {
            DBOS::retrieve_workflow::<(Vec<Entry>, Numeric), Error>("ledger-1").await?.get_result().await
        })).await.expect("the recorded output decodes");
        assert_eq!(replayed, (read, credited));
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Recorded outputs keep any text (quotes, backslashes, placeholders, non-ASCII).

#[transaction]
async fn echo(tx: &mut Tx, text: String) -> Result<String, Error> {
    tx.query("SELECT $1").bind(&text).fetch_scalar().await
}

#[workflow]
async fn echo_twice(text: String) -> Result<(String, String), Error> {
    Ok((echo(text.clone()).await?, echo(format!("{text}!")).await?))
}

tx_test! {
    [sqlite, postgres, postgres_separate]
    async fn recorded_outputs_keep_quotes_backslashes_and_placeholders(dbs: Dbs) {
        let rt = dbs.launch().await;
        let text = "it's \\ a \"$1\" ü 🦀\n\t'); DROP TABLE x; --".to_owned();
        let got = within("echo_twice", rt.scope(echo_twice(text.clone()).with_id("echo-1").into_future()))
            .await
            .expect("the workflow succeeds");
        assert_eq!(got, (text.clone(), format!("{text}!")));
        let replayed: (String, String) = within("get_result", rt.scope(async {
            DBOS::retrieve_workflow::<(String, String), Error>("echo-1").await?.get_result().await
        })).await.expect("the recorded output decodes");
        assert_eq!(replayed, got);
        let sys = dbs.sys_db().inspect().await;
        let s = dbs.s();
        let outputs = sys.rows(&format!("SELECT output FROM {s}operation_outputs WHERE workflow_uuid = 'echo-1' ORDER BY function_id")).await;
        let first: String = serde_json::from_str(cell(&outputs[0], 0)).expect("JSON text");
        assert_eq!(first, text, "the stored step output is the exact text");
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Deadlocks (40P01) are retried like serialization failures.

#[transaction(isolation = "read_committed")]
async fn transfer(tx: &mut Tx, from: i64, to: i64) -> Result<(), Error> {
    tx.query("UPDATE rows_t SET v = v - 1 WHERE id = $1")
        .bind(from)
        .execute()
        .await?;
    // Both transfers hold their first row here, then want the other's.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.query("UPDATE rows_t SET v = v + 1 WHERE id = $1")
        .bind(to)
        .execute()
        .await?;
    Ok(())
}

#[workflow]
async fn transfer_once(from: i64, to: i64) -> Result<(), Error> {
    transfer(from, to).await
}

tx_test! {
    [postgres, postgres_separate]
    async fn a_deadlock_is_retried_until_both_transfers_commit(dbs: Dbs) {
        let rt = dbs.launch().await;
        exec_all(&rt, &[
            "CREATE TABLE rows_t (id INTEGER PRIMARY KEY, v BIGINT NOT NULL)",
            "INSERT INTO rows_t (id, v) VALUES (1, 10), (2, 10)",
        ]).await;
        let before = rt.metrics_snapshot();
        let (a, b) = rt
            .scope(async {
                let a = DBOS::start_workflow(transfer_once(1, 2).with_id("transfer-a")).await.expect("start");
                let b = DBOS::start_workflow(transfer_once(2, 1).with_id("transfer-b")).await.expect("start");
                (within("transfer a", a.get_result()).await, within("transfer b", b.get_result()).await)
            })
            .await;
        a.expect("transfer a commits");
        b.expect("transfer b commits");
        let retries = rt.metrics_snapshot().transaction_retries - before.transaction_retries;
        assert!(retries >= 1, "the deadlock victim was retried");
        let app = dbs.app.inspect().await;
        assert_eq!(
            app.rows("SELECT id, v FROM rows_t ORDER BY id").await,
            vec![vec![Some("1".into()), Some("10".into())], vec![Some("2".into()), Some("10".into())]],
            "each transfer applied once"
        );
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite: after an error that may have rolled the transaction back, nothing more runs.

#[transaction]
async fn swallow_disk_full(tx: &mut Tx) -> Result<(), Error> {
    tx.query("INSERT INTO notes (k) VALUES ('before')")
        .execute()
        .await?;
    let pages: i64 = tx.query("PRAGMA page_count").fetch_scalar().await?;
    tx.query(&format!("PRAGMA max_page_count = {pages}"))
        .execute()
        .await?;
    let full = tx
        .query("INSERT INTO notes (k) VALUES ($1)")
        .bind("x".repeat(1 << 20))
        .execute()
        .await;
    assert!(full.is_err(), "the database is full");
    // Swallowed: the body goes on as if nothing happened.
    let after = tx
        .query("INSERT INTO notes (k) VALUES ('after')")
        .execute()
        .await;
    assert!(after.is_err(), "no statement runs outside the transaction");
    Ok(())
}

tx_test! {
    [sqlite]
    async fn a_transaction_sqlite_may_have_rolled_back_is_not_committed(dbs: Dbs) {
        let rt = dbs.launch().await;
        exec_all(&rt, &["CREATE TABLE notes (k TEXT NOT NULL)"]).await;
        let err = within("swallow_disk_full", rt.scope(swallow_disk_full()))
            .await
            .expect_err("the transaction is not committed");
        assert!(err.to_string().contains("after one of its statements failed"), "{err}");
        let app = dbs.app.inspect().await;
        assert_eq!(app.scalar("SELECT COUNT(*) FROM notes").await, 0, "neither 'before' nor 'after' stayed");
        rt.shutdown().await;
    }
}
