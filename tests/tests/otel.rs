//! OpenTelemetry (issue 15, part 2, the `otel` feature): with the runtime's spans exported
//! through `tracing-opentelemetry` to an in-memory exporter, a workflow's spans form one tree in
//! its caller's trace, also when it runs off a queue and when it is recovered after a crash (the
//! trace context is stored in `workflow_status.attributes` under DBOS's `dbos.otelContext`);
//! `Otel::from_env` sends spans to the OTLP endpoint the standard variables name.

use dbos_runtime::otel::Otel;
use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{both_backends, eventually, probe, within, TestDb};
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::future::IntoFuture;
use std::sync::OnceLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

const T: Duration = Duration::from_secs(15);

#[path = "../src/otel_crash.rs"]
mod otel_crash;

/// The in-memory exporter behind this test binary's global subscriber.
fn exporter() -> &'static InMemorySpanExporter {
    static E: OnceLock<InMemorySpanExporter> = OnceLock::new();
    E.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let otel = Otel::with_provider(provider);
        let subscriber = tracing_subscriber::registry().with(otel.layer());
        tracing::subscriber::set_global_default(subscriber)
            .expect("one subscriber per test binary");
        exporter
    })
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// Finished spans named `name` whose `operationUUID` is `id`.
fn spans_of(all: &[SpanData], name: &str, id: &str) -> Vec<SpanData> {
    all.iter()
        .filter(|s| s.name == name && attr(s, "operationUUID").as_deref() == Some(id))
        .cloned()
        .collect()
}

/// Waits until `n` runs of workflow `id` have ended their `dbos.workflow` span: the span ends
/// when the execution's task does, a moment after its outcome reached the caller.
async fn runs_ended(id: &str, n: usize) {
    eventually(T, &format!("{n} ended runs of {id}"), || {
        let ended = spans_of(&finished(), "dbos.workflow", id).len();
        async move { ended >= n }
    })
    .await;
}

fn finished() -> Vec<SpanData> {
    exporter().get_finished_spans().expect("finished spans")
}

fn config(db: &TestDb) -> DbosConfig {
    db.config("otel-tests")
        .with_version("otel-1")
        .with_executor_id("otel-local")
        .with_shutdown_timeout(Duration::ZERO)
}

#[step]
async fn before(key: String) -> Result<u32, Error> {
    probe::bump(&format!("{key}/before"));
    Ok(1)
}

#[step]
async fn after(key: String) -> Result<u32, Error> {
    probe::bump(&format!("{key}/after"));
    probe::pass(&key).await;
    Ok(2)
}

#[workflow]
async fn traced(key: String) -> Result<u32, Error> {
    let a = before(key.clone()).await?;
    let b = after(key).await?;
    Ok(a + b)
}

#[queue]
static OTEL_QUEUE: Queue = Queue::new("otel-queue");

