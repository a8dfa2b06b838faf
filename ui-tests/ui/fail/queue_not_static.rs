use dbos_runtime::prelude::*;

#[queue]
const EMAILS: Queue = Queue::new("emails");

fn main() {}
