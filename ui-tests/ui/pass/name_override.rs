//! `name = "…"` pins the registered name, so stored rows survive a rename or a move.
use dbos_runtime::prelude::*;

#[workflow(name = "checkout")]
pub async fn checkout_v2(order_id: u64) -> Result<u64, Error> {
    let id = charge(order_id).await?;
    reserve(id).await
}

#[step(name = "charge", max_attempts = 2, interval = "1.5s", backoff = 1)]
async fn charge(order_id: u64) -> Result<u64, Error> {
    Ok(order_id)
}

#[transaction(name = "reserve", isolation = "repeatable_read")]
async fn reserve(tx: &mut Tx, order_id: u64) -> Result<u64, Error> {
    let _ = tx;
    Ok(order_id)
}

#[workflow(name = "nightly")]
#[scheduled("0 0 3 * * *")]
async fn nightly_report(scheduled: DateTime<Utc>, actual: DateTime<Utc>) -> Result<(), Error> {
    let _ = (scheduled, actual);
    Ok(())
}

// A raw identifier registers without its `r#`.
#[workflow]
async fn r#match(r#in: u64) -> Result<u64, Error> {
    Ok(r#in)
}

fn main() {
    let _ = checkout_v2(1).with_id("order-1");
    let _ = r#match(1);
}
