//! Interop with DBOS Python (pip package `dbos==2.31.1`, the release of our schema 108) on one
//! Postgres database: DBOS Python's `DBOSClient` lists our workflows, reads their steps,
//! cancels and resumes one, and enqueues a workflow our process runs by name with
//! portable-JSON arguments; our `dbos` CLI lists, cancels and resumes a workflow DBOS Python
//! started.
//!
//! Needs `DBOS_PYTHON`: a Python with that package (`.ci/run` makes one). Without it the test
//! says it is skipped, unless `DBOS_REQUIRE_INTEROP=1` (as in CI), which makes it a failure.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{eventually, within, TestDb};
use serde_json::Value;

#[step]
async fn interop_add(x: i64) -> Result<i64, Error> {
    Ok(x + 1)
}

#[workflow(name = "interop_ok")]
async fn interop_ok(x: i64) -> Result<i64, Error> {
    let y = interop_add(x).await?;
    interop_add(y).await
}

#[workflow(name = "interop_wait")]
async fn interop_wait() -> Result<Option<String>, Error> {
    DBOS::recv("go", Duration::from_secs(120)).await
}

#[workflow(name = "interop_double")]
async fn interop_double(x: i64) -> Result<i64, Error> {
    Ok(x * 2)
}

/// Runs the Python side; returns its stdout as JSON (or Null when it printed nothing).
async fn python(py: &str, url: &str, args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/dbos_python.py");
    let out = tokio::process::Command::new(py)
        .arg(script)
        .args(args)
        .env("SYS_DB_URL", url)
        .output()
        .await
        .expect("run DBOS Python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "DBOS Python {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("").trim();
    if last.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("DBOS Python {args:?} printed {stdout}: {e}"))
    }
}

