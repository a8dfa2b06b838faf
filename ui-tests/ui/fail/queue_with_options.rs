use dbos_runtime::prelude::*;

#[queue(concurrency = 10)]
static EMAILS: Queue = Queue::new("emails");

fn main() {}
