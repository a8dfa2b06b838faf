use dbos_runtime::prelude::*;

#[queue]
static mut EMAILS: Queue = Queue::new("emails");

fn main() {}
