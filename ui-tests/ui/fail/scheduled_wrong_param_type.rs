use dbos_runtime::prelude::*;

#[scheduled("0 * * * * *")]
#[workflow]
async fn tick(scheduled: String, actual: DateTime<Utc>) -> Result<(), Error> {
    let _ = (scheduled, actual);
    Ok(())
}

fn main() {}
