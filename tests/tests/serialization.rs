//! bincode as an opt-in wire format (issue 15, part 4): `serialization = "bincode"` on a
//! workflow, step or transaction stores that function's arguments and outputs as bincode,
//! tagged `rust_bincode`; every reader decodes by the row's tag, so mixed formats in one
//! workflow, recovery, and a format that changed between versions all replay; garbage is a
//! typed error, and tools show the format instead of the bytes. On SQLite and Postgres.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{both_backends, probe, within, Inspect, TestDb};
use serde::{Deserialize, Serialize};
use std::future::IntoFuture;

const APP: &str = "ser-tests";
const VERSION: &str = "ser-tests-1";
const EXECUTOR: &str = "ser-local";

fn name(f: &str) -> String {
    format!("{}::{f}", module_path!())
}

fn config(db: &TestDb) -> DbosConfig {
    db.config(APP)
        .with_version(VERSION)
        .with_executor_id(EXECUTOR)
        .with_shutdown_timeout(Duration::ZERO)
}

async fn launch(db: &TestDb) -> Runtime {
    within("launch", Runtime::launch(config(db)))
        .await
        .expect("launch the runtime")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Batch {
    key: String,
    readings: Vec<f64>,
    tags: Vec<(u32, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Summary {
    Empty,
    Stats {
        count: u64,
        total: f64,
        label: String,
    },
}

#[step(serialization = "bincode")]
async fn total(batch: Batch) -> Result<f64, Error> {
    probe::bump(&format!("{}/total", batch.key));
    Ok(batch.readings.iter().sum())
}

#[step]
async fn label(batch: Batch) -> Result<String, Error> {
    probe::bump(&format!("{}/label", batch.key));
    Ok(batch
        .tags
        .iter()
        .map(|(_, t)| t.as_str())
        .collect::<Vec<_>>()
        .join("+"))
}

#[transaction(serialization = "bincode")]
async fn count_rows(tx: &mut Tx, n: u64) -> Result<u64, Error> {
    let one: i64 = tx.query("SELECT CAST(1 AS BIGINT)").fetch_scalar().await?;
    Ok(n * one as u64)
}

#[step]
async fn gate(key: String) -> Result<(), Error> {
    probe::bump(&format!("{key}/gate"));
    probe::pass(&key).await;
    Ok(())
}

/// Mixed formats in one workflow: its own inputs and output in bincode, a bincode step, a JSON
/// step, a bincode transaction, and a gate to crash it at.
#[workflow(serialization = "bincode")]
async fn summarize(batch: Batch, gated: bool) -> Result<Summary, Error> {
    if batch.readings.is_empty() {
        return Ok(Summary::Empty);
    }
    let total = total(batch.clone()).await?;
    let label = label(batch.clone()).await?;
    if gated {
        gate(batch.key.clone()).await?;
    }
    let count = count_rows(batch.readings.len() as u64).await?;
    Ok(Summary::Stats {
        count,
        total,
        label,
    })
}

fn batch(key: &str) -> Batch {
    Batch {
        key: key.to_owned(),
        readings: vec![1.5, 2.25, 4.0],
        tags: vec![(1, "a".into()), (2, "b".into())],
    }
}

fn stats(label: &str) -> Summary {
    Summary::Stats {
        count: 3,
        total: 7.75,
        label: label.to_owned(),
    }
}

async fn rows(x: &Inspect, db: &TestDb, sql: &str) -> Vec<Vec<Option<String>>> {
    x.rows(&sql.replace("{s}", db.sys())).await
}

fn cell(row: &[Option<String>], i: usize) -> &str {
    row[i].as_deref().unwrap_or("<NULL>")
}

both_backends! {
    async fn a_bincode_workflow_stores_its_values_as_tagged_bincode_and_reads_them_back(db: TestDb) {
        let key = format!("{}/mixed", db.url);
        let rt = launch(&db).await;
        let out = within("summarize", rt.scope(summarize(batch(&key), false).with_id("mixed").into_future())).await;
        assert_eq!(out.expect("summarize succeeds"), stats("a+b"));

        let x = db.inspect().await;
        let w = rows(&x, &db, "SELECT serialization, inputs, output FROM {s}workflow_status WHERE workflow_uuid = 'mixed'").await;
        assert_eq!(cell(&w[0], 0), "rust_bincode", "the workflow row is tagged");
        for text in [cell(&w[0], 1), cell(&w[0], 2)] {
            assert!(serde_json::from_str::<serde_json::Value>(text).is_err(), "not JSON: {text}");
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)), "base64: {text}");
        }
        let steps = rows(&x, &db, "SELECT function_id, function_name, serialization, output FROM {s}operation_outputs \
             WHERE workflow_uuid = 'mixed' ORDER BY function_id").await;
        let got: Vec<(&str, String, &str)> = steps.iter().map(|r| (cell(r, 0), cell(r, 1).to_owned(), cell(r, 2))).collect();
        assert_eq!(got, vec![
            ("1", name("total"), "rust_bincode"),
            ("2", name("label"), "portable_json"),
            ("3", name("count_rows"), "rust_bincode"),
        ]);
        assert_eq!(cell(&steps[1], 3), "\"a+b\"", "the JSON step stays readable JSON");

        // Read back from the rows alone, in a fresh runtime: no in-memory result to hand over.
        rt.shutdown().await;
        let rt2 = launch(&db).await;
        let again = within("retrieve", rt2.scope(async {
            DBOS::retrieve_workflow::<Summary, Error>("mixed").await.expect("retrieve").get_result().await
        })).await;
        assert_eq!(again.expect("decoded from the row"), stats("a+b"));

        // Tools show the format and size, never the encoded bytes.
        let filter = dbos_runtime::WorkflowFilter::new().workflow_id("mixed").with_payloads();
        let listed = rt2.list_workflows(&filter).await.expect("list");
        let info = listed.first().expect("listed");
        let shown = info.inputs_shown().expect("inputs");
        assert!(shown.starts_with("<rust_bincode: ") && shown.ends_with(" bytes>"), "{shown}");
        let steps = rt2.get_workflow_steps("mixed").await.expect("steps");
        assert_eq!(steps[1].output_shown().as_deref(), Some("\"a+b\""));
        assert!(steps[0].output_shown().expect("output").starts_with("<rust_bincode"));
        rt2.shutdown().await;
    }
}

