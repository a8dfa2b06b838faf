use dbos_runtime::prelude::*;

#[step(retries = 3)]
async fn charge(cents: u64) -> Result<u64, Error> {
    Ok(cents)
}

fn main() {}
