//! A supervisor-managed restart right after a SIGKILL: the killed store's worker may still hold
//! the listening socket for a few milliseconds, and the new store must wait for it rather than
//! exit with "Address already in use".

#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};
use support::{Backend, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_started_right_after_a_sigkill_serves() {
    let mut store = Store::start(Backend::Sqlite, "restart").await;
    // The port still held when the new store starts (as by a worker that is still exiting):
    // it waits, logs why, and serves once the port is free.
    store.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    let holder = loop {
        // (The killed worker itself may still hold it for a moment.)
        match std::net::TcpListener::bind(store.addr) {
            Ok(l) => break l,
            Err(e) => assert!(Instant::now() < deadline, "the port stays taken: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        drop(holder);
    });
    store.launch_at_once().await;
    release.await.expect("the holder let go");
    assert_eq!(store.req("GET", "/product").await.status, 200);
    assert!(
        store.log_tail(200).contains("is still in use"),
        "the store said why it waited:\n{}",
        store.log_tail(20)
    );

    // 50 SIGKILLs of the whole group, each followed at once by a start that serves.
    let started = Instant::now();
    for _ in 0..50 {
        store.kill();
        store.launch_at_once().await;
        assert_eq!(store.req("GET", "/product").await.status, 200);
    }
    let waited = store.log_tail(100_000).matches("is still in use").count() - 1;
    println!(
        "50 restarts in {:?}; {waited} of them found the port still held",
        started.elapsed()
    );
    store.kill();
    let dir = store.dir.clone();
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}