both_backends! {
    async fn a_bincode_workflow_resumes_after_a_crash_replaying_its_recorded_steps(db: TestDb) {
        let key = format!("{}/crash", db.url);
        let rt = launch(&db).await;
        rt.scope(async {
            DBOS::start_workflow(summarize(batch(&key), true).with_id("crashed")).await.expect("start");
        })
        .await;
        dbos_tests::eventually(Duration::from_secs(15), "the workflow reaches its gate", || async {
            probe::count(&format!("{key}/gate")) == 1
        })
        .await;
        rt.shutdown().await;

        probe::open(&key);
        let rt2 = launch(&db).await;
        let out = within("the recovered workflow", rt2.scope(async {
            DBOS::retrieve_workflow::<Summary, Error>("crashed").await.expect("retrieve").get_result().await
        }))
        .await;
        assert_eq!(out.expect("recovered"), stats("a+b"));
        assert_eq!(probe::count(&format!("{key}/total")), 1, "the recorded bincode step is replayed, not rerun");
        assert_eq!(probe::count(&format!("{key}/label")), 1, "the recorded JSON step is replayed, not rerun");
        assert_eq!(probe::count(&format!("{key}/gate")), 2, "the unrecorded step runs again");
        let x = db.inspect().await;
        let w = rows(&x, &db, "SELECT status, serialization FROM {s}workflow_status WHERE workflow_uuid = 'crashed'").await;
        assert_eq!((cell(&w[0], 0), cell(&w[0], 1)), ("SUCCESS", "rust_bincode"));
        rt2.shutdown().await;
    }
}

