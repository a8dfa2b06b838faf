use dbos_runtime::prelude::*;

#[workflow(serialization = "xml")]
async fn ingest(batch: Vec<u8>) -> Result<usize, Error> {
    Ok(batch.len())
}

#[step(serialization = bincode)]
async fn parse(batch: Vec<u8>) -> Result<usize, Error> {
    Ok(batch.len())
}

fn main() {}
