//! Bodies that are tricky to move: `?`, early `return`, inner attributes, shadowed std names,
//! local items, and a workflow declared inside a function.
#![deny(warnings)]
use dbos_runtime::prelude::*;

#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Box;
#[allow(dead_code)]
struct Option;

#[workflow]
async fn early_return(flag: bool) -> core::result::Result<u32, Error> {
    #![allow(unreachable_code)]
    if flag {
        return Ok(1);
    }
    fn helper() -> u32 {
        2
    }
    let value = borrowed("abc", &[1, 2, 3]).await?;
    Ok(helper() + value)
}

/// Borrowed arguments are fine for a step that is tried once.
#[step]
async fn borrowed(text: &str, numbers: &[u32]) -> core::result::Result<u32, Error> {
    Ok(text.len() as u32 + numbers.iter().sum::<u32>())
}

/// Generic and `impl Trait` arguments are fine for steps: nothing rebuilds them from storage.
#[step]
async fn generic<T: std::fmt::Display + Send>(
    value: T,
    other: impl ToString + Send,
) -> core::result::Result<String, Error> {
    Ok(format!("{value}{}", other.to_string()))
}

fn main() {
    #[workflow]
    async fn local(x: u32) -> core::result::Result<u32, Error> {
        let text = generic(x, "y").await?;
        Ok(text.len() as u32)
    }
    let _ = local(1);
    let _ = early_return(true);
}
