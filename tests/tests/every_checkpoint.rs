//! `dbos_runtime::testing::EveryCheckpoint` (issue 14, part 2): it must pass a workflow whose
//! effects are all checkpointed or idempotent, and report the cut that breaks one with a side
//! effect outside any step. On SQLite and on Postgres.

use dbos_runtime::prelude::*;
use dbos_runtime::testing::{CheckError, EveryCheckpoint};
use dbos_runtime::Runtime;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

/// The outside world: emails "sent", per workflow.
fn outbox() -> &'static Mutex<HashMap<String, Vec<String>>> {
    static O: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
    O.get_or_init(Default::default)
}

fn sent(id: &str) -> Vec<String> {
    outbox()
        .lock()
        .expect("outbox")
        .get(id)
        .cloned()
        .unwrap_or_default()
}

/// An email service that drops duplicates by key, as a real one with idempotency keys does.
#[step]
async fn send_email(id: String, key: String) -> Result<(), Error> {
    let mut o = outbox().lock().expect("outbox");
    let list = o.entry(id).or_default();
    if !list.contains(&key) {
        list.push(key);
    }
    Ok(())
}

#[step]
async fn compute(x: u32) -> Result<u32, Error> {
    Ok(x * 2)
}

#[transaction]
async fn book(tx: &mut Tx, id: String, amount: i64) -> Result<(), Error> {
    tx.query("INSERT INTO ledger (workflow_id, amount) VALUES ($1, $2)")
        .bind(id)
        .bind(amount)
        .execute()
        .await?;
    Ok(())
}

#[transaction]
async fn ledger_rows(tx: &mut Tx, id: String) -> Result<i64, Error> {
    let rows: Vec<(i64,)> = tx
        .query("SELECT amount FROM ledger WHERE workflow_id = $1")
        .bind(id)
        .fetch_all()
        .await?;
    Ok(rows.len() as i64)
}

#[transaction]
async fn make_ledger(tx: &mut Tx) -> Result<(), Error> {
    tx.query(
        "CREATE TABLE IF NOT EXISTS ledger (workflow_id TEXT NOT NULL, amount BIGINT NOT NULL)",
    )
    .execute()
    .await?;
    Ok(())
}

/// Books once, waits for approval, computes, then emails (idempotently).
#[workflow]
async fn careful() -> Result<String, Error> {
    let id = DBOS::workflow_id()?;
    book(id.clone(), 10).await?;
    DBOS::set_event("ready", &true).await?;
    let approved: Option<bool> = DBOS::recv("approval", Duration::from_secs(30)).await?;
    let doubled = compute(21).await?;
    if approved == Some(true) && doubled == 42 {
        send_email(id.clone(), format!("{id}-receipt")).await?;
    }
    Ok(id)
}

/// The bug: an email sent from the workflow body, outside any step, between two steps.
#[workflow]
async fn careless() -> Result<String, Error> {
    let id = DBOS::workflow_id()?;
    compute(1).await?;
    outbox()
        .lock()
        .expect("outbox")
        .entry(id.clone())
        .or_default()
        .push("welcome".into());
    compute(2).await?;
    Ok(id)
}

fn harness(backend: &str) -> EveryCheckpoint {
    let h = EveryCheckpoint::new("every-checkpoint")
        .setup(
            |rt: Runtime| async move { rt.scope(make_ledger()).await.map_err(|e| e.to_string()) },
        )
        .drive(|rt: Runtime, id: String| async move {
            let ready: Option<bool> = rt
                .get_event(&id, "ready", Duration::from_secs(30))
                .await
                .map_err(|e| e.to_string())?;
            if ready == Some(true) {
                rt.send_with_key(&id, &true, "approval", &format!("{id}-approval"))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
    match backend {
        "postgres" => h.on_postgres(&dbos_tests::postgres_server()),
        _ => h,
    }
}

async fn a_careful_workflow_passes_every_cut(backend: &str) {
    let report = harness(backend)
        .check(
            careful,
            |rt: Runtime, result: Result<String, Error>| async move {
                let id = result.map_err(|e| format!("the workflow failed: {e}"))?;
                let booked = rt
                    .scope(ledger_rows(id.clone()))
                    .await
                    .map_err(|e| e.to_string())?;
                if booked != 1 {
                    return Err(format!("booked {booked} times"));
                }
                if sent(&id) != vec![format!("{id}-receipt")] {
                    return Err(format!("emails: {:?}", sent(&id)));
                }
                Ok(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{backend}: {e}"));
    println!(
        "{backend}: {:?}, {} cuts, {} skipped",
        report.checkpoints, report.cuts, report.skipped
    );
    let names: HashSet<&str> = report.checkpoints.iter().map(String::as_str).collect();
    for want in [
        "every_checkpoint::book",
        "DBOS.setEvent",
        "DBOS.recv",
        "every_checkpoint::compute",
        "every_checkpoint::send_email",
    ] {
        assert!(
            names.contains(want),
            "{backend}: no checkpoint {want} in {:?}",
            report.checkpoints
        );
    }
    // After every checkpoint, and before each of the two steps' records.
    assert!(
        report.cuts >= report.checkpoints.len(),
        "{backend}: {} cuts",
        report.cuts
    );
}

async fn a_side_effect_outside_a_step_is_reported(backend: &str) {
    let got = harness(backend)
        .check(
            careless,
            |_rt: Runtime, result: Result<String, Error>| async move {
                let id = result.map_err(|e| format!("the workflow failed: {e}"))?;
                match sent(&id).len() {
                    1 => Ok(()),
                    n => Err(format!("the welcome email went out {n} times")),
                }
            },
        )
        .await;
    match got {
        Err(CheckError::Broken { cut, why }) => {
            assert_eq!(cut.checkpoint, 1, "{backend}: {cut}: {why}");
            assert_eq!(cut.operation, "every_checkpoint::compute", "{backend}");
            assert!(why.contains("2 times"), "{backend}: {why}");
            println!("{backend}: reported: crashed {cut}, recovered: {why}");
        }
        other => panic!("{backend}: the side effect outside a step was not reported: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_careful_workflow_passes_every_cut_sqlite() {
    a_careful_workflow_passes_every_cut("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_careful_workflow_passes_every_cut_postgres() {
    a_careful_workflow_passes_every_cut("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_effect_outside_a_step_is_reported_sqlite() {
    a_side_effect_outside_a_step_is_reported("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_effect_outside_a_step_is_reported_postgres() {
    a_side_effect_outside_a_step_is_reported("postgres").await;
}
