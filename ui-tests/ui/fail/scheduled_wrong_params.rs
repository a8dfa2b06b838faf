use dbos_runtime::prelude::*;

#[scheduled("0 * * * * *")]
#[workflow]
async fn tick(scheduled: DateTime<Utc>) -> Result<(), Error> {
    let _ = scheduled;
    Ok(())
}

fn main() {}
