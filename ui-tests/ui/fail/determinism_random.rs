use dbos_runtime::prelude::*;

// Stand-ins with the paths of `rand` and `uuid`, so the case needs no more dependencies.
mod rand {
    pub fn random() -> u64 {
        4
    }
}
struct Uuid;
impl Uuid {
    fn new_v4() -> u64 {
        4
    }
}

#[workflow]
async fn pick() -> Result<u64, Error> {
    let a = rand::random();
    let b = Uuid::new_v4();
    Ok(a + b)
}

fn main() {}
