//! Queues (issue 10) in one process, on SQLite and Postgres: limits, priority, partitions,
//! deduplication, delays, cancelling an enqueued workflow, the transactional outbox, enqueues
//! from a workflow and from a client, and the typed errors. Several processes sharing a queue:
//! `queue_processes.rs`.

use dbos_runtime::prelude::*;
use dbos_runtime::{Queue, Runtime};
use dbos_tests::{both_backends, eventually, probe, within, Inspect, TestDb};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

#[queue]
static PLAIN: Queue = Queue::new("plain");

#[queue]
static PAIRS: Queue = Queue::new("pairs").worker_concurrency(2);

#[queue]
static SERIAL: Queue = Queue::new("serial").concurrency(1).priority_enabled();

#[queue]
static TENANTS: Queue = Queue::new("tenants").concurrency(1).partitioned();

#[queue]
static RATED: Queue = Queue::new("rated").rate_limit(10, Duration::from_millis(500));

#[queue]
static OUTBOX: Queue = Queue::new("outbox");

/// Declared but not registered: enqueues onto it are refused.
static UNDECLARED: Queue = Queue::new("undeclared");

/// Running workflows per test key, and the most seen at once.
fn gauge() -> &'static Mutex<HashMap<String, (u32, u32)>> {
    static G: OnceLock<Mutex<HashMap<String, (u32, u32)>>> = OnceLock::new();
    G.get_or_init(Default::default)
}

fn enter(key: &str) {
    let mut g = gauge().lock().expect("gauge");
    let e = g.entry(key.to_owned()).or_default();
    e.0 += 1;
    e.1 = e.1.max(e.0);
}

fn leave(key: &str) {
    gauge()
        .lock()
        .expect("gauge")
        .entry(key.to_owned())
        .or_default()
        .0 -= 1;
}

fn most(key: &str) -> u32 {
    gauge().lock().expect("gauge").get(key).map_or(0, |e| e.1)
}

/// The order in which workflows of a test started.
fn order() -> &'static Mutex<HashMap<String, Vec<String>>> {
    static O: OnceLock<Mutex<HashMap<String, Vec<String>>>> = OnceLock::new();
    O.get_or_init(Default::default)
}

#[step]
async fn busy(key: String, ms: u64) -> Result<(), Error> {
    enter(&key);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    leave(&key);
    Ok(())
}

/// Runs for `ms` while counted in `key`'s gauge.
#[workflow]
async fn occupy(key: String, ms: u64) -> Result<u64, Error> {
    busy(key, ms).await?;
    Ok(ms)
}

#[step]
async fn note_start(key: String, label: String) -> Result<(), Error> {
    order()
        .lock()
        .expect("order")
        .entry(key)
        .or_default()
        .push(label);
    Ok(())
}

/// Notes its label in `key`'s start order.
#[workflow]
async fn labelled(key: String, label: String) -> Result<String, Error> {
    note_start(key, label.clone()).await?;
    Ok(label)
}

#[step]
async fn hold(gate: String) -> Result<(), Error> {
    probe::bump(&format!("{gate}/started"));
    probe::pass(&gate).await;
    Ok(())
}

/// Waits at gate `gate` (counting its start).
#[workflow]
async fn blocker(gate: String) -> Result<(), Error> {
    hold(gate).await
}

#[step]
async fn count(key: String) -> Result<(), Error> {
    probe::bump(&key);
    Ok(())
}

/// Counts a run of `key`.
#[workflow]
async fn counted(key: String) -> Result<(), Error> {
    count(key).await
}

#[step]
async fn now_ms() -> Result<i64, Error> {
    Ok(chrono::Utc::now().timestamp_millis())
}

/// Returns when it started (epoch ms).
#[workflow]
async fn started_at() -> Result<i64, Error> {
    now_ms().await
}

