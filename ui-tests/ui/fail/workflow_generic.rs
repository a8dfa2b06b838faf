use dbos_runtime::prelude::*;

#[workflow]
async fn process<T: Send + 'static>(item: T) -> Result<(), Error> {
    let _ = item;
    Ok(())
}

fn main() {}
