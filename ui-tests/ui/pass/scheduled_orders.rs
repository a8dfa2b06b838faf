//! `#[scheduled]` above or below its `#[workflow]` / `#[transaction]`.
use dbos_runtime::prelude::*;

#[scheduled("0 */5 * * * *")]
#[workflow]
async fn scheduled_above(scheduled: DateTime<Utc>, actual: DateTime<Utc>) -> Result<(), Error> {
    let _ = (scheduled, actual);
    Ok(())
}

#[workflow]
#[scheduled("30 0 9-17 * * MON-FRI")]
async fn scheduled_below(scheduled: DateTime<Utc>, actual: DateTime<Utc>) -> Result<(), Error> {
    let _ = (scheduled, actual);
    Ok(())
}

#[scheduled("* * * * * *")]
#[transaction]
async fn tx_scheduled_above(
    tx: &mut Tx,
    scheduled: DateTime<Utc>,
    actual: DateTime<Utc>,
) -> Result<(), Error> {
    let _ = (tx, scheduled, actual);
    Ok(())
}

/// Docs and other attributes stay where they were.
#[transaction(read_only)]
#[allow(clippy::needless_return)]
#[scheduled("0 0 0 1 * *")]
async fn tx_scheduled_below(
    tx: &mut Tx,
    _scheduled: DateTime<Utc>,
    _actual: DateTime<Utc>,
) -> Result<(), Error> {
    let _ = tx;
    return Ok(());
}

fn main() {
    // Scheduled functions can still be called directly.
    let _call = scheduled_above(Utc::now(), Utc::now());
    let _future = tx_scheduled_below(Utc::now(), Utc::now());
}
