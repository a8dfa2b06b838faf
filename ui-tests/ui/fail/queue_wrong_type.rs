use dbos_runtime::prelude::*;

#[queue]
static EMAILS: &str = "emails";

fn main() {}
