//! The admin server (feature `admin`, [`DbosConfig::admin_port`](crate::DbosConfig::admin_port)):
//! DBOS's admin endpoints over HTTP, with the shapes DBOS Python 2.31 serves, on a launched
//! runtime. JSON errors with 4xx for bad input; an optional bearer token.
//!
//! | route | does |
//! |---|---|
//! | `GET /dbos-healthz` | `healthy` |
//! | `GET or POST /deactivate` | schedules start no new ticks |
//! | `POST /dbos-workflow-recovery` | body `["executor", ...]`: re-enqueue their PENDING workflows of this version |
//! | `GET /dbos-workflow-queues-metadata` | the queues this process knows |
//! | `POST /workflows`, `POST /queues` | list (filters in the body) |
//! | `GET /workflows/{id}`, `GET /workflows/{id}/steps` | one workflow, its steps |
//! | `POST /workflows/{id}/cancel`, `.../resume` | 204 |
//! | `POST /workflows/{id}/restart`, `.../fork` | `{"workflow_id": new}` |
//! | `POST /dbos-garbage-collect`, `POST /dbos-global-timeout` | 204 |

use crate::error::Error;
use crate::manage::ForkOptions;
use crate::queue::INTERNAL_QUEUE;
use crate::runtime::Runtime;
use crate::sysdb::{StepInfo, WorkflowFilter, WorkflowInfo};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

struct State {
    rt: Runtime,
    token: Option<String>,
}

/// Binds the admin server and runs it on the current tokio runtime; the runtime stops it at
/// shutdown.
pub(crate) fn start(rt: &Runtime) -> crate::Result<()> {
    let cfg = rt.config();
    let Some(port) = cfg.admin_port else {
        return Ok(());
    };
    let addr = (cfg.admin_address, port);
    let state = web::Data::new(State {
        rt: rt.clone(),
        token: cfg.admin_token.as_ref().map(|t| t.0.clone()),
    });
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(1 << 20))
            .default_service(web::to(dispatch))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(addr)
    .map_err(|e| {
        Error::Config(format!(
            "cannot bind the admin server to {}:{port}: {e}",
            addr.0
        ))
    })?;
    let bound = server.addrs().first().copied();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!("admin server failed: {e}");
        }
    });
    tracing::info!(
        "admin server on {}",
        bound.map_or_else(String::new, |a| a.to_string())
    );
    rt.keep_admin(
        bound,
        Box::new(move || Box::pin(async move { handle.stop(true).await })),
    );
    Ok(())
}

/// An admin request's failure: its status and message.
struct Failure(StatusCode, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let status = match &e {
            Error::NonExistentWorkflow(_) => StatusCode::NOT_FOUND,
            Error::InvalidArgument(_) | Error::InvalidWorkflowId { .. } => StatusCode::BAD_REQUEST,
            Error::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(status, e.to_string())
    }
}

fn bad(message: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message.into())
}

type Answer = Result<HttpResponse, Failure>;

async fn dispatch(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let mut set_cookie = None;
    if let Some(token) = &state.token {
        let header = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        // The console in a browser: `/?token=...` once, then a cookie.
        let cookie = req.cookie(COOKIE).map(|c| c.value().to_owned());
        let query = query_pairs(req.query_string())
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v);
        if query.as_deref() == Some(token.as_str()) {
            set_cookie = query.clone();
        }
        let given = [header, cookie, query];
        if !given.iter().flatten().any(|g| same_secret(g, token)) {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <DBOS_ADMIN_TOKEN>, or open the console at /?token=<DBOS_ADMIN_TOKEN>)",
            );
        }
    }
    let mut response = match route(&req, &body, &state.rt).await {
        Ok(response) => response,
        Err(Failure(status, message)) => error(status, &message),
    };
    if let Some(token) = set_cookie {
        let cookie = actix_web::cookie::Cookie::build(COOKIE, token)
            .path("/")
            .http_only(true)
            .same_site(actix_web::cookie::SameSite::Strict)
            .finish();
        let _ = response.add_cookie(&cookie);
    }
    response
}

/// Compares a given token with the configured one in time that does not depend on where
/// they differ (only on their lengths).
fn same_secret(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    diff == 0
}

/// The cookie the console's page and API calls carry the token in.
const COOKIE: &str = "dbos_admin_token";

/// The console: one page, no external assets.
const CONSOLE: &str = include_str!("admin/console.html");

/// `a=1&b=x%20y` as pairs, percent- and plus-decoded (undecodable pairs are dropped).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k = percent_decode(&k.replace('+', " ")).ok()?;
            let v = percent_decode(&v.replace('+', " ")).ok()?;
            Some((k, v))
        })
        .collect()
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

