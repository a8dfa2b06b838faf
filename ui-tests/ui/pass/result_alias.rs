//! Return types that are `Result` by another name.
use dbos_runtime::prelude::*;

type AppResult<T> = std::result::Result<T, Error>;

mod app {
    pub type Result<T> = std::result::Result<T, dbos_runtime::Error>;
}

#[workflow]
async fn aliased(count: u32) -> AppResult<Vec<String>> {
    let total = step_aliased(count).await?;
    let tx = tx_aliased(total).await?;
    Ok(vec![tx.to_string()])
}

#[workflow]
async fn module_alias(count: u32) -> app::Result<u32> {
    Ok(count)
}

#[workflow]
async fn full_path(count: u32) -> ::core::result::Result<u32, dbos_runtime::Error> {
    Ok(count)
}

#[step]
async fn step_aliased(count: u32) -> app::Result<u32> {
    Ok(count + 1)
}

#[transaction]
async fn tx_aliased(tx: &mut Tx, count: u32) -> AppResult<u32> {
    let _ = tx;
    Ok(count)
}

fn main() {
    let _call: WorkflowCall<Vec<String>, Error> = aliased(1);
    let _call: WorkflowCall<u32, Error> = module_alias(1);
    let _call: WorkflowCall<u32, Error> = full_path(1);
}
