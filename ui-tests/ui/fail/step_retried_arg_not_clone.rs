use dbos_runtime::prelude::*;

struct Card {
    number: String,
}

#[step(max_attempts = 3)]
async fn charge(card: Card) -> Result<usize, Error> {
    Ok(card.number.len())
}

fn main() {}
