use dbos_runtime::prelude::*;

#[transaction(isolation = "snapshot")]
async fn reserve(tx: &mut Tx, product_id: i64) -> Result<bool, Error> {
    let _ = (product_id, tx);
    Ok(true)
}

fn main() {}
