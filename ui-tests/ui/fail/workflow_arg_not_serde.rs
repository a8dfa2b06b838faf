use dbos_runtime::prelude::*;

struct Card {
    number: String,
}

#[workflow]
async fn pay(card: Card) -> Result<usize, Error> {
    Ok(card.number.len())
}

fn main() {}
