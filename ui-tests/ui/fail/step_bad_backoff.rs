use dbos_runtime::prelude::*;

#[step(max_attempts = 3, backoff = 0.5)]
async fn charge(cents: u64) -> Result<u64, Error> {
    Ok(cents)
}

fn main() {}