async fn route(req: &HttpRequest, body: &[u8], rt: &Runtime) -> Answer {
    let path = req.path().trim_end_matches('/');
    let segments: Vec<String> = path
        .split('/')
        .skip(1)
        .map(percent_decode)
        .collect::<Result<_, _>>()?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (req.method().as_str(), segments.as_slice()) {
        ("GET", ["dbos-healthz"]) => Ok(HttpResponse::Ok().body("healthy")),
        ("GET", [] | [""]) => Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(CONSOLE)),
        ("GET", ["console", "api", "workflows"]) => console_list(req, rt).await,
        ("GET", ["console", "api", "overview"]) => console_overview(rt).await,
        ("GET", ["metrics"]) => Ok(HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(prometheus(rt).await?)),
        ("GET", ["console", "api", "workflows", id]) => console_workflow(rt, id).await,
        ("GET" | "POST", ["deactivate"]) => {
            rt.deactivate();
            Ok(HttpResponse::Ok().body("deactivated"))
        }
        ("POST", ["dbos-workflow-recovery"]) => {
            let executors: Vec<String> = parse(body, "a JSON array of executor IDs")?;
            let mut ids = Vec::new();
            for executor in &executors {
                ids.extend(rt.db().recover_executor(executor, INTERNAL_QUEUE).await?);
            }
            rt.wake_dispatcher();
            Ok(HttpResponse::Ok().json(ids))
        }
        ("GET", ["dbos-workflow-queues-metadata"]) => {
            Ok(HttpResponse::Ok().json(json!([{ "name": INTERNAL_QUEUE }])))
        }
        ("POST", ["workflows"]) => {
            let f: Filters = parse_or_empty(body)?;
            let rows = rt.list_workflows(&f.filter(false)?).await?;
            Ok(HttpResponse::Ok().json(rows.iter().map(workflow_output).collect::<Vec<_>>()))
        }
        ("POST", ["queues"]) => {
            let f: Filters = parse_or_empty(body)?;
            let rows = rt.list_queued_workflows(&f.filter(true)?).await?;
            Ok(HttpResponse::Ok().json(rows.iter().map(workflow_output).collect::<Vec<_>>()))
        }
        ("GET", ["workflows", id]) => {
            let filter = WorkflowFilter::new().workflow_id(*id).with_payloads();
            match rt.list_workflows(&filter).await?.first() {
                Some(w) => Ok(HttpResponse::Ok().json(workflow_output(w))),
                None => Err(Error::NonExistentWorkflow((*id).to_owned()).into()),
            }
        }
        ("GET", ["workflows", id, "steps"]) => {
            let steps = rt.get_workflow_steps(id).await?;
            Ok(HttpResponse::Ok().json(steps.iter().map(step_output).collect::<Vec<_>>()))
        }
        ("POST", ["workflows", id, "cancel"]) => {
            rt.cancel_workflow(id).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        ("POST", ["workflows", id, "resume"]) => {
            rt.resume_workflow(id).await?;
            Ok(HttpResponse::NoContent().finish())
        }
        ("POST", ["workflows", id, "restart"]) => {
            let new_id = rt.fork_workflow(id, 1, ForkOptions::new()).await?;
            Ok(HttpResponse::Ok().json(json!({ "workflow_id": new_id })))
        }
        ("POST", ["workflows", id, "fork"]) => {
            let f: Fork = parse_or_empty(body)?;
            let mut options = ForkOptions::new();
            if let Some(n) = f.new_workflow_id {
                options = options.workflow_id(n);
            }
            if let Some(v) = f.application_version {
                options = options.application_version(v);
            }
            let new_id = rt
                .fork_workflow(id, f.start_step.unwrap_or(1), options)
                .await?;
            Ok(HttpResponse::Ok().json(json!({ "workflow_id": new_id })))
        }
        ("POST", ["dbos-garbage-collect"]) => {
            let g: Collect = parse_or_empty(body)?;
            rt.garbage_collect(g.cutoff_epoch_timestamp_ms, g.rows_threshold)
                .await?;
            Ok(HttpResponse::NoContent().finish())
        }
        ("POST", ["dbos-global-timeout"]) => {
            let g: Collect = parse_or_empty(body)?;
            let cutoff = g
                .cutoff_epoch_timestamp_ms
                .ok_or_else(|| bad("`cutoff_epoch_timestamp_ms` is required"))?;
            let mut filter = WorkflowFilter::new().created_between(None, Some(cutoff + 1));
            filter.statuses = vec!["PENDING".into(), "ENQUEUED".into(), "DELAYED".into()];
            for w in rt.list_workflows(&filter).await? {
                rt.cancel_workflow(&w.workflow_id).await?;
            }
            Ok(HttpResponse::NoContent().finish())
        }
        (_, _) => Err(Failure(
            StatusCode::NOT_FOUND,
            format!("no admin route {} {}", req.method(), req.path()),
        )),
    }
}

