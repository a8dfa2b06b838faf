use dbos_runtime::prelude::*;

struct Receipt {
    total: u64,
}

#[workflow]
async fn pay(total: u64) -> Result<Receipt, Error> {
    Ok(Receipt { total })
}

fn main() {}
