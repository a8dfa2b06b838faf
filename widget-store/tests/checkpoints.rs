//! The store's checkout workflow crashed at every checkpoint (issue 14, part 2): after each
//! recovery exactly one order exists, it is paid, and exactly one widget left the inventory.
//! On SQLite and on Postgres, with `dbos_runtime::testing::EveryCheckpoint`.

use dbos_runtime::prelude::*;
use dbos_runtime::testing::EveryCheckpoint;
use dbos_runtime::Runtime;
use widget_store::store::{self, OrderStatus, PAYMENT_ID, PAYMENT_STATUS};

/// The seed's inventory (`migrations/*/001_widget_store.sql`).
const SEED_INVENTORY: i32 = 100;

async fn checkout_survives_a_crash_at_every_checkpoint(postgres: bool) {
    let mut harness =
        EveryCheckpoint::new("widget-store-cuts")
            .setup(|rt: Runtime| async move {
                rt.scope(store::migrate()).await.map_err(|e| e.to_string())
            })
            // The customer pays once the payment link is out (the store's /payment handler).
            .drive(|rt: Runtime, id: String| async move {
                let link: Option<Option<String>> = rt
                    .get_event(&id, PAYMENT_ID, Duration::from_secs(30))
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(Some(payment)) = link {
                    rt.send_with_key(&payment, "paid", PAYMENT_STATUS, &format!("{payment}-paid"))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            });
    if postgres {
        harness = harness.on_postgres(&dbos_tests::postgres_server());
    }
    let report = harness
        .check(
            store::checkout_workflow,
            |rt: Runtime, result: Result<(), Error>| async move {
                result.map_err(|e| format!("checkout failed: {e}"))?;
                let orders = rt
                    .scope(store::get_orders())
                    .await
                    .map_err(|e| e.to_string())?;
                let paid = [OrderStatus::Paid as i32, OrderStatus::Dispatched as i32];
                match orders.as_slice() {
                    [order] if paid.contains(&order.order_status) => {}
                    _ => return Err(format!("want one paid order, found {orders:?}")),
                }
                let product = rt
                    .scope(store::get_product())
                    .await
                    .map_err(|e| e.to_string())?;
                match product {
                    Some(p) if p.inventory == SEED_INVENTORY - 1 => Ok(()),
                    other => Err(format!(
                        "want {} widgets left, found {other:?}",
                        SEED_INVENTORY - 1
                    )),
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "postgres={postgres}: checkpoints {:?}, {} cuts, {} skipped",
        report.checkpoints, report.cuts, report.skipped
    );
    assert!(report.checkpoints.len() >= 6, "{:?}", report.checkpoints);
    // One cut after each checkpoint (the store's checkout has transactions, no steps); a
    // recv's deadline is a checkpoint only when the payment had not come yet, so that one
    // may be skipped in a run where it came sooner.
    assert_eq!(report.cuts + report.skipped, report.checkpoints.len());
    assert!(report.skipped <= 1, "{} cuts skipped", report.skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_survives_a_crash_at_every_checkpoint_sqlite() {
    checkout_survives_a_crash_at_every_checkpoint(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_survives_a_crash_at_every_checkpoint_postgres() {
    checkout_survives_a_crash_at_every_checkpoint(true).await;
}