/// `GET /metrics`: the runtime's counters in Prometheus text format (0.0.4).
async fn prometheus(rt: &Runtime) -> Result<String, Failure> {
    use std::fmt::Write;
    let m = rt.metrics();
    let db = rt.metrics_snapshot();
    let label = |v: &str| {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut out,
        "dbos_workflows_started_total",
        "counter",
        "Workflow executions begun in this process (started or resumed), by workflow name.",
    );
    for (name, n) in m.started() {
        let _ = writeln!(
            out,
            "dbos_workflows_started_total{{name=\"{}\"}} {n}",
            label(&name)
        );
    }
    family(&mut out, "dbos_workflows_finished_total", "counter", "Workflow executions ended in this process, by workflow name and status (SUCCESS, ERROR, CANCELLED; STOPPED: cut off by a shutdown or handed to another execution, no outcome recorded).");
    for ((name, status), n) in m.finished() {
        let _ = writeln!(
            out,
            "dbos_workflows_finished_total{{name=\"{}\",status=\"{status}\"}} {n}",
            label(&name)
        );
    }
    family(
        &mut out,
        "dbos_step_duration_seconds",
        "histogram",
        "How long step and transaction bodies ran (all attempts), by name.",
    );
    for (name, h) in m.steps() {
        let name = label(&name);
        let mut cumulative = 0;
        for (bound, n) in crate::metrics::STEP_BUCKETS.iter().zip(h.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "dbos_step_duration_seconds_bucket{{name=\"{name}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "dbos_step_duration_seconds_bucket{{name=\"{name}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "dbos_step_duration_seconds_sum{{name=\"{name}\"}} {}",
            h.sum
        );
        let _ = writeln!(
            out,
            "dbos_step_duration_seconds_count{{name=\"{name}\"}} {}",
            h.count
        );
    }
    let queues = rt.db().queue_depths().await?;
    family(
        &mut out,
        "dbos_queue_waiting",
        "gauge",
        "Workflows enqueued and not yet taken, by queue (all processes).",
    );
    for (q, waiting, _) in &queues {
        let _ = writeln!(
            out,
            "dbos_queue_waiting{{queue=\"{}\"}} {waiting}",
            label(q)
        );
    }
    family(
        &mut out,
        "dbos_queue_running",
        "gauge",
        "Workflows taken from a queue and running, by queue (all processes).",
    );
    for (q, _, running) in &queues {
        let _ = writeln!(
            out,
            "dbos_queue_running{{queue=\"{}\"}} {running}",
            label(q)
        );
    }
    for (name, kind, help, value) in [
        (
            "dbos_workflows_running",
            "gauge",
            "Workflow executions running in this process.",
            rt.running_workflows() as u64,
        ),
        (
            "dbos_workflows_unloaded",
            "gauge",
            "Waiting workflows this process unloaded from memory until their message or wake-up.",
            rt.unloaded_workflows() as u64,
        ),
        (
            "dbos_recoveries_total",
            "counter",
            "Workflows attempted before (after a crash, a cut-off or a resume) run again in this process.",
            m.recoveries(),
        ),
        (
            "dbos_executor_takeovers_total",
            "counter",
            "Dead executors whose unfinished workflows this process took over (Postgres).",
            m.takeovers(),
        ),
        (
            "dbos_commits_total",
            "counter",
            "Database transactions the runtime committed.",
            db.commits,
        ),
        (
            "dbos_transaction_retries_total",
            "counter",
            "Transaction attempts retried after a conflict.",
            db.transaction_retries,
        ),
        (
            "dbos_sqlite_batch_commits_total",
            "counter",
            "SQLite COMMITs the group-commit writer ran (each covers one or more operations).",
            db.sqlite_batch_commits,
        ),
        (
            "dbos_notification_wakeups_total",
            "counter",
            "Waits (recv, get_event, results) woken by a notification.",
            rt.notifier().wakeups(),
        ),
    ] {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    Ok(out)
}

/// Rows per console page.
const PAGE: u32 = 50;

/// `GET /console/api/workflows?status=&name=&queue=&prefix=&from=&to=&after=<ms>:<id>`: a page
/// of workflows, newest first, and the key of the next page.
async fn console_list(req: &HttpRequest, rt: &Runtime) -> Answer {
    let mut f = WorkflowFilter::new().newest_first().limit(PAGE + 1);
    for (k, v) in query_pairs(req.query_string()) {
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "status" => f.statuses.push(v.to_ascii_uppercase()),
            "name" => f.names.push(v),
            "queue" => f.queues.push(v),
            "prefix" => f.id_prefix = Some(v),
            "from" | "to" => {
                let ms = chrono::DateTime::parse_from_rfc3339(&v)
                    .map(|t| t.timestamp_millis())
                    .or_else(|_| v.parse::<i64>())
                    .map_err(|_| bad(format!("`{k}` must be a time, not `{v}`")))?;
                if k == "from" {
                    f.created_after_ms = Some(ms);
                } else {
                    f.created_before_ms = Some(ms);
                }
            }
            "after" => {
                let (at, id) = v
                    .split_once(':')
                    .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_owned())))
                    .ok_or_else(|| bad(format!("`after` must be <ms>:<id>, not `{v}`")))?;
                f.after_key = Some((at, id));
            }
            "token" => {}
            other => return Err(bad(format!("unknown filter `{other}`"))),
        }
    }
    let mut rows = rt.list_workflows(&f).await?;
    let next = (rows.len() > PAGE as usize).then(|| {
        rows.truncate(PAGE as usize);
        rows.last()
            .map(|w| format!("{}:{}", w.created_at, w.workflow_id))
    });
    Ok(HttpResponse::Ok().json(json!({ "rows": rows, "next": next.flatten() })))
}

/// `GET /console/api/overview`: counts by status, activity over the last five minutes in
/// 10-second buckets, and each queue's backlog.
async fn console_overview(rt: &Runtime) -> Answer {
    let now = crate::sysdb::now_ms();
    let counts: serde_json::Map<String, Value> = rt
        .db()
        .status_counts()
        .await?
        .into_iter()
        .map(|(s, n)| (s, json!(n)))
        .collect();
    let activity: Vec<Value> = rt
        .db()
        .activity(now - 300_000, 10_000)
        .await?
        .into_iter()
        .map(|(t, started, finished)| json!({ "t": t, "started": started, "finished": finished }))
        .collect();
    let queues: Vec<Value> = rt
        .db()
        .queue_depths()
        .await?
        .into_iter()
        .map(|(name, waiting, running)| json!({ "name": name, "waiting": waiting, "running": running }))
        .collect();
    Ok(HttpResponse::Ok()
        .json(json!({ "now": now, "counts": counts, "activity": activity, "queues": queues })))
}

/// `GET /console/api/workflows/{id}`: the workflow with its payloads, steps, children, events
/// and the messages sent to it.
async fn console_workflow(rt: &Runtime, id: &str) -> Answer {
    let filter = WorkflowFilter::new().workflow_id(id).with_payloads();
    let workflow = rt
        .list_workflows(&filter)
        .await?
        .pop()
        .ok_or_else(|| Error::NonExistentWorkflow(id.to_owned()))?;
    let steps = rt.get_workflow_steps(id).await?;
    let children = rt.list_workflows(&WorkflowFilter::new().parent(id)).await?;
    let (events, messages) = rt.db().events_and_messages(id).await?;
    let events: Vec<Value> = events
        .into_iter()
        .map(|(key, value)| json!({ "key": key, "value": value }))
        .collect();
    let messages: Vec<Value> = messages
        .into_iter()
        .map(|(topic, message, consumed, at)| {
            json!({ "topic": topic, "message": message, "consumed": consumed, "at": at })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "workflow": workflow,
        "steps": steps,
        "children": children,
        "events": events,
        "messages": messages,
    })))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| bad(format!("the body must be {what}: {e}")))
}

