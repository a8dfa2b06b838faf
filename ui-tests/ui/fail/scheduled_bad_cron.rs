use dbos_runtime::prelude::*;

// Five fields: the seconds are missing.
#[scheduled("*/5 * * * *")]
#[workflow]
async fn tick(scheduled: DateTime<Utc>, actual: DateTime<Utc>) -> Result<(), Error> {
    let _ = (scheduled, actual);
    Ok(())
}

fn main() {}
