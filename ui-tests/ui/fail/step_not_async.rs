use dbos_runtime::prelude::*;

#[step]
fn charge(cents: u64) -> Result<u64, Error> {
    Ok(cents)
}

fn main() {}
