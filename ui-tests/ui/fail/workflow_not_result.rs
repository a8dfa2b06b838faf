use dbos_runtime::prelude::*;

#[workflow]
async fn count(items: Vec<String>) -> usize {
    items.len()
}

fn main() {}
