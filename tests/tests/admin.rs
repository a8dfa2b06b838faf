//! The admin server (issue 11): DBOS's admin endpoints over HTTP on a launched runtime, on
//! SQLite and Postgres, behind a bearer token; bad input is a 4xx with a JSON message.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{both_backends, eventually, within};
use serde_json::{json, Value};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[step]
async fn admin_step(n: u32) -> Result<u32, Error> {
    Ok(n * 2)
}

#[workflow]
async fn admin_plain(n: u32) -> Result<u32, Error> {
    admin_step(n).await
}

#[workflow]
async fn admin_waits() -> Result<Option<String>, Error> {
    DBOS::recv("go", Duration::from_secs(120)).await
}

const TOKEN: &str = "s3cret-token";

/// One HTTP/1.1 request; returns the status and the body.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the admin server");
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn admin(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    within(path, call(addr, method, path, body, Some(TOKEN))).await
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

both_backends! {
    async fn the_admin_endpoints_list_inspect_cancel_resume_and_fork(db: TestDb) {
        let cfg = db.config("admin-app").with_executor_id("adm").with_admin_server(0).with_admin_token(TOKEN);
        let rt = within("launch", Runtime::launch(cfg)).await.expect("launch");
        let addr = rt.admin_address().expect("the admin server listens");
        assert!(addr.ip().is_loopback(), "bound to localhost by default: {addr}");

        // The token guards everything, the health check included.
        for token in [None, Some("wrong")] {
            let (status, body) = call(addr, "GET", "/dbos-healthz", None, token).await;
            assert_eq!(status, 401, "{body}");
            assert!(parse(&body)["error"].as_str().unwrap_or("").contains("bearer token"));
        }
        assert_eq!(admin(addr, "GET", "/dbos-healthz", None).await, (200, "healthy".to_owned()));

        let h = rt.start_workflow(admin_plain(21).with_id("a-done")).await.expect("start");
        assert_eq!(within("done", h.get_result()).await.expect("done"), 42);
        rt.start_workflow(admin_waits().with_id("a-wait")).await.expect("start");

        let (status, body) = admin(addr, "POST", "/workflows", Some("{}")).await;
        assert_eq!(status, 200, "{body}");
        let listed = parse(&body);
        let ids: Vec<&str> = listed.as_array().expect("a list").iter().filter_map(|w| w["WorkflowUUID"].as_str()).collect();
        assert_eq!(ids.len(), 2, "{body}");
        let (_, body) = admin(addr, "POST", "/workflows", Some(r#"{"status": "PENDING", "load_input": true}"#)).await;
        let pending = parse(&body);
        assert_eq!(pending[0]["WorkflowUUID"], "a-wait", "{body}");
        assert_eq!(pending[0]["Input"], r#"{"namedArgs":{},"positionalArgs":[]}"#);
        let (status, body) = admin(addr, "GET", "/workflows/a-done", None).await;
        assert_eq!(status, 200);
        let done = parse(&body);
        assert_eq!((done["Status"].as_str(), done["Output"].as_str(), done["Priority"].as_str()), (Some("SUCCESS"), Some("42"), Some("0")));
        let (status, body) = admin(addr, "GET", "/workflows/a-done/steps", None).await;
        assert_eq!(status, 200);
        let steps = parse(&body);
        assert_eq!((steps[0]["function_id"].as_i64(), steps[0]["function_name"].as_str(), steps[0]["output"].as_str()), (Some(1), Some("admin::admin_step"), Some("42")), "{body}");

        // Cancel, resume, fork: as DBOS's routes answer. The cancel comes once the recv has
        // recorded its deadline, so the resumed run has a record to run from (the metrics
        // below count it as a recovery).
        eventually(Duration::from_secs(20), "a-wait's recv records its deadline", || async {
            rt.get_workflow_steps("a-wait").await.is_ok_and(|steps| !steps.is_empty())
        })
        .await;
        assert_eq!(admin(addr, "POST", "/workflows/a-wait/cancel", None).await.0, 204);
        assert_eq!(rt.get_status("a-wait").await.expect("status").expect("exists").status, "CANCELLED");
        assert_eq!(admin(addr, "POST", "/workflows/a-wait/resume", None).await.0, 204);
        eventually(Duration::from_secs(20), "the resumed workflow runs again", || async {
            rt.get_status("a-wait").await.ok().flatten().is_some_and(|s| s.status == "PENDING")
        })
        .await;
        // PENDING comes with the claim, a moment before the resumed recv waits: give it that
        // moment, so the message wakes a waiter (the metrics below count that wake-up).
        tokio::time::sleep(Duration::from_millis(300)).await;
        rt.send("a-wait", &"go on", "go").await.expect("send");
        let h = rt.retrieve_workflow::<Option<String>, Error>("a-wait").await.expect("retrieve");
        assert_eq!(within("resumed", h.get_result()).await.expect("resumed"), Some("go on".to_owned()));
        let (status, body) = admin(addr, "POST", "/workflows/a-done/fork", Some(r#"{"start_step": 1, "new_workflow_id": "a-fork"}"#)).await;
        assert_eq!((status, parse(&body)), (200, json!({"workflow_id": "a-fork"})));
        let h = rt.retrieve_workflow::<u32, Error>("a-fork").await.expect("retrieve");
        assert_eq!(within("fork", h.get_result()).await.expect("fork"), 42);
        let (status, body) = admin(addr, "POST", "/workflows/a-done/restart", None).await;
        assert_eq!(status, 200, "{body}");
        let restarted = parse(&body)["workflow_id"].as_str().expect("the restart's ID").to_owned();
        // Finished before the queue listing below, which would show it while it runs.
        let h = rt.retrieve_workflow::<u32, Error>(&restarted).await.expect("retrieve");
        assert_eq!(within("restart", h.get_result()).await.expect("restart"), 42);

        // Bad input: 4xx with a message, never a 5xx.
        for (method, path, body, expected) in [
            ("GET", "/workflows/nope", None, 404),
            ("GET", "/workflows/nope/steps", None, 404),
            ("POST", "/workflows/nope/cancel", None, 404),
            ("POST", "/workflows/nope/resume", None, 404),
            ("POST", "/workflows/a-done/fork", Some(r#"{"start_step": 9}"#), 400),
            ("POST", "/workflows/a-done/fork", Some(r#"{"start_step": "two"}"#), 400),
            ("POST", "/workflows", Some("{"), 400),
            ("POST", "/workflows", Some(r#"{"status": "RUNNING"}"#), 400),
            ("POST", "/workflows", Some(r#"{"start_time": "yesterday"}"#), 400),
            ("POST", "/dbos-workflow-recovery", Some(r#"{"not": "a list"}"#), 400),
            ("GET", "/workflows/bad%zzescape", None, 400),
            ("GET", "/no-such-route", None, 404),
        ] {
            let (status, text) = admin(addr, method, path, body).await;
            assert_eq!(status, expected, "{method} {path} {body:?}: {text}");
            assert!(parse(&text)["error"].is_string(), "{method} {path}: {text}");
        }

        // DBOS's operational endpoints.
        let (status, body) = admin(addr, "POST", "/dbos-workflow-recovery", Some(r#"["some-dead-executor"]"#)).await;
        assert_eq!((status, parse(&body)), (200, json!([])));
        let (status, body) = admin(addr, "GET", "/dbos-workflow-queues-metadata", None).await;
        assert_eq!((status, parse(&body)), (200, json!([{"name": "_dbos_internal_queue"}])));
        let (status, body) = admin(addr, "POST", "/queues", None).await;
        assert_eq!((status, parse(&body)), (200, json!([])));
        assert_eq!(admin(addr, "POST", "/dbos-garbage-collect", Some(r#"{"rows_threshold": 1}"#)).await.0, 204);
        let (_, body) = admin(addr, "POST", "/workflows", None).await;
        assert_eq!(parse(&body).as_array().map(Vec::len), Some(1), "one workflow kept: {body}");
        // Prometheus: what ran here, parsed by a Prometheus text-format parser.
        let (status, text) = admin(addr, "GET", "/metrics", None).await;
        assert_eq!(status, 200, "{text}");
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format");
        let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
                .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
        };
        let plain = "admin::admin_plain";
        assert_eq!(value("dbos_workflows_started_total", &[("name", plain)]), 3.0, "a-done, a-fork and the restart");
        assert_eq!(value("dbos_workflows_finished_total", &[("name", plain), ("status", "SUCCESS")]), 3.0);
        assert_eq!(value("dbos_workflows_finished_total", &[("name", "admin::admin_waits"), ("status", "CANCELLED")]), 1.0);
        assert_eq!(value("dbos_workflows_finished_total", &[("name", "admin::admin_waits"), ("status", "SUCCESS")]), 1.0);
        assert!(value("dbos_recoveries_total", &[]) >= 1.0, "the resumed workflow ran from its records");
        assert!(value("dbos_commits_total", &[]) > 5.0);
        assert!(value("dbos_notification_wakeups_total", &[]) >= 1.0, "the resumed recv was woken by its message");
        assert_eq!(value("dbos_workflows_running", &[]), 0.0);
        assert_eq!(value("dbos_workflows_unloaded", &[]), 0.0);
        let steps = scrape.samples.iter().find(|s| s.metric == "dbos_step_duration_seconds" && s.labels.get("name") == Some("admin::admin_step"));
        match steps.map(|s| &s.value) {
            Some(prometheus_parse::Value::Histogram(buckets)) => {
                let total = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
                assert_eq!(total, 3.0, "one step per run of admin_plain: {buckets:?}");
            }
            other => panic!("no step histogram: {other:?}\n{text}"),
        }
        assert_eq!(call(addr, "GET", "/metrics", None, None).await.0, 401, "metrics need the token too");

        assert_eq!(admin(addr, "GET", "/deactivate", None).await, (200, "deactivated".to_owned()));
        rt.shutdown().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the admin server stops with the runtime");
    }
}