fn parse_or_empty<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return parse(b"{}", "a JSON object");
    }
    parse(body, "a JSON object")
}

fn percent_decode(segment: &str) -> Result<String, Failure> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(format!("bad percent-encoding in `{segment}`")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("`{segment}` is not UTF-8")))
}

/// One value or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The filters of `POST /workflows` and `POST /queues` (DBOS's names).
#[derive(Deserialize)]
struct Filters {
    workflow_uuids: Option<Vec<String>>,
    workflow_ids: Option<Vec<String>>,
    start_time: Option<String>,
    end_time: Option<String>,
    status: Option<OneOrMany>,
    application_version: Option<OneOrMany>,
    forked_from: Option<String>,
    parent_workflow_id: Option<String>,
    workflow_name: Option<OneOrMany>,
    name: Option<OneOrMany>,
    queue_name: Option<OneOrMany>,
    executor_id: Option<OneOrMany>,
    limit: Option<u32>,
    offset: Option<u32>,
    sort_desc: Option<bool>,
    workflow_id_prefix: Option<String>,
    load_input: Option<bool>,
    load_output: Option<bool>,
}

impl Filters {
    fn filter(self, queued: bool) -> Result<WorkflowFilter, Failure> {
        let time = |field: &str, v: Option<String>| -> Result<Option<i64>, Failure> {
            v.map(|t| {
                chrono::DateTime::parse_from_rfc3339(&t)
                    .map(|t| t.timestamp_millis())
                    .map_err(|_| bad(format!("`{field}` must be an RFC 3339 time, not `{t}`")))
            })
            .transpose()
        };
        let many = |v: Option<OneOrMany>| v.map(OneOrMany::into_vec).unwrap_or_default();
        let mut f = WorkflowFilter::new();
        f.workflow_ids = self
            .workflow_uuids
            .or(self.workflow_ids)
            .unwrap_or_default();
        f.created_after_ms = time("start_time", self.start_time)?;
        // DBOS's end_time is inclusive.
        f.created_before_ms = time("end_time", self.end_time)?.map(|t| t + 1);
        f.statuses = many(self.status);
        f.app_versions = many(self.application_version);
        f.forked_from = self.forked_from;
        f.parent_workflow_id = self.parent_workflow_id;
        f.names = many(self.workflow_name.or(self.name));
        f.queues = many(self.queue_name);
        f.executors = many(self.executor_id);
        f.limit = self.limit;
        f.offset = self.offset;
        f.newest_first = self.sort_desc.unwrap_or(false);
        f.id_prefix = self.workflow_id_prefix;
        f.load_input = self.load_input.unwrap_or(false);
        // As DBOS: the queue listing loads outputs unless told not to.
        f.load_output = self.load_output.unwrap_or(queued);
        Ok(f)
    }
}

