use dbos_runtime::prelude::*;
use std::collections::{HashMap, HashSet};

#[step]
async fn notify(user: String) -> Result<(), Error> {
    let _ = user;
    Ok(())
}

#[workflow]
async fn notify_all(users: HashMap<String, u32>) -> Result<(), Error> {
    for (user, _) in &users {
        notify(user.clone()).await?;
    }
    let seen: HashSet<String> = HashSet::new();
    let first: Vec<String> = seen.iter().cloned().collect();
    let again = HashMap::<u32, u32>::new();
    for _ in again.keys() {}
    // Shadowing reads the map in its own initializer: still flagged.
    let users: Vec<(String, u32)> = users.into_iter().collect();
    let _ = (first, users);
    Ok(())
}

fn main() {}