async fn cli(url: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dbos"))
        .arg("--sys-db-url")
        .arg(url)
        .args(args)
        .output()
        .await
        .expect("run dbos");
    assert!(
        out.status.success(),
        "dbos {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

mod dbos_python_and_our_cli_share_one_database {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(py) = std::env::var("DBOS_PYTHON").ok().filter(|p| !p.is_empty()) else {
            assert!(
                std::env::var("DBOS_REQUIRE_INTEROP").as_deref() != Ok("1"),
                "DBOS_REQUIRE_INTEROP=1 but DBOS_PYTHON is not set"
            );
            eprintln!("skipped: DBOS_PYTHON is not set (a Python with `pip install dbos==2.31.1`)");
            return;
        };
        let db = TestDb::fresh(dbos_tests::Backend::Postgres, "cli_interop").await;
        let py_url = db.url.replacen("postgres://", "postgresql://", 1);
        let cfg = || {
            db.config("rs-app")
                .with_executor_id("rs")
                .with_version("rs-1")
        };
        let rt = within("launch", Runtime::launch(cfg()))
            .await
            .expect("launch");
        let h = rt
            .start_workflow(interop_ok(3).with_id("rs-ok"))
            .await
            .expect("start");
        assert_eq!(within("rs-ok", h.get_result()).await.expect("rs-ok"), 5);
        let waiting = rt
            .start_workflow(interop_wait().with_id("rs-wait"))
            .await
            .expect("start");
        let x = db.inspect().await;
        eventually(Duration::from_secs(20), "rs-wait waits", || async {
            x.scalar("SELECT COUNT(*) FROM dbos.operation_outputs WHERE workflow_uuid = 'rs-wait'")
                .await
                == 1
        })
        .await;

        // DBOS Python reads what we wrote.
        let listed = python(&py, &py_url, &["list"]).await;
        let mut seen: Vec<(String, String, String)> = listed
            .as_array()
            .expect("a list")
            .iter()
            .map(|w| {
                (
                    w["id"].as_str().unwrap_or("").to_owned(),
                    w["status"].as_str().unwrap_or("").to_owned(),
                    w["name"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                (
                    "rs-ok".to_owned(),
                    "SUCCESS".to_owned(),
                    "interop_ok".to_owned()
                ),
                (
                    "rs-wait".to_owned(),
                    "PENDING".to_owned(),
                    "interop_wait".to_owned()
                ),
            ]
        );
        let steps = python(&py, &py_url, &["steps", "rs-ok"]).await;
        let steps: Vec<(i64, String, i64)> = steps
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| {
                (
                    s["function_id"].as_i64().unwrap_or(0),
                    s["function_name"].as_str().unwrap_or("").to_owned(),
                    s["output"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        let add = format!(
            "{}::interop_add",
            module_path!().split("::").next().unwrap_or("")
        );
        assert_eq!(
            steps,
            [(1, add.clone(), 4), (2, add, 5)],
            "DBOS Python decodes our portable JSON outputs"
        );

        // DBOS Python cancels a workflow we run, and tells nobody: the message that arrives
        // next is not consumed and nothing is recorded (the store's fault in the issue).
        python(&py, &py_url, &["cancel", "rs-wait"]).await;
        rt.send("rs-wait", &"after the cancel", "go")
            .await
            .expect("send");
        let result = within("the cancelled workflow", waiting.get_result()).await;
        assert!(
            matches!(result, Err(Error::WorkflowCancelled(_))),
            "{result:?}"
        );
        let unconsumed = x.scalar("SELECT COUNT(*) FROM dbos.notifications WHERE destination_uuid = 'rs-wait' AND NOT consumed").await;
        assert_eq!(unconsumed, 1, "the message waits for the workflow");
        // ...and resumes it: our dispatcher takes it back and it gets that message.
        python(&py, &py_url, &["resume", "rs-wait"]).await;
        let h = rt
            .retrieve_workflow::<Option<String>, Error>("rs-wait")
            .await
            .expect("retrieve");
        assert_eq!(
            within("resumed", h.get_result()).await.expect("resumed"),
            Some("after the cancel".to_owned())
        );

        // DBOS Python enqueues one of our workflows by name with portable-JSON arguments.
        python(&py, &py_url, &["enqueue", "interop_double", "py-enq", "21"]).await;
        let h = rt
            .retrieve_workflow::<i64, Error>("py-enq")
            .await
            .expect("retrieve");
        assert_eq!(within("py-enq", h.get_result()).await.expect("py-enq"), 42);
        let got = python(&py, &py_url, &["get", "py-enq"]).await;
        assert_eq!(
            (got["status"].as_str(), got["output"].as_i64()),
            (Some("SUCCESS"), Some(42)),
            "{got}"
        );
        rt.shutdown().await;

        // A DBOS Python application starts a workflow and dies; our CLI lists, cancels and
        // resumes it.
        python(&py, &py_url, &["app", "py-1"]).await;
        let listed = cli(&db.url, &["--json", "workflow", "list", "-p", "py-"]).await;
        let listed: Value = serde_json::from_str(&listed).expect("json");
        assert_eq!(listed[0]["workflow_id"], "py-1", "{listed}");
        assert_eq!(listed[0]["status"], "PENDING");
        assert_eq!(
            listed[0]["serialization"], "py_pickle",
            "DBOS Python's own format"
        );
        assert_eq!(
            cli(&db.url, &["workflow", "cancel", "py-1"]).await,
            "cancelled py-1\n"
        );
        assert_eq!(
            python(&py, &py_url, &["get", "py-1"]).await["status"],
            "CANCELLED"
        );
        assert!(cli(&db.url, &["workflow", "resume", "py-1"])
            .await
            .starts_with("resumed py-1"));
        let got = python(&py, &py_url, &["get", "py-1"]).await;
        assert_eq!(
            got["status"], "ENQUEUED",
            "back on its queue for a DBOS Python process of its version: {got}"
        );
        println!("DBOS Python 2.31.1 and our runtime and CLI shared one database both ways");
    }
}
