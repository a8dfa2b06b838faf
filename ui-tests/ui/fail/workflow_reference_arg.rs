use dbos_runtime::prelude::*;

#[workflow]
async fn greet(name: &str) -> Result<String, Error> {
    Ok(format!("hello {name}"))
}

fn main() {}
