use dbos_runtime::prelude::*;

#[step(max_attempts = 0)]
async fn charge(cents: u64) -> Result<u64, Error> {
    Ok(cents)
}

fn main() {}