/// Tries to enqueue on PLAIN with a deduplication ID; whether it was refused.
#[workflow]
async fn enqueue_deduplicated(key: String) -> Result<bool, Error> {
    match PLAIN.enqueue(counted(key).with_dedup_id("held")).await {
        Ok(_) => Ok(false),
        Err(Error::QueueDeduplicated { .. }) | Err(Error::Recorded(_)) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Enqueues a child on PLAIN, then waits at gate `gate`.
#[workflow]
async fn enqueue_then_hold(key: String, gate: String) -> Result<(), Error> {
    PLAIN.enqueue(counted(key)).await?;
    hold(gate).await
}

/// Enqueues a child on PLAIN and waits for it.
#[workflow]
async fn parent_enqueues(key: String) -> Result<(), Error> {
    let child = PLAIN.enqueue(counted(key)).await?;
    child.get_result().await
}

/// Writes a row and enqueues a workflow in one transaction, then fails when `fail`.
#[transaction]
async fn order_and_notify(tx: &mut Tx, order: String, fail: bool) -> Result<String, Error> {
    tx.query("INSERT INTO orders (id) VALUES ($1)")
        .bind(&order)
        .execute()
        .await?;
    let id = tx
        .enqueue(&OUTBOX, counted(format!("outbox-{order}")))
        .await?;
    if fail {
        return Err(Error::InvalidArgument("the order was refused".into()));
    }
    Ok(id)
}

#[workflow]
async fn checkout(order: String, fail: bool) -> Result<String, Error> {
    order_and_notify(order, fail).await
}

async fn launch(db: &TestDb, app: &str) -> Runtime {
    within("launch", Runtime::launch(db.config(app)))
        .await
        .expect("launch")
}

fn key(db: &TestDb, what: &str) -> String {
    format!("{what}-{:?}", db.backend)
}

async fn column(x: &Inspect, db: &TestDb, id: &str, col: &str) -> Option<String> {
    let s = db.sys();
    x.rows(&format!(
        "SELECT {col} FROM {s}workflow_status WHERE workflow_uuid = '{id}'"
    ))
    .await
    .into_iter()
    .next()
    .and_then(|r| r.into_iter().next().flatten())
}

both_backends! {
    async fn an_enqueued_workflow_runs_once_and_its_row_says_where_it_came_from(db: TestDb) {
        let rt = launch(&db, "q-basic").await;
        let h = rt.enqueue(&PLAIN, occupy(key(&db, "basic"), 1).with_id("q-1")).await.expect("enqueue");
        assert_eq!(within("result", h.get_result()).await.expect("result"), 1);
        // The same ID again joins the existing workflow.
        let again = rt.enqueue(&PLAIN, occupy(key(&db, "basic"), 1).with_id("q-1")).await.expect("enqueue again");
        assert_eq!(within("result", again.get_result()).await.expect("result"), 1);
        let x = db.inspect().await;
        assert_eq!(column(&x, &db, "q-1", "queue_name").await.as_deref(), Some("plain"));
        assert_eq!(column(&x, &db, "q-1", "status").await.as_deref(), Some("SUCCESS"));
        assert_eq!(column(&x, &db, "q-1", "recovery_attempts").await.as_deref(), Some("1"));
        assert!(column(&x, &db, "q-1", "started_at_epoch_ms").await.is_some());
        rt.shutdown().await;
    }
}

both_backends! {
    async fn worker_concurrency_bounds_how_many_run_at_once(db: TestDb) {
        let k = key(&db, "pairs");
        let rt = launch(&db, "q-pairs").await;
        let mut handles = Vec::new();
        for i in 0..8 {
            handles.push(rt.enqueue(&PAIRS, occupy(k.clone(), 60).with_id(format!("pair-{i}"))).await.expect("enqueue"));
        }
        for h in handles {
            within("result", h.get_result()).await.expect("result");
        }
        assert_eq!(most(&k), 2, "at most 2 ran at once, and 2 did");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn priority_orders_the_queue_then_first_in_first_out(db: TestDb) {
        let k = key(&db, "prio");
        let gate = format!("{k}/gate");
        let rt = launch(&db, "q-prio").await;
        // The blocker takes the only slot; the rest wait behind it.
        let b = rt.enqueue(&SERIAL, blocker(gate.clone()).with_id("prio-blocker")).await.expect("enqueue");
        eventually(Duration::from_secs(20), "the blocker runs", || async { probe::count(&format!("{gate}/started")) == 1 }).await;
        let plan = [("a", Some(5)), ("b", Some(1)), ("c", None), ("d", Some(3)), ("e", Some(1)), ("f", None)];
        let mut handles = Vec::new();
        for (label, prio) in plan {
            let mut call = labelled(k.clone(), label.to_owned()).with_id(format!("prio-{label}"));
            if let Some(p) = prio {
                call = call.with_priority(p);
            }
            handles.push(rt.enqueue(&SERIAL, call).await.expect("enqueue"));
            // Distinct creation times, so first-in-first-out is defined.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        probe::open(&gate);
        within("blocker", b.get_result()).await.expect("blocker");
        for h in handles {
            within("result", h.get_result()).await.expect("result");
        }
        let seen = order().lock().expect("order").get(&k).cloned().unwrap_or_default();
        // No priority is 0, which runs first; then 1, 1, 3, 5, each tie in enqueue order.
        assert_eq!(seen, ["c", "f", "b", "e", "d", "a"]);
        rt.shutdown().await;
    }
}

both_backends! {
    async fn each_partition_has_its_own_limit_and_a_quiet_one_is_not_starved(db: TestDb) {
        let k = key(&db, "parts");
        let rt = launch(&db, "q-parts").await;
        let (ga, gb) = (format!("{k}/a"), format!("{k}/b"));
        let a = rt.enqueue(&TENANTS, blocker(ga.clone()).with_partition("a").with_id("part-a1")).await.expect("enqueue");
        let b = rt.enqueue(&TENANTS, blocker(gb.clone()).with_partition("b").with_id("part-b1")).await.expect("enqueue");
        eventually(Duration::from_secs(20), "both busy partitions run at once", || async {
            probe::count(&format!("{ga}/started")) == 1 && probe::count(&format!("{gb}/started")) == 1
        }).await;
        // Partition a's second workflow waits for its first; partition c runs meanwhile.
        let a2 = rt.enqueue(&TENANTS, counted(format!("{k}/a2")).with_partition("a").with_id("part-a2")).await.expect("enqueue");
        for i in 0..3 {
            let c = rt.enqueue(&TENANTS, counted(format!("{k}/c")).with_partition("c").with_id(format!("part-c{i}"))).await.expect("enqueue");
            within("partition c", c.get_result()).await.expect("c runs while a and b are busy");
        }
        assert_eq!(probe::count(&format!("{k}/a2")), 0, "a's second waits for its first");
        probe::open(&ga);
        within("a2", a2.get_result()).await.expect("a2");
        assert_eq!(probe::count(&format!("{k}/a2")), 1);
        probe::open(&gb);
        within("a", a.get_result()).await.expect("a");
        within("b", b.get_result()).await.expect("b");
        let x = db.inspect().await;
        assert_eq!(column(&x, &db, "part-a2", "queue_partition_key").await.as_deref(), Some("a"));
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_dedup_id_is_refused_while_active_and_free_once_finished(db: TestDb) {
        let k = key(&db, "dedup");
        let gate = format!("{k}/gate");
        let rt = launch(&db, "q-dedup").await;
        let first = rt.enqueue(&PLAIN, blocker(gate.clone()).with_id("dd-1").with_dedup_id("user-7")).await.expect("enqueue");
        let second = rt.enqueue(&PLAIN, blocker(gate.clone()).with_id("dd-2").with_dedup_id("user-7")).await;
        match second {
            Err(Error::QueueDeduplicated { queue, deduplication_id, workflow_id }) => {
                assert_eq!((queue.as_str(), deduplication_id.as_str(), workflow_id.as_str()), ("plain", "user-7", "dd-2"));
            }
            other => panic!("expected QueueDeduplicated, got {other:?}"),
        }
        // Another ID, or the same ID on another queue, is fine.
        let other = rt.enqueue(&PLAIN, counted(format!("{k}/other")).with_dedup_id("user-8")).await.expect("another dedup ID");
        within("other", other.get_result()).await.expect("other");
        assert!(!rt.workflow_exists("dd-2").await.expect("exists"), "the refused enqueue left no row");
        probe::open(&gate);
        within("first", first.get_result()).await.expect("first");
        let third = rt.enqueue(&PLAIN, counted(format!("{k}/third")).with_id("dd-3").with_dedup_id("user-7")).await.expect("free again once finished");
        within("third", third.get_result()).await.expect("third");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_delayed_workflow_starts_after_its_delay_and_soon_after(db: TestDb) {
        let rt = launch(&db, "q-delay").await;
        let x = db.inspect().await;
        let delay = Duration::from_millis(400);
        let enqueued = chrono::Utc::now().timestamp_millis();
        let h = rt.enqueue(&PLAIN, started_at().with_id("delayed-1").with_delay(delay)).await.expect("enqueue");
        assert_eq!(column(&x, &db, "delayed-1", "status").await.as_deref(), Some("DELAYED"));
        let started = within("result", h.get_result()).await.expect("result");
        let late = started - enqueued - delay.as_millis() as i64;
        assert!(late >= 0, "started {late} ms before its delay passed");
        // Woken by its own timer, not a poll: well within the fallback poll's second.
        assert!(late < 300, "started {late} ms after its delay");
        println!("{:?}: delayed workflow started {late} ms after its delay", db.backend);
        rt.shutdown().await;
    }
}

both_backends! {
    async fn the_rate_limit_holds_in_every_window_and_is_used_in_full(db: TestDb) {
        let k = key(&db, "rated");
        let rt = launch(&db, "q-rated").await;
        let t0 = std::time::Instant::now();
        let mut handles = Vec::new();
        for i in 0..25 {
            handles.push(rt.enqueue(&RATED, counted(k.clone()).with_id(format!("rate-{i}"))).await.expect("enqueue"));
        }
        for h in handles {
            within("result", h.get_result()).await.expect("result");
        }
        let took = t0.elapsed();
        let x = db.inspect().await;
        let s = db.sys();
        let mut starts: Vec<i64> = x.rows(&format!("SELECT started_at_epoch_ms FROM {s}workflow_status WHERE queue_name = 'rated' ORDER BY started_at_epoch_ms"))
            .await.into_iter().filter_map(|r| r[0].as_deref().and_then(|v| v.parse().ok())).collect();
        starts.sort();
        assert_eq!(starts.len(), 25);
        for (i, t) in starts.iter().enumerate() {
            let in_window = starts[i..].iter().take_while(|u| **u < t + 500).count();
            assert!(in_window <= 10, "{in_window} starts in the 500 ms from {t}: {starts:?}");
        }
        // 25 starts at 10 per 500 ms: two full windows, then the rest; not much more.
        assert!(took >= Duration::from_millis(1000), "took {took:?}");
        assert!(took < Duration::from_millis(2500), "took {took:?}: the limiter wakes when its window frees");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn cancelling_an_enqueued_workflow_removes_it_from_the_queue(db: TestDb) {
        let k = key(&db, "qcancel");
        let gate = format!("{k}/gate");
        let rt = launch(&db, "q-cancel").await;
        let b = rt.enqueue(&SERIAL, blocker(gate.clone()).with_id("qc-blocker")).await.expect("enqueue");
        eventually(Duration::from_secs(20), "the blocker runs", || async { probe::count(&format!("{gate}/started")) == 1 }).await;
        let waiting = rt.enqueue(&SERIAL, counted(format!("{k}/never")).with_id("qc-waiting")).await.expect("enqueue");
        assert!(rt.cancel_workflow("qc-waiting").await.expect("cancel"));
        let x = db.inspect().await;
        assert_eq!(column(&x, &db, "qc-waiting", "status").await.as_deref(), Some("CANCELLED"));
        assert_eq!(column(&x, &db, "qc-waiting", "queue_name").await, None, "off the queue");
        probe::open(&gate);
        within("blocker", b.get_result()).await.expect("blocker");
        let r = within("cancelled", waiting.get_result()).await;
        assert!(matches!(r, Err(Error::WorkflowCancelled(_))), "{r:?}");
        // A later workflow on the queue runs; the cancelled one never did.
        let after = rt.enqueue(&SERIAL, counted(format!("{k}/after"))).await.expect("enqueue");
        within("after", after.get_result()).await.expect("after");
        assert_eq!(probe::count(&format!("{k}/never")), 0);
        rt.shutdown().await;
    }
}

both_backends! {
    async fn an_outbox_enqueue_commits_with_the_transaction_or_not_at_all(db: TestDb) {
        let rt = launch(&db, "q-outbox").await;
        let x = db.inspect().await;
        x.exec("CREATE TABLE orders (id TEXT PRIMARY KEY)").await;
        let b = format!("{:?}", db.backend);
        let refused = rt.start_workflow(checkout(format!("o1-{b}"), true).with_id("ob-1")).await.expect("start");
        assert!(within("refused", refused.get_result()).await.is_err());
        assert_eq!(x.scalar("SELECT COUNT(*) FROM orders").await, 0, "the write rolled back");
        let s = db.sys();
        assert_eq!(x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE queue_name = 'outbox'")).await, 0, "and so did the enqueue");

        let ok = rt.start_workflow(checkout(format!("o2-{b}"), false).with_id("ob-2")).await.expect("start");
        let child = within("ok", ok.get_result()).await.expect("committed");
        assert_eq!(child, "ob-2-1-1", "a deterministic ID: <workflow>-<operation>-<k>");
        let h = rt.retrieve_workflow::<(), Error>(&child).await.expect("the enqueued workflow exists");
        within("the enqueued workflow", h.get_result()).await.expect("it ran");
        assert_eq!(probe::count(&format!("outbox-o2-{b}")), 1);
        assert_eq!(x.scalar("SELECT COUNT(*) FROM orders").await, 1);
        rt.shutdown().await;
    }
}

both_backends! {
    async fn an_enqueue_from_a_workflow_is_a_recorded_child(db: TestDb) {
        let k = key(&db, "child");
        let rt = launch(&db, "q-child").await;
        let h = rt.start_workflow(parent_enqueues(k.clone()).with_id("pe-1")).await.expect("start");
        within("parent", h.get_result()).await.expect("parent");
        let steps = rt.get_workflow_steps("pe-1").await.expect("steps");
        assert_eq!(steps[0].child_workflow_id.as_deref(), Some("pe-1-1"), "{steps:?}");
        let x = db.inspect().await;
        assert_eq!(column(&x, &db, "pe-1-1", "queue_name").await.as_deref(), Some("plain"));
        assert_eq!(column(&x, &db, "pe-1-1", "parent_workflow_id").await.as_deref(), Some("pe-1"));
        // Forking the parent from step 1 replays the enqueue: it does not enqueue again.
        assert_eq!(probe::count(&k), 1);
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_client_enqueues_and_a_launched_process_runs_it(db: TestDb) {
        let k = key(&db, "client");
        let rt = launch(&db, "q-client").await;
        let client = within("connect", Runtime::connect(db.config("q-client"))).await.expect("connect");
        let t0 = std::time::Instant::now();
        let h = client.enqueue(&PLAIN, counted(k.clone()).with_id("cl-1")).await.expect("enqueue");
        within("result", h.get_result()).await.expect("result");
        println!("{:?}: a client's enqueue ran and its result was read in {:?}", db.backend, t0.elapsed());
        assert_eq!(probe::count(&k), 1);
        client.shutdown().await;
        rt.shutdown().await;
    }
}

both_backends! {
    async fn bad_enqueues_are_typed_errors_naming_the_queue(db: TestDb) {
        let k = key(&db, "bad");
        let rt = launch(&db, "q-bad").await;
        let e = rt.enqueue(&UNDECLARED, counted(k.clone())).await.unwrap_err();
        assert!(matches!(&e, Error::UnknownQueue(q) if q == "undeclared"), "{e}");
        assert!(e.to_string().contains("#[queue]"), "{e}");
        let e = rt.enqueue(&PLAIN, counted(k.clone()).with_priority(1)).await.unwrap_err();
        assert!(matches!(&e, Error::InvalidQueue { queue, .. } if queue == "plain"), "{e}");
        let e = rt.enqueue(&TENANTS, counted(k.clone())).await.unwrap_err();
        assert!(matches!(&e, Error::InvalidQueue { queue, why } if queue == "tenants" && why.contains("partition")), "{e}");
        let e = rt.enqueue(&PLAIN, counted(k.clone()).with_partition("x")).await.unwrap_err();
        assert!(matches!(&e, Error::InvalidQueue { queue, .. } if queue == "plain"), "{e}");
        let e = rt.enqueue(&TENANTS, counted(k.clone()).with_partition("x").with_dedup_id("d")).await.unwrap_err();
        assert!(matches!(&e, Error::InvalidQueue { .. }), "{e}");
        let e = rt.enqueue(&SERIAL, counted(k.clone()).with_priority(u32::MAX)).await.unwrap_err();
        assert!(matches!(&e, Error::InvalidArgument(_)), "{e}");
        let e = rt.start_workflow(counted(k.clone()).with_delay(Duration::from_secs(1))).await.unwrap_err();
        assert!(matches!(&e, Error::InvalidArgument(m) if m.contains("enqueue")), "{e}");
        // A queue value that differs from its declaration is refused too.
        static IMPOSTOR: Queue = Queue::new("plain").concurrency(3);
        let e = rt.enqueue(&IMPOSTOR, counted(k.clone())).await.unwrap_err();
        assert!(matches!(&e, Error::InvalidQueue { queue, .. } if queue == "plain"), "{e}");
        assert_eq!(probe::count(&k), 0, "nothing ran");
        let x = db.inspect().await;
        let s = db.sys();
        assert_eq!(x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status")).await, 0, "nothing was recorded");
        rt.shutdown().await;
    }
}

/// An idle queue costs no commit: the dispatcher only reads while nothing is enqueued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_dispatcher_commits_nothing() {
    let db = TestDb::fresh(dbos_tests::Backend::Postgres, "queues_idle_pg").await;
    // (The liveness record is renewed every fifth of this: not within the test.)
    let cfg = db
        .config("q-idle")
        .with_liveness_timeout(Duration::from_secs(60));
    let rt = within("launch", Runtime::launch(cfg))
        .await
        .expect("launch");
    let h = rt
        .enqueue(&PLAIN, counted("idle".into()))
        .await
        .expect("enqueue");
    within("result", h.get_result()).await.expect("result");
    let before = rt.metrics_snapshot().commits;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        rt.metrics_snapshot().commits,
        before,
        "no commit while idle"
    );
    rt.shutdown().await;
}

/// On Postgres every launched process gets an executor ID of its own unless one is set, and
/// records itself as alive; a clean shutdown marks it expired, so its work is taken at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_executor_ids_on_postgres_are_unique_and_recorded_alive() {
    let db = TestDb::fresh(dbos_tests::Backend::Postgres, "queues_executor_ids_pg").await;
    let a = launch(&db, "q-ids").await;
    let b = launch(&db, "q-ids").await;
    let fixed = within(
        "launch",
        Runtime::launch(db.config("q-ids").with_executor_id("fixed")),
    )
    .await
    .expect("launch");
    let (ia, ib) = (
        a.config().executor_id.clone(),
        b.config().executor_id.clone(),
    );
    assert_ne!(ia, ib, "two processes, two IDs");
    assert!(
        ia != "local" && ia.contains(&std::process::id().to_string()),
        "{ia}"
    );
    assert_eq!(
        fixed.config().executor_id,
        "fixed",
        "a configured ID is kept"
    );
    let x = db.inspect().await;
    let alive = x
        .scalar("SELECT COUNT(*) FROM dbos.rs_executor_liveness WHERE last_seen_at > 0")
        .await;
    assert_eq!(alive, 3);
    a.shutdown().await;
    let expired = x
        .rows("SELECT executor_id FROM dbos.rs_executor_liveness WHERE last_seen_at = 0")
        .await;
    assert_eq!(
        expired,
        vec![vec![Some(ia)]],
        "a clean shutdown expires its record"
    );
    b.shutdown().await;
    fixed.shutdown().await;
}

/// A process that shuts down hands its unfinished workflows over at once: a live process
/// takes them over at its next renewal and finishes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_hands_unfinished_work_to_a_live_process() {
    let db = TestDb::fresh(dbos_tests::Backend::Postgres, "queues_handover_pg").await;
    let cfg = |id: &str| {
        db.config("q-handover")
            .with_executor_id(id)
            .with_liveness_timeout(Duration::from_secs(1))
            .with_shutdown_timeout(Duration::ZERO)
    };
    let a = within("launch a", Runtime::launch(cfg("a")))
        .await
        .expect("launch a");
    let b = within("launch b", Runtime::launch(cfg("b")))
        .await
        .expect("launch b");
    let gate = "handover/gate".to_owned();
    a.start_workflow(blocker(gate.clone()).with_id("ho-1"))
        .await
        .expect("start");
    eventually(Duration::from_secs(20), "it runs in a", || async {
        probe::count(&format!("{gate}/started")) == 1
    })
    .await;
    // Cut off mid-step: PENDING under a.
    a.shutdown().await;
    probe::open(&gate);
    let h = b
        .retrieve_workflow::<(), Error>("ho-1")
        .await
        .expect("retrieve");
    within("b finishes it", h.get_result())
        .await
        .expect("finished");
    let x = db.inspect().await;
    let row = x
        .rows("SELECT executor_id, recovery_attempts FROM dbos.workflow_status WHERE workflow_uuid = 'ho-1'")
        .await;
    assert_eq!(row, vec![vec![Some("b".to_owned()), Some("2".to_owned())]]);
    assert_eq!(
        probe::count(&format!("{gate}/started")),
        2,
        "its step ran again in b"
    );
    b.shutdown().await;
}

both_backends! {
    async fn enqueue_to_start_is_event_driven_not_polled(db: TestDb) {
        let rt = launch(&db, "q-wake").await;
        let x = db.inspect().await;
        // From this process: the enqueue wakes the dispatcher. On Postgres also from a client
        // (another runtime, told by NOTIFY). The fallback poll is 1 s.
        let client = match db.backend {
            dbos_tests::Backend::Postgres => Some(within("connect", Runtime::connect(db.config("q-wake"))).await.expect("connect")),
            dbos_tests::Backend::Sqlite => None,
        };
        for (i, from) in [&rt, &rt, &rt].into_iter().chain(client.iter().chain(client.iter()).chain(client.iter())).enumerate() {
            let id = format!("wake-{i}");
            from.enqueue(&PLAIN, counted(format!("wake-{:?}", db.backend)).with_id(&id)).await.expect("enqueue");
            let h = rt.retrieve_workflow::<(), Error>(&id).await.expect("retrieve");
            within("result", h.get_result()).await.expect("result");
            let created: i64 = column(&x, &db, &id, "created_at").await.and_then(|v| v.parse().ok()).expect("created");
            let started: i64 = column(&x, &db, &id, "started_at_epoch_ms").await.and_then(|v| v.parse().ok()).expect("started");
            assert!(started - created < 300, "{id}: started {} ms after its enqueue", started - created);
        }
        if let Some(c) = client {
            c.shutdown().await;
        }
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_resumed_workflow_does_not_enqueue_again(db: TestDb) {
        let k = key(&db, "resume-enqueue");
        let gate = format!("{k}/gate");
        let cfg = || db.config("q-resume").with_executor_id("resumer").with_shutdown_timeout(Duration::ZERO);
        let rt = within("launch", Runtime::launch(cfg())).await.expect("launch");
        rt.start_workflow(enqueue_then_hold(k.clone(), gate.clone()).with_id("re-1")).await.expect("start");
        eventually(Duration::from_secs(20), "it holds", || async { probe::count(&format!("{gate}/started")) == 1 }).await;
        // The child finishes first: a shutdown between its body and its completion record
        // would rightly run it again, which is not what this test is about.
        let child = rt.retrieve_workflow::<(), Error>("re-1-1").await.expect("its child");
        within("child", child.get_result()).await.expect("child");
        // Cut off mid-step, as a crash would; the next launch resumes it from its records.
        rt.shutdown().await;
        probe::open(&gate);
        let rt = within("relaunch", Runtime::launch(cfg())).await.expect("relaunch");
        let h = rt.retrieve_workflow::<(), Error>("re-1").await.expect("retrieve");
        within("resumed", h.get_result()).await.expect("resumed");
        let child = rt.retrieve_workflow::<(), Error>("re-1-1").await.expect("its child");
        within("child", child.get_result()).await.expect("child");
        let x = db.inspect().await;
        let s = db.sys();
        assert_eq!(x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE parent_workflow_id = 're-1'")).await, 1);
        assert_eq!(probe::count(&format!("{gate}/started")), 2, "the parent's step ran again");
        assert_eq!(probe::count(&k), 1, "the child ran once");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_refused_enqueue_is_recorded_so_a_replay_takes_the_same_path(db: TestDb) {
        let k = key(&db, "refused");
        let gate = format!("{k}/gate");
        let rt = launch(&db, "q-refused").await;
        let held = rt.enqueue(&PLAIN, blocker(gate.clone()).with_id("rf-held").with_dedup_id("held")).await.expect("enqueue");
        let h = rt.start_workflow(enqueue_deduplicated(k.clone()).with_id("rf-1")).await.expect("start");
        assert!(within("refused", h.get_result()).await.expect("result"), "the enqueue was refused");
        let steps = rt.get_workflow_steps("rf-1").await.expect("steps");
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert!(steps[0].error.as_deref().is_some_and(|e| e.contains("QueueDeduplicated")), "the refusal is recorded: {steps:?}");
        // Once the ID is free, a fork that replays step 1 is refused all the same.
        probe::open(&gate);
        within("held", held.get_result()).await.expect("held");
        let fork = rt.fork_workflow("rf-1", 2, Default::default()).await.expect("fork");
        let f = rt.retrieve_workflow::<bool, Error>(&fork).await.expect("retrieve");
        assert!(within("fork", f.get_result()).await.expect("fork"), "replayed as refused");
        assert_eq!(probe::count(&k), 0, "nothing was enqueued");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn an_execution_whose_workflow_was_taken_over_records_nothing_more(db: TestDb) {
        // The fence: once another executor owns the workflow (as after a takeover), the old
        // execution's next checkpoint is refused, even though the workflow is not cancelled.
        let k = key(&db, "fenced");
        let gate = format!("{k}/gate");
        let rt = within("launch", Runtime::launch(db.config("q-fence").with_executor_id("old-owner"))).await.expect("launch");
        let h = rt.start_workflow(blocker(gate.clone()).with_id("fence-1")).await.expect("start");
        eventually(Duration::from_secs(20), "it holds", || async { probe::count(&format!("{gate}/started")) == 1 }).await;
        let x = db.inspect().await;
        let s = db.sys();
        x.exec(&format!("UPDATE {s}workflow_status SET executor_id = 'new-owner' WHERE workflow_uuid = 'fence-1'")).await;
        probe::open(&gate);
        // Its step body finishes, but its record and its outcome are refused.
        eventually(Duration::from_secs(20), "the execution stops", || async { rt.running_workflows() == 0 }).await;
        assert_eq!(x.scalar(&format!("SELECT COUNT(*) FROM {s}operation_outputs WHERE workflow_uuid = 'fence-1'")).await, 0, "nothing recorded");
        assert_eq!(column(&x, &db, "fence-1", "status").await.as_deref(), Some("PENDING"), "no outcome written");
        assert_eq!(column(&x, &db, "fence-1", "executor_id").await.as_deref(), Some("new-owner"));
        drop(h);
        rt.shutdown().await;
    }
}
