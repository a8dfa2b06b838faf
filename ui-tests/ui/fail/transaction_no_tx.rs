use dbos_runtime::prelude::*;

#[transaction]
async fn count_orders() -> Result<i64, Error> {
    Ok(0)
}

fn main() {}
