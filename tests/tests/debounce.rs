//! Debouncing (issue 16, part 3): triggers with one key within the period start one workflow,
//! `period` after the last trigger, with the last trigger's input; a timeout bounds the wait
//! from the first; another key is another window; a crash in the middle of a window loses
//! nothing; concurrent triggers from two runtimes on one Postgres join one window. On SQLite
//! and Postgres.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{both_backends, probe, within, TestDb};
use std::time::Instant;

fn config(db: &TestDb, executor: &str) -> DbosConfig {
    db.config("debounce-tests")
        .with_version("debounce-1")
        .with_executor_id(executor)
        .with_shutdown_timeout(Duration::ZERO)
}

async fn launch(db: &TestDb, executor: &str) -> Runtime {
    within("launch", Runtime::launch(config(db, executor)))
        .await
        .expect("launch")
}

/// Counts its runs under `key` and returns its input.
#[workflow]
async fn summarize(key: String, n: u32) -> Result<u32, Error> {
    probe::bump(&format!("{key}/runs"));
    Ok(n)
}

#[queue]
static DEBOUNCED: Queue = Queue::new("debounced").concurrency(4);

static PLAIN: Debouncer = Debouncer::new();

both_backends! {
    async fn triggers_within_the_period_start_one_workflow_with_the_last_input(db: TestDb) {
        let key = format!("{}/window", db.url);
        let rt = launch(&db, "deb-a").await;
        let period = Duration::from_millis(400);
        let mut ids = Vec::new();
        let mut last = Instant::now();
        let mut handle = None;
        for n in 1..=3 {
            let h = rt.debounce(&PLAIN, "k", period, summarize(key.clone(), n)).await.expect("debounce");
            last = Instant::now();
            ids.push(h.workflow_id().to_owned());
            handle = Some(h);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ids.iter().all(|id| *id == ids[0]), "one workflow for the window: {ids:?}");
        let out = within("the debounced run", handle.expect("handle").get_result()).await;
        assert_eq!(out.expect("ran"), 3, "the last trigger's input");
        assert!(last.elapsed() >= period - Duration::from_millis(50), "it waited a period after the last trigger");
        assert_eq!(probe::count(&format!("{key}/runs")), 1, "one run for three triggers");

        // Another key is another window; the same key after the run is a new one.
        let other = rt.debounce(&PLAIN, "other", period, summarize(key.clone(), 10)).await.expect("other key");
        let again = rt.debounce(&PLAIN, "k", period, summarize(key.clone(), 20)).await.expect("next window");
        assert_ne!(other.workflow_id(), ids[0]);
        assert_ne!(again.workflow_id(), ids[0], "the key was freed when its workflow started");
        assert_ne!(again.workflow_id(), other.workflow_id());
        assert_eq!(within("other", other.get_result()).await.expect("other ran"), 10);
        assert_eq!(within("again", again.get_result()).await.expect("again ran"), 20);
        assert_eq!(probe::count(&format!("{key}/runs")), 3);

        let x = db.inspect().await;
        let s = db.sys();
        let rows = x.rows(&format!(
            "SELECT is_debounced, deduplication_id, queue_name FROM {s}workflow_status WHERE workflow_uuid = '{}'", ids[0]
        )).await;
        let flag = rows[0][0].clone().unwrap_or_default();
        assert!(flag == "1" || flag == "true" || flag == "t", "is_debounced is set: {rows:?}");
        assert_eq!(rows[0][1], None, "the deduplication ID is freed once it left DELAYED");
        assert_eq!(rows[0][2].as_deref(), Some("_dbos_internal_queue"));
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_timeout_bounds_the_wait_from_the_first_trigger(db: TestDb) {
        let key = format!("{}/timeout", db.url);
        let rt = launch(&db, "deb-a").await;
        let bounded = Debouncer::new().on_queue(&DEBOUNCED).with_timeout(Duration::from_millis(700));
        let first = Instant::now();
        let mut seen: Vec<(String, u32)> = Vec::new();
        // A trigger every 100 ms with a 300 ms period: without the timeout nothing would run.
        for n in 0..20 {
            let h = rt.debounce(&bounded, "busy", Duration::from_millis(300), summarize(key.clone(), n)).await.expect("debounce");
            seen.push((h.workflow_id().to_owned(), n));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let first_id = seen[0].0.clone();
        let last_input = seen.iter().filter(|(id, _)| *id == first_id).map(|(_, n)| *n).max().expect("inputs");
        assert!(seen.iter().any(|(id, _)| *id != first_id), "triggers after the deadline open a new window");
        let h = rt.retrieve_workflow::<u32, Error>(&first_id).await.expect("retrieve");
        assert_eq!(within("first window", h.get_result()).await.expect("ran"), last_input);
        let x = db.inspect().await;
        let started = x.scalar(&format!(
            "SELECT started_at_epoch_ms - created_at FROM {}workflow_status WHERE workflow_uuid = '{first_id}'", db.sys()
        )).await;
        // Without the timeout it could not start before the triggers stop (after 2 s).
        assert!(started <= 700 + 1000, "started {started} ms after the first trigger: the 700 ms timeout holds (with dispatch slack)");
        assert!(first.elapsed() >= Duration::from_millis(700));
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_crash_in_the_middle_of_a_window_loses_nothing(db: TestDb) {
        let key = format!("{}/crash", db.url);
        // Long enough for the second process to launch within the window on a loaded machine.
        let period = Duration::from_secs(2);
        let rt = launch(&db, "deb-a").await;
        let h = rt.debounce(&PLAIN, "crash", period, summarize(key.clone(), 7)).await.expect("debounce");
        let id = h.workflow_id().to_owned();
        rt.shutdown().await;
        // Another process comes up within the window and triggers again: the same window.
        let rt2 = launch(&db, "deb-b").await;
        let h2 = rt2.debounce(&PLAIN, "crash", period, summarize(key.clone(), 8)).await.expect("debounce again");
        assert_eq!(h2.workflow_id(), id, "the window survived the crash");
        assert_eq!(within("after the crash", h2.get_result()).await.expect("ran"), 8);
        assert_eq!(probe::count(&format!("{key}/runs")), 1);
        rt2.shutdown().await;
    }
}

both_backends! {
    async fn concurrent_triggers_from_two_runtimes_join_one_window_and_bad_calls_are_refused(db: TestDb) {
        let key = format!("{}/race", db.url);
        let a = launch(&db, "deb-a").await;
        let b = launch(&db, "deb-b").await;
        // Long enough that all twenty triggers land within one window on a loaded machine.
        let period = Duration::from_secs(3);
        let mut tasks = Vec::new();
        for n in 0..20_u32 {
            let rt = if n % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                rt.debounce(&PLAIN, "race", period, summarize(key, n)).await.map(|h| h.workflow_id().to_owned())
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.expect("join").expect("debounce"));
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1, "twenty racing triggers, one window: {ids:?}");
        let h = a.retrieve_workflow::<u32, Error>(&ids[0]).await.expect("retrieve");
        let out = within("the raced window", h.get_result()).await.expect("ran");
        assert!(out < 20);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(probe::count(&format!("{key}/runs")), 1, "exactly one run");

        let zero = a.debounce(&PLAIN, "z", Duration::ZERO, summarize(key.clone(), 1)).await;
        assert!(matches!(zero, Err(Error::InvalidArgument(_))), "{zero:?}");
        let own = a.debounce(&PLAIN, "z", period, summarize(key.clone(), 1).with_dedup_id("mine")).await;
        assert!(matches!(own, Err(Error::InvalidArgument(_))), "{own:?}");
        static UNDECLARED: Queue = Queue::new("never-declared");
        let undeclared = a.debounce(&Debouncer::new().on_queue(&UNDECLARED), "z", period, summarize(key.clone(), 1)).await;
        assert!(matches!(undeclared, Err(Error::UnknownQueue(_))), "{undeclared:?}");
        // A key held by a workflow that is not debounced stays refused.
        let holder = a
            .enqueue(&DEBOUNCED, summarize(key.clone(), 1).with_dedup_id("debounce::summarize-held").with_delay(Duration::from_secs(30)))
            .await
            .expect("a plain deduplicated enqueue");
        let held = a.debounce(&Debouncer::new().on_queue(&DEBOUNCED), "held", period, summarize(key.clone(), 2)).await;
        assert!(matches!(held, Err(Error::QueueDeduplicated { .. })), "{held:?}");
        a.cancel_workflow(holder.workflow_id()).await.expect("cancel the holder");
        a.shutdown().await;
        b.shutdown().await;
    }
}
