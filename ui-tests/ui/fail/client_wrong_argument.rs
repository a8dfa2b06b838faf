// A process that links the crate declaring a workflow starts (or, as a client, enqueues) it
// through its typed entry point: a wrong argument or result type is a compile error.
use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;

#[workflow]
async fn charge(customer: String, cents: u64) -> Result<u64, Error> {
    let _ = customer;
    Ok(cents)
}

async fn client(rt: Runtime) -> Result<(), Error> {
    let handle = rt.start_workflow(charge("c-1".to_owned(), "ten")).await?;
    let cents: String = handle.get_result().await?;
    let _ = cents;
    Ok(())
}

fn main() {
    let _ = client;
}