#[derive(Deserialize)]
struct Fork {
    start_step: Option<i32>,
    new_workflow_id: Option<String>,
    application_version: Option<String>,
}

#[derive(Deserialize)]
struct Collect {
    cutoff_epoch_timestamp_ms: Option<i64>,
    rows_threshold: Option<u64>,
}

/// DBOS's `WorkflowsOutput`: PascalCase keys, numbers as strings.
fn workflow_output(w: &WorkflowInfo) -> Value {
    let s = |v: Option<i64>| v.map(|n| n.to_string());
    json!({
        "WorkflowUUID": w.workflow_id,
        "Status": w.status,
        "WorkflowName": w.name,
        "WorkflowClassName": w.class_name,
        "WorkflowConfigName": w.config_name,
        "Input": w.inputs_shown(),
        "Output": w.output_shown(),
        "Error": w.error,
        "CreatedAt": w.created_at.to_string(),
        "UpdatedAt": s(w.updated_at),
        "QueueName": w.queue_name,
        "ApplicationVersion": w.application_version,
        "ExecutorID": w.executor_id,
        "WorkflowTimeoutMS": s(w.timeout_ms),
        "WorkflowDeadlineEpochMS": s(w.deadline_epoch_ms),
        "DeduplicationID": w.deduplication_id,
        "Priority": w.priority.to_string(),
        "ForkedFrom": w.forked_from,
        "ParentWorkflowID": w.parent_workflow_id,
        "DequeuedAt": s(w.dequeued_at),
        "CompletedAt": s(w.completed_at),
        "ApplicationName": w.application_name,
    })
}

/// DBOS's `WorkflowSteps`.
fn step_output(s: &StepInfo) -> Value {
    json!({
        "function_id": s.function_id,
        "function_name": s.function_name,
        "output": s.output_shown(),
        "error": s.error,
        "child_workflow_id": s.child_workflow_id,
        "started_at_epoch_ms": s.started_at_epoch_ms.map(|n| n.to_string()),
        "completed_at_epoch_ms": s.completed_at_epoch_ms.map(|n| n.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same_secret("s3cret", "s3cret"));
        for other in ["", "s3cre", "s3cret!", "S3cret", "x3cret"] {
            assert!(!same_secret(other, "s3cret"), "{other}");
        }
    }

    #[test]
    fn query_strings_are_decoded() {
        assert_eq!(
            query_pairs("a=1&name=app%3A%3Aw+x&&empty="),
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("name".to_owned(), "app::w x".to_owned()),
                ("empty".to_owned(), String::new()),
            ]
        );
        assert!(
            query_pairs("bad=%zz").is_empty(),
            "an undecodable pair is dropped"
        );
    }
}
