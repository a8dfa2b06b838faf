//! Tracing spans (issue 15): every workflow execution is a `dbos.workflow` span and each step
//! and transaction body a `dbos.step` / `dbos.transaction` span inside it, with DBOS's
//! attribute names (operationUUID, operationType, operationName, functionID); a child
//! workflow's span is a child of its parent's, so one workflow is one tree. Sends, receives,
//! events, sleeps and enqueues are spans inside their workflow's too.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{both_backends, within};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// One span as it was opened: its name, parent and fields.
#[derive(Debug, Clone)]
struct Opened {
    id: u64,
    name: String,
    parent: Option<u64>,
    fields: HashMap<String, String>,
}

/// A layer that keeps every span opened (an in-memory exporter).
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Opened>>>);

struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.id().into_u64());
        let mut fields = Fields(HashMap::new());
        attrs.record(&mut fields);
        self.0.lock().expect("recorder").push(Opened {
            id: id.into_u64(),
            name: attrs.metadata().name().to_owned(),
            parent,
            fields: fields.0,
        });
    }
}

fn recorder() -> &'static Recorder {
    static R: OnceLock<Recorder> = OnceLock::new();
    R.get_or_init(|| {
        let r = Recorder::default();
        let subscriber = tracing_subscriber::registry().with(r.clone());
        tracing::subscriber::set_global_default(subscriber)
            .expect("one subscriber per test binary");
        r
    })
}

#[step]
async fn traced_step(n: u32) -> Result<u32, Error> {
    Ok(n + 1)
}

#[transaction]
async fn traced_tx(tx: &mut Tx, n: u32) -> Result<u32, Error> {
    let one: i64 = tx.query("SELECT CAST(1 AS BIGINT)").fetch_scalar().await?;
    Ok(n + one as u32)
}

#[workflow(name = "traced_child")]
async fn traced_child(n: u32) -> Result<u32, Error> {
    traced_step(n).await
}

#[workflow(name = "traced_parent")]
async fn traced_parent(n: u32) -> Result<u32, Error> {
    let a = traced_step(n).await?;
    let b = traced_tx(a).await?;
    let child = DBOS::start_workflow(traced_child(b)).await?;
    child.get_result().await
}

both_backends! {
    async fn a_workflow_its_steps_and_its_child_form_one_span_tree(db: TestDb) {
        let spans = recorder();
        let rt = within("launch", Runtime::launch(db.config("traces"))).await.expect("launch");
        let id = format!("traced-{:?}", db.backend);
        let h = rt.start_workflow(traced_parent(1).with_id(&id)).await.expect("start");
        assert_eq!(within("traced", h.get_result()).await.expect("traced"), 4);
        rt.shutdown().await;

        let all = spans.0.lock().expect("recorder").clone();
        let of = |uuid: &str| -> Vec<Opened> {
            all.iter().filter(|s| s.fields.get("operationUUID").map(String::as_str) == Some(uuid)).cloned().collect()
        };
        let parent = of(&id);
        let workflow = parent.iter().find(|s| s.name == "dbos.workflow").expect("the workflow's span");
        assert_eq!(workflow.fields.get("operationType").map(String::as_str), Some("workflow"));
        assert_eq!(workflow.fields.get("operationName").map(String::as_str), Some("traced_parent"));
        let inner: Vec<(&str, &str, &str)> = parent
            .iter()
            .filter(|s| s.name != "dbos.workflow")
            .map(|s| {
                assert_eq!(s.parent, Some(workflow.id), "{s:?} is inside the workflow's span");
                (s.name.as_str(), s.fields["operationName"].as_str(), s.fields["functionID"].as_str())
            })
            .collect();
        assert_eq!(
            inner,
            [("dbos.step", "traces::traced_step", "1"), ("dbos.transaction", "traces::traced_tx", "2")],
        );
        let child_id = format!("{id}-3");
        let child = of(&child_id);
        let child_workflow = child.iter().find(|s| s.name == "dbos.workflow").expect("the child's span");
        assert_eq!(child_workflow.parent, Some(workflow.id), "the child's span is inside its parent's");
        let child_step = child.iter().find(|s| s.name == "dbos.step").expect("the child's step");
        assert_eq!(child_step.parent, Some(child_workflow.id));
    }
}

#[queue]
static TRACED_QUEUE: Queue = Queue::new("traced");

#[workflow(name = "traced_ops")]
async fn traced_ops() -> Result<u32, Error> {
    let me = DBOS::workflow_id()?;
    DBOS::send(&me, &1u32, "t").await?;
    let got: Option<u32> = DBOS::recv("t", Duration::from_secs(5)).await?;
    DBOS::set_event("k", &2u32).await?;
    let read: Option<u32> = DBOS::get_event(&me, "k", Duration::from_secs(1)).await?;
    DBOS::sleep(Duration::from_millis(1)).await?;
    let child = TRACED_QUEUE
        .enqueue(traced_child(1))
        .await?
        .get_result()
        .await?;
    Ok(got.unwrap_or(0) + read.unwrap_or(0) + child)
}

both_backends! {
    async fn sends_receives_events_sleeps_and_enqueues_are_spans_of_their_workflow(db: TestDb) {
        let spans = recorder();
        let rt = within("launch", Runtime::launch(db.config("traces-ops"))).await.expect("launch");
        let id = format!("traced-ops-{:?}", db.backend);
        let h = rt.start_workflow(traced_ops().with_id(&id)).await.expect("start");
        assert_eq!(within("traced", h.get_result()).await.expect("traced"), 5);
        rt.shutdown().await;

        let all = spans.0.lock().expect("recorder").clone();
        let mine: Vec<&Opened> = all
            .iter()
            .filter(|s| s.fields.get("operationUUID").map(String::as_str) == Some(id.as_str()))
            .collect();
        let workflow = mine.iter().find(|s| s.name == "dbos.workflow").expect("the workflow's span");
        let ops: Vec<(&str, &str, String)> = mine
            .iter()
            .filter(|s| s.name != "dbos.workflow" && s.name != "dbos.step")
            .map(|s| {
                assert_eq!(s.parent, Some(workflow.id), "{s:?} is inside the workflow's span");
                let detail = ["destination", "topic", "key", "duration_ms", "queue"]
                    .iter()
                    .find_map(|f| s.fields.get(*f).map(|v| format!("{f}={v}")))
                    .unwrap_or_default();
                (s.name.as_str(), s.fields["operationName"].as_str(), detail)
            })
            .collect();
        assert_eq!(
            ops,
            [
                ("dbos.send", "DBOS.send", format!("destination={id}")),
                ("dbos.recv", "DBOS.recv", "topic=t".to_owned()),
                ("dbos.setEvent", "DBOS.setEvent", "key=k".to_owned()),
                ("dbos.getEvent", "DBOS.getEvent", "key=k".to_owned()),
                ("dbos.sleep", "DBOS.sleep", "duration_ms=1".to_owned()),
                ("dbos.enqueue", "traced_child", "queue=traced".to_owned()),
            ]
        );
    }
}