// What an earlier version recorded is read by its tag: the rows below were written as JSON
// (workflow and the bincode-now step) and as bincode (the JSON-now step) before the upgrade.
both_backends! {
    async fn a_format_changed_between_versions_still_replays_what_the_old_version_recorded(db: TestDb) {
        let key = format!("{}/upgrade", db.url);
        // Bootstraps the schema; then the "old version's" rows are written by hand.
        let rt = launch(&db).await;
        rt.shutdown().await;
        let b = batch(&key);
        let inputs = serde_json::json!({"positionalArgs": [b, false], "namedArgs": {}}).to_string();
        let old_label = {
            // What `label` would have stored with bincode: a length-prefixed UTF-8 string.
            let mut bytes = vec![3_u8];
            bytes.extend_from_slice(b"old");
            base64_encode(&bytes)
        };
        let x = db.inspect().await;
        let s = db.sys();
        let now = chrono::Utc::now().timestamp_millis();
        x.exec(&format!(
            "INSERT INTO {s}workflow_status (workflow_uuid, status, name, inputs, serialization, executor_id, \
             application_version, application_name, recovery_attempts, created_at, updated_at) VALUES \
             ('upgraded', 'PENDING', '{}', '{}', 'portable_json', '{EXECUTOR}', '{VERSION}', '{APP}', 1, {now}, {now})",
            name("summarize"),
            inputs.replace('\'', "''"),
        ))
        .await;
        x.exec(&format!(
            "INSERT INTO {s}operation_outputs (workflow_uuid, function_id, function_name, output, serialization) VALUES \
             ('upgraded', 1, '{}', '99.5', 'portable_json'), ('upgraded', 2, '{}', '{old_label}', 'rust_bincode')",
            name("total"),
            name("label"),
        ))
        .await;

        let rt2 = launch(&db).await;
        let out = within("the upgraded workflow", rt2.scope(async {
            DBOS::retrieve_workflow::<Summary, Error>("upgraded").await.expect("retrieve").get_result().await
        }))
        .await;
        assert_eq!(
            out.expect("resumed across the format change"),
            Summary::Stats { count: 3, total: 99.5, label: "old".into() },
            "both recorded steps are replayed in the format they were written in"
        );
        assert_eq!(probe::count(&format!("{key}/total")) + probe::count(&format!("{key}/label")), 0, "nothing recomputed");
        let w = rows(&x, &db, "SELECT status, serialization, output FROM {s}workflow_status WHERE workflow_uuid = 'upgraded'").await;
        assert_eq!((cell(&w[0], 0), cell(&w[0], 1)), ("SUCCESS", "portable_json"));
        let output: serde_json::Value = serde_json::from_str(cell(&w[0], 2)).expect("the output follows the row's format: JSON");
        assert_eq!(output["Stats"]["label"], "old");
        rt2.shutdown().await;
    }
}

both_backends! {
    async fn garbage_in_a_bincode_row_is_a_typed_error_not_a_panic(db: TestDb) {
        let rt = launch(&db).await;
        rt.shutdown().await;
        let x = db.inspect().await;
        let s = db.sys();
        let now = chrono::Utc::now().timestamp_millis();
        // Undecodable inputs: not base64, and base64 of bytes that are not the arguments.
        for (id, inputs) in [("garbage-1", "%%% not base64 %%%"), ("garbage-2", "AAEC")] {
            x.exec(&format!(
                "INSERT INTO {s}workflow_status (workflow_uuid, status, name, inputs, serialization, executor_id, \
                 application_version, application_name, recovery_attempts, created_at, updated_at) VALUES \
                 ('{id}', 'PENDING', '{}', '{inputs}', 'rust_bincode', '{EXECUTOR}', '{VERSION}', '{APP}', 1, {now}, {now})",
                name("summarize"),
            ))
            .await;
        }
        let rt2 = launch(&db).await;
        for id in ["garbage-1", "garbage-2"] {
            let out = within(id, rt2.scope(async {
                DBOS::retrieve_workflow::<Summary, Error>(id).await.expect("retrieve").get_result().await
            }))
            .await;
            let err = out.expect_err("undecodable inputs fail the workflow");
            let text = err.to_string();
            assert!(text.contains("argument") || text.contains("base64"), "{id}: {text}");
        }
        let failed = x
            .scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE status = 'ERROR' AND workflow_uuid LIKE 'garbage-%'"))
            .await;
        assert_eq!(failed, 2);
        rt2.shutdown().await;
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
