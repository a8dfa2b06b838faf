use dbos_runtime::prelude::*;

struct Shop;

impl Shop {
    #[workflow]
    async fn checkout(&self, order_id: u64) -> Result<u64, Error> {
        Ok(order_id)
    }
}

fn main() {}
