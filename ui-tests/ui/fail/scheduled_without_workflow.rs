use dbos_runtime::prelude::*;

#[scheduled("0 * * * * *")]
async fn tick(scheduled: DateTime<Utc>, actual: DateTime<Utc>) -> Result<(), Error> {
    let _ = (scheduled, actual);
    Ok(())
}

fn main() {}
