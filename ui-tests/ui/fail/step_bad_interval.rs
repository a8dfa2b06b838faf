use dbos_runtime::prelude::*;

#[step(max_attempts = 3, interval = "5 seconds")]
async fn charge(cents: u64) -> Result<u64, Error> {
    Ok(cents)
}

fn main() {}
