use dbos_runtime::prelude::*;

#[transaction]
async fn reserve(product_id: i64, tx: &mut Tx) -> Result<bool, Error> {
    let _ = (product_id, tx);
    Ok(true)
}

fn main() {}
