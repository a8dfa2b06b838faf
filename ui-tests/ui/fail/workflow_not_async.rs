use dbos_runtime::prelude::*;

#[workflow]
fn checkout(order_id: u64) -> Result<u64, Error> {
    Ok(order_id)
}

fn main() {}
