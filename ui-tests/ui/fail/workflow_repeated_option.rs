use dbos_runtime::prelude::*;

#[workflow(name = "checkout", name = "checkout_v2")]
async fn checkout(order_id: u64) -> Result<u64, Error> {
    Ok(order_id)
}

fn main() {}
