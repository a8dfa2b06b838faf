// What the determinism check leaves alone: steps (their results are recorded), the recorded
// DBOS::now and DBOS::random, ordered collections, marked deliberate uses, nested functions.
use dbos_runtime::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

// Stand-ins: a seeded generator (deterministic) and a module of the user's named `fs`.
mod rand {
    pub struct SeedableRng;
    impl SeedableRng {
        pub fn seed_from_u64(seed: u64) -> u64 {
            seed
        }
    }
}
mod storage {
    pub mod fs {
        pub fn key() -> u64 {
            7
        }
    }
}

#[step]
async fn timed_fetch(key: String) -> Result<u64, Error> {
    let started = Instant::now();
    let region = std::env::var("REGION").unwrap_or_default();
    let mut counts: HashMap<String, u64> = HashMap::new();
    counts.insert(key, 1);
    let total: u64 = counts.values().sum();
    Ok(total + started.elapsed().as_secs() + region.len() as u64)
}

#[workflow]
async fn careful(keys: BTreeMap<String, u64>) -> Result<u64, Error> {
    let now = DBOS::now().await?;
    let dice = DBOS::random().await?;
    #[allow_nondeterminism]
    let started = Instant::now(); // only logged
    let mut total = 0;
    for (key, _) in &keys {
        total += timed_fetch(key.clone()).await?;
    }
    // A lookup (no iteration) in a HashMap is fine.
    let index: HashMap<u64, u64> = HashMap::new();
    total += index.get(&dice).copied().unwrap_or(0);
    // Order-free uses of a HashMap's entries are fine.
    total += index.values().sum::<u64>() + index.len() as u64;
    total += rand::SeedableRng::seed_from_u64(42) + storage::fs::key();
    fn helper() -> u64 {
        // Not the workflow body.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
    let _ = (helper, started.elapsed(), now);
    Ok(total)
}

fn main() {}
