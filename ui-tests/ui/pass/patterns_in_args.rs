//! Parameters bound by patterns: the wrapper names them, the body still destructures them.
use dbos_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Point {
    x: i64,
    y: i64,
}

#[workflow]
async fn sum(
    (a, b): (i64, i64),
    Point { x, y }: Point,
    mut total: i64,
    _unused: String,
    _: u8,
) -> Result<i64, Error> {
    total += a + b + x + y;
    let doubled = double(total, (1, 2)).await?;
    let retried = add_retried(Point { x, y }, doubled).await?;
    insert(Point { x: retried, y: 0 }, "label".to_owned()).await
}

#[step]
async fn double(mut value: i64, (one, two): (i64, i64)) -> Result<i64, Error> {
    value *= 2;
    Ok(value + one + two - 3)
}

#[step(max_attempts = 3, interval = "10ms")]
async fn add_retried(Point { x, y }: Point, mut value: i64) -> Result<i64, Error> {
    value += x + y;
    Ok(value)
}

#[transaction]
async fn insert(tx: &mut Tx, Point { x, .. }: Point, mut label: String) -> Result<i64, Error> {
    let _ = tx;
    label.push('!');
    Ok(x + label.len() as i64)
}

fn main() {
    let _call: WorkflowCall<i64, Error> = sum((1, 2), Point { x: 3, y: 4 }, 0, String::new(), 0);
}