both_backends! {
    async fn a_recovered_workflow_continues_its_callers_trace(db: TestDb) {
        exporter();
        let key = format!("{}/recovered", db.url);
        let id = format!("recovered-{:?}", db.backend);
        let rt = within("launch", Runtime::launch(config(&db))).await.expect("launch");
        let request = tracing::info_span!("request");
        let (trace_id, request_id) = {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let cx = request.context();
            use opentelemetry::trace::TraceContextExt;
            let sc = cx.span().span_context().clone();
            (sc.trace_id(), sc.span_id())
        };
        assert_ne!(trace_id, TraceId::INVALID, "the request span is exported");
        rt.scope(async {
            DBOS::start_workflow(traced(key.clone()).with_id(&id)).await.expect("start");
        }.instrument(request.clone()))
        .await;
        eventually(T, "the second step started", || async { probe::count(&format!("{key}/after")) == 1 }).await;
        // The crash: the execution stops without an outcome.
        rt.shutdown().await;
        drop(request);

        let x = db.inspect().await;
        let stored = x.rows(&format!(
            "SELECT CAST(attributes AS TEXT) FROM {}workflow_status WHERE workflow_uuid = '{id}'", db.sys()
        )).await;
        let stored = stored[0][0].clone().expect("attributes are written");
        let doc: serde_json::Value = serde_json::from_str(&stored).expect("attributes are JSON");
        let traceparent = doc["dbos.otelContext"]["traceparent"].as_str().expect("a W3C traceparent");
        assert!(traceparent.contains(&trace_id.to_string()), "{traceparent} names the trace {trace_id}");

        probe::open(&key);
        let rt2 = within("relaunch", Runtime::launch(config(&db))).await.expect("relaunch");
        let out = within("recovered", rt2.scope(async {
            DBOS::retrieve_workflow::<u32, Error>(&id).await.expect("retrieve").get_result().await
        })).await;
        assert_eq!(out.expect("recovered"), 3);
        rt2.shutdown().await;

        runs_ended(&id, 2).await;
        let all = finished();
        let runs = spans_of(&all, "dbos.workflow", &id);
        assert_eq!(runs.len(), 2, "the first execution and the recovered one: {runs:#?}");
        for run in &runs {
            assert_eq!(run.span_context.trace_id(), trace_id, "every execution is in the caller's trace");
            assert_eq!(run.parent_span_id, request_id, "and a child of the caller's span");
        }
        let steps: Vec<(String, SpanId, TraceId)> = all
            .iter()
            .filter(|s| s.name == "dbos.step" && attr(s, "operationUUID").as_deref() == Some(id.as_str()))
            .map(|s| (attr(s, "operationName").unwrap_or_default(), s.parent_span_id, s.span_context.trace_id()))
            .collect();
        assert_eq!(steps.len(), 3, "before, after (cut off), after (recovered): {steps:?}");
        let run_ids: Vec<SpanId> = runs.iter().map(|r| r.span_context.span_id()).collect();
        for (name, parent, trace) in &steps {
            assert_eq!(*trace, trace_id, "{name} is in the same trace");
            assert!(run_ids.contains(parent), "{name} is inside one of the workflow's executions");
        }
        let recovered = runs.iter().find(|r| attr(r, "resumed").as_deref() == Some("true")).expect("the recovered run");
        let in_recovered: Vec<&str> = steps
            .iter()
            .filter(|(_, parent, _)| *parent == recovered.span_context.span_id())
            .map(|(name, _, _)| name.as_str())
            .collect();
        assert_eq!(in_recovered, ["otel::after"], "the recovered run replays `before` and runs `after`");
    }
}

both_backends! {
    async fn an_enqueued_workflow_runs_in_its_enqueuers_trace(db: TestDb) {
        exporter();
        let key = format!("{}/queued", db.url);
        probe::open(&key);
        let id = format!("queued-{:?}", db.backend);
        let rt = within("launch", Runtime::launch(config(&db))).await.expect("launch");
        let request = tracing::info_span!("enqueue-request");
        let (trace_id, request_id) = {
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let sc = request.context().span().span_context().clone();
            (sc.trace_id(), sc.span_id())
        };
        let handle = rt
            .scope(OTEL_QUEUE.enqueue(traced(key.clone()).with_id(&id)).instrument(request.clone()))
            .await
            .expect("enqueue");
        drop(request);
        assert_eq!(within("queued", handle.get_result()).await.expect("ran"), 3);
        rt.shutdown().await;

        runs_ended(&id, 1).await;
        let all = finished();
        let runs = spans_of(&all, "dbos.workflow", &id);
        assert_eq!(runs.len(), 1, "{runs:#?}");
        assert_eq!(runs[0].span_context.trace_id(), trace_id, "the dispatcher's run joins the enqueuer's trace");
        let enqueue = all
            .iter()
            .find(|s| s.name == "dbos.enqueue" && s.span_context.trace_id() == trace_id)
            .expect("the enqueue itself is a span of the request");
        assert_eq!(enqueue.parent_span_id, request_id, "request → enqueue");
        assert_eq!(runs[0].parent_span_id, enqueue.span_context.span_id(), "enqueue → the workflow's run");
    }
}

both_backends! {
    async fn without_a_trace_nothing_is_stored(db: TestDb) {
        exporter();
        let key = format!("{}/untraced", db.url);
        probe::open(&key);
        let rt = within("launch", Runtime::launch(config(&db))).await.expect("launch");
        let out = within("untraced", rt.scope(traced(key).with_id("untraced").into_future())).await;
        assert_eq!(out.expect("ran"), 3);
        rt.shutdown().await;
        let x = db.inspect().await;
        let n = x.scalar(&format!(
            "SELECT COUNT(*) FROM {}workflow_status WHERE workflow_uuid = 'untraced' AND attributes IS NULL", db.sys()
        )).await;
        assert_eq!(n, 1, "no trace context, no attributes");
    }
}

