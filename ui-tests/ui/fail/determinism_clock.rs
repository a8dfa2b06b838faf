use dbos_runtime::prelude::*;
use std::time::{Instant, SystemTime};

#[workflow]
async fn checkout(order_id: u64) -> Result<u64, Error> {
    let started = SystemTime::now();
    let t = Instant::now();
    if Utc::now().timestamp() % 2 == 0 {
        return Ok(order_id);
    }
    // A marked use is not reported, and the marker does not leak into the errors.
    #[allow_nondeterminism]
    let logged = Instant::now();
    let _ = (started, t, logged);
    Ok(order_id + 1)
}

fn main() {}
