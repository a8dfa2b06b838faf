use dbos_runtime::prelude::*;

mod tokio {
    pub fn spawn<F>(_f: F) {}
}

#[workflow]
async fn fan_out() -> Result<(), Error> {
    tokio::spawn(async {});
    let _ = std::thread::spawn(|| ()).join();
    Ok(())
}

fn main() {}
