use dbos_runtime::prelude::*;

#[transaction]
async fn reserve(tx: &Tx, product_id: i64) -> Result<bool, Error> {
    let _ = (product_id, tx);
    Ok(true)
}

fn main() {}
