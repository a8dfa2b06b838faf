use dbos_runtime::prelude::*;

struct Order {
    id: i64,
}

#[transaction]
async fn reserve(tx: &mut Tx, order: Order) -> Result<bool, Error> {
    let _ = (order.id, tx);
    Ok(true)
}

fn main() {}