/// `Otel::from_env` sends spans over OTLP/HTTP to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: a fake
/// collector on a local port receives a protobuf POST on `/v1/traces` carrying the span's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otlp_exporter_posts_spans_to_the_configured_endpoint() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Set before any exporter reads them; this test is the only one here that reads them.
    std::env::set_var(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        format!("http://127.0.0.1:{port}/v1/traces"),
    );
    std::env::set_var("OTEL_SERVICE_NAME", "otel-export-test");
    let collector = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buf = [0_u8; 8192];
        // Headers, then Content-Length bytes of body.
        loop {
            let n = conn.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
        }
        conn.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )
        .await
        .expect("answer");
        request
    });

    let otel = Otel::from_env("ignored-because-OTEL_SERVICE_NAME-is-set")
        .expect("exporter from the environment");
    let subscriber = tracing_subscriber::registry().with(otel.layer());
    let dispatch = tracing::Dispatch::new(subscriber);
    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!("exported-span-name");
        span.in_scope(|| tracing::info!("inside"));
    });
    let flushed = tokio::task::spawn_blocking(move || otel.shutdown())
        .await
        .expect("join");
    flushed.expect("the last batch was sent");
    let request = within("the collector's request", collector)
        .await
        .expect("collector");
    let text = String::from_utf8_lossy(&request);
    assert!(text.starts_with("POST /v1/traces "), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/x-protobuf"),
        "{text}"
    );
    assert!(
        text.contains("exported-span-name"),
        "the span's name is in the protobuf body"
    );
    assert!(
        text.contains("otel-export-test"),
        "the service name from OTEL_SERVICE_NAME"
    );
}

both_backends! {
    async fn a_workflow_recovered_after_a_sigkill_continues_the_trace_of_the_killed_process(db: TestDb) {
        exporter();
        let id = format!("otel-crash-{:?}", db.backend);
        // Bootstrap the schema here, so the worker's launch does not race a second creator.
        let rt = within("launch", Runtime::launch(db.config("otel-crash"))).await.expect("launch");
        rt.shutdown().await;
        let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker_otel"))
            .env("DB_URL", &db.url)
            .env("WORKFLOW_ID", &id)
            .env("OTEL_WORKER_BLOCK", "1")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the worker");
        let stdout = worker.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout);
        let mut line = String::new();
        within("the worker's trace", tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line)).await.expect("read");
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"TRACE"), "{line}");
        let (trace_id, request_id) = (words[1].to_owned(), words[2].to_owned());
        let x = db.inspect().await;
        let s = db.sys();
        eventually(T, "the worker recorded the first step", || async {
            x.scalar(&format!("SELECT COUNT(*) FROM {s}operation_outputs WHERE workflow_uuid = '{id}'")).await == 1
        })
        .await;
        worker.start_kill().expect("SIGKILL");
        worker.wait().await.expect("reaped");

        // The same executor and version come back in this process and recover it.
        let config = db.config("otel-crash").with_version("otel-crash-1").with_executor_id("otel-crash");
        let rt = within("relaunch", Runtime::launch(config)).await.expect("relaunch");
        let out = within("recovered", rt.scope(async {
            DBOS::retrieve_workflow::<u32, Error>(&id).await.expect("retrieve").get_result().await
        })).await;
        assert_eq!(out.expect("recovered"), 3);
        rt.shutdown().await;

        runs_ended(&id, 1).await;
        let all = finished();
        let runs = spans_of(&all, "dbos.workflow", &id);
        assert_eq!(runs.len(), 1, "this process ran it once: {runs:#?}");
        assert_eq!(runs[0].span_context.trace_id().to_string(), trace_id, "the killed process's trace continues");
        assert_eq!(runs[0].parent_span_id.to_string(), request_id, "under the killed process's request span");
        let steps = spans_of(&all, "dbos.step", &id);
        assert_eq!(steps.len(), 1, "only the unrecorded step runs here: {steps:#?}");
        assert_eq!(attr(&steps[0], "operationName").as_deref(), Some("otel_crash_second"));
        assert_eq!(steps[0].parent_span_id, runs[0].span_context.span_id());
    }
}
