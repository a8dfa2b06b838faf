//! Messages (issue 4): `send` from anywhere and `recv` in a workflow body, on SQLite and
//! Postgres. Exactly-once delivery across SIGKILLs, topic isolation, send order, timeouts that
//! replay as `None`, deadlines that survive a restart, typed errors, cross-process wake-ups and
//! the CPU cost of a thousand waiters.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::within;
use dbos_tests::{both_backends, eventually, Backend, Inspect, TestDb};
use std::collections::{BTreeMap, HashSet};
use std::future::IntoFuture;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::process::Command;

const APP: &str = "msg-tests";
const VERSION: &str = "msg-tests-1";
/// The longest any single wait in these tests may take.
const T: Duration = Duration::from_secs(20);

async fn launch(db: &TestDb) -> Runtime {
    let cfg = db
        .config(APP)
        .with_version(VERSION)
        .with_executor_id("msg-local");
    within("launch", Runtime::launch(cfg))
        .await
        .expect("launch the runtime")
}

/// A second runtime on the same database that only sends: another executor, version and app,
/// so it never recovers or claims the workflows under test.
async fn launch_sender(db: &TestDb) -> Runtime {
    let cfg = db
        .config("msg-sender")
        .with_version("msg-sender-1")
        .with_executor_id("msg-sender");
    within("launch the sender", Runtime::launch(cfg))
        .await
        .expect("launch the sender runtime")
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn count(x: &Inspect, sql: &str) -> i64 {
    x.scalar(sql).await
}

/// Waits until workflow `id` has recorded an operation named `name` at `function_id`.
async fn recorded(x: &Inspect, db: &TestDb, id: &str, function_id: i32, name: &str) {
    let sql = format!(
        "SELECT COUNT(*) FROM {}operation_outputs WHERE workflow_uuid = '{id}' AND function_id = {function_id} \
         AND function_name = '{name}'",
        db.sys()
    );
    eventually(T, &format!("{id} records {name} at {function_id}"), || {
        let sql = sql.clone();
        async move { x.scalar(&sql).await == 1 }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Exactly once across SIGKILLs.

const RECEIVERS: usize = 5;
const MESSAGES: usize = 500;
const KILLS: usize = 24;

/// A receiving worker. Every other one unloads receivers that have waited 30 ms (they are
/// loaded again, replaying their records, when a message comes), so the kills land on both
/// kinds of wait.
fn worker(db: &TestDb) -> Command {
    static SPAWNED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker_messages"));
    if SPAWNED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2 == 1 {
        cmd.env("UNLOAD_MS", "30");
    }
    cmd.env("DB_URL", &db.url)
        .env("MODE", "receive")
        .env("RECEIVERS", RECEIVERS.to_string())
        .env("PER_RECEIVER", (MESSAGES / RECEIVERS).to_string())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null());
    cmd
}

both_backends! {
    async fn each_message_is_received_exactly_once_across_sigkills(db: TestDb) {
        // The sender's launch creates the system tables (and the SQLite file).
        let sender = launch_sender(&db).await;
        let x = db.inspect().await;
        let s = db.sys();
        x.exec("CREATE TABLE received (workflow_id TEXT NOT NULL, seq BIGINT NOT NULL, pid BIGINT NOT NULL)").await;
        let mut child = worker(&db).spawn().expect("spawn the worker");
        let created = format!("SELECT COUNT(*) FROM {s}workflow_status WHERE workflow_uuid LIKE 'rx-%'");
        eventually(T, "the receivers exist", || async { x.scalar(&created).await == RECEIVERS as i64 }).await;

        // The sender sends in bursts while the receiving process is killed and restarted.
        let scoped = sender.clone();
        let sending = tokio::spawn(async move { scoped.scope(async {
            let mut seq = 0;
            while seq < MESSAGES {
                for _ in 0..fastrand::usize(1..=6) {
                    if seq == MESSAGES {
                        break;
                    }
                    let dest = format!("rx-{}", seq % RECEIVERS);
                    DBOS::send_with_key(&dest, &(seq as i64), "n", &format!("seq-{seq}")).await?;
                    seq += 1;
                }
                tokio::time::sleep(Duration::from_millis(fastrand::u64(30..120))).await;
            }
            Ok::<(), Error>(())
        }).await });
        let mut killed = HashSet::new();
        let mut mid_stream = 0;
        for kill in 0..KILLS {
            if kill > 0 {
                child = worker(&db).spawn().expect("restart the worker");
            }
            // Kill while this process is taking messages: after its first one, at a random moment.
            let pid = i64::from(child.id().expect("worker pid"));
            let taken = format!("SELECT COUNT(*) FROM received WHERE pid = {pid}");
            let first = Instant::now();
            while x.scalar(&taken).await == 0 && first.elapsed() < Duration::from_secs(3) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..250))).await;
            assert!(child.try_wait().expect("poll the worker").is_none(), "the worker exited before all messages were sent");
            if x.scalar(&taken).await > 0 {
                mid_stream += 1;
            }
            killed.insert(pid);
            child.start_kill().expect("SIGKILL the worker");
            let _ = child.wait().await;
        }
        within("the sender", sending).await.expect("the sender task").expect("every send succeeds");
        sender.shutdown().await;
        // A lost message would leave its receiver waiting: give the last run 30 s, then look.
        let mut last = worker(&db).spawn().expect("spawn the final worker");
        let finished = tokio::time::timeout(Duration::from_secs(30), last.wait()).await;
        if finished.is_err() {
            let _ = last.kill().await;
        }

        let rows = x.rows("SELECT workflow_id, seq, pid FROM received").await;
        let mut by_seq: BTreeMap<i64, Vec<(String, i64)>> = BTreeMap::new();
        for r in &rows {
            let seq: i64 = r[1].as_deref().unwrap_or("-1").parse().expect("seq");
            let pid: i64 = r[2].as_deref().unwrap_or("0").parse().expect("pid");
            by_seq.entry(seq).or_default().push((r[0].clone().unwrap_or_default(), pid));
        }
        let twice: Vec<_> = by_seq.iter().filter(|(_, v)| v.len() > 1).collect();
        assert!(twice.is_empty(), "messages received more than once: {twice:?}");
        let lost: Vec<usize> = (0..MESSAGES).filter(|n| !by_seq.contains_key(&(*n as i64))).collect();
        assert!(lost.is_empty(), "messages never received ({} of them): {lost:?}", lost.len());
        assert_eq!(rows.len(), MESSAGES, "one received row per message");
        for (seq, v) in &by_seq {
            assert_eq!(v[0].0, format!("rx-{}", *seq as usize % RECEIVERS), "message {seq} went to its receiver");
        }
        let unconsumed = count(&x, &format!("SELECT COUNT(*) FROM {s}notifications WHERE NOT consumed")).await;
        assert_eq!(unconsumed, 0, "every message is consumed");
        let stored = count(&x, &format!("SELECT COUNT(*) FROM {s}notifications")).await;
        assert_eq!(stored as usize, MESSAGES, "keyed sends stored each message once");
        // Each receiver's recv rows hold its messages in send order.
        for i in 0..RECEIVERS {
            let recvs = x
                .rows(&format!(
                    "SELECT output FROM {s}operation_outputs WHERE workflow_uuid = 'rx-{i}' \
                     AND function_name = 'DBOS.recv' ORDER BY function_id"
                ))
                .await;
            let got: Vec<i64> = recvs.iter().map(|r| r[0].as_deref().unwrap_or("null").parse().expect("a number")).collect();
            let want: Vec<i64> = (0..MESSAGES as i64).filter(|n| *n as usize % RECEIVERS == i).collect();
            assert_eq!(got, want, "rx-{i} received its messages once each, in send order");
        }
        let status = finished.expect("the final worker finishes within 30 s").expect("wait for the final worker");
        assert!(status.success(), "the final worker run failed: {status}");
        let done = count(&x, &format!("SELECT COUNT(*) FROM {s}workflow_status WHERE workflow_uuid LIKE 'rx-%' AND status = 'SUCCESS'")).await;
        assert_eq!(done as usize, RECEIVERS, "every receiver finished");
        let pids: HashSet<i64> = by_seq.values().map(|v| v[0].1).collect();
        let in_killed = pids.iter().filter(|p| killed.contains(p)).count();
        println!(
            "{:?}: {KILLS} SIGKILLs ({mid_stream} after the process had taken messages); {MESSAGES} messages each \
             received exactly once, by {} processes ({in_killed} of them later killed)",
            db.backend, pids.len()
        );
        assert!(mid_stream >= KILLS / 2, "too few kills landed while messages flowed: {mid_stream}");
    }
}

// ---------------------------------------------------------------------------------------------
// Typed errors.

#[workflow]
async fn send_to_missing(dest: String) -> Result<String, Error> {
    match DBOS::send(&dest, &1_u32, None).await {
        Err(Error::NonExistentWorkflow(id)) => Ok(id),
        other => Err(Error::BadInputs(format!(
            "expected NonExistentWorkflow, got {other:?}"
        ))),
    }
}

#[workflow]
async fn idle() -> Result<(), Error> {
    Ok(())
}

both_backends! {
    async fn sending_to_a_missing_workflow_fails_at_once(db: TestDb) {
        let rt = launch(&db).await;
        let started = Instant::now();
        let err = rt.scope(DBOS::send("no-such-workflow", &1_u32, "t")).await.expect_err("no destination");
        assert!(matches!(&err, Error::NonExistentWorkflow(id) if id == "no-such-workflow"), "{err:?}");
        let err = rt
            .scope(DBOS::send_with_key("no-such-workflow", &1_u32, None, "k"))
            .await
            .expect_err("no destination");
        assert!(matches!(err, Error::NonExistentWorkflow(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(1), "answered at once, took {:?}", started.elapsed());
        let id = within("send_to_missing", rt.scope(send_to_missing("nobody".into()).with_id("sender-wf").into_future()))
            .await
            .expect("the workflow sees NonExistentWorkflow");
        assert_eq!(id, "nobody");
        let x = db.inspect().await;
        let s = db.sys();
        assert_eq!(count(&x, &format!("SELECT COUNT(*) FROM {s}notifications")).await, 0, "nothing stored");
        let markers = count(&x, &format!("SELECT COUNT(*) FROM {s}operation_outputs WHERE function_name = 'DBOS.send'")).await;
        assert_eq!(markers, 0, "a failed send records no marker");
        // An existing workflow, even a finished one, takes messages.
        within("idle", rt.scope(idle().with_id("idle").into_future())).await.expect("idle");
        rt.scope(DBOS::send("idle", &1_u32, "t")).await.expect("send to a finished workflow");
        rt.shutdown().await;
    }
}

#[step]
async fn recv_in_step() -> Result<String, Error> {
    match DBOS::recv::<u32>("t", Duration::from_millis(10)).await {
        Err(e) => Ok(e.kind().to_owned()),
        Ok(v) => Ok(format!("recv returned {v:?}")),
    }
}

#[workflow]
async fn calls_recv_in_a_step() -> Result<String, Error> {
    recv_in_step().await
}

both_backends! {
    async fn recv_outside_a_workflow_body_is_a_typed_error(db: TestDb) {
        let rt = launch(&db).await;
        let err = rt.scope(DBOS::recv::<u32>("t", Duration::from_secs(5))).await.expect_err("outside a workflow");
        assert!(matches!(err, Error::NotInWorkflow("DBOS::recv")), "{err:?}");
        let kind = within("calls_recv_in_a_step", rt.scope(calls_recv_in_a_step().into_future()))
            .await
            .expect("the workflow");
        assert_eq!(kind, "InStep");
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Topics, order and rows.

#[workflow]
async fn collect(plan: Vec<(Option<String>, u32)>) -> Result<Vec<Vec<u32>>, Error> {
    let mut out = Vec::new();
    for (topic, n) in plan {
        let mut got = Vec::new();
        for _ in 0..n {
            match DBOS::recv::<u32>(topic.as_deref(), T).await? {
                Some(v) => got.push(v),
                None => return Err(Error::BadInputs(format!("nothing came on {topic:?}"))),
            }
        }
        out.push(got);
    }
    Ok(out)
}

#[workflow]
async fn send_range(dest: String, topic: String, to: u32) -> Result<(), Error> {
    for i in 0..to {
        DBOS::send(&dest, &i, topic.as_str()).await?;
    }
    Ok(())
}

both_backends! {
    async fn topics_are_isolated_and_each_keeps_send_order(db: TestDb) {
        let rt = launch(&db).await;
        let plan = vec![(Some("b".to_owned()), 30), (Some("a".to_owned()), 30), (None, 10), (Some("w".to_owned()), 20)];
        let h = rt.scope(DBOS::start_workflow(collect(plan).with_id("collector"))).await.expect("start");
        rt.scope(async {
            for i in 0..30_u32 {
                DBOS::send("collector", &i, "a").await?;
                DBOS::send("collector", &i, "b").await?;
                if i < 10 {
                    DBOS::send("collector", &i, None).await?;
                }
            }
            send_range("collector".into(), "w".into(), 20).with_id("sender").await
        })
        .await
        .expect("sends");
        let got = within("collector", rt.scope(h.get_result())).await.expect("collector");
        let upto = |n: u32| (0..n).collect::<Vec<u32>>();
        assert_eq!(got, vec![upto(30), upto(30), upto(10), upto(20)], "each topic in send order, none mixed");

        let x = db.inspect().await;
        let s = db.sys();
        let rows = x
            .rows(&format!(
                "SELECT topic, message, serialization, consumed FROM {s}notifications \
                 WHERE destination_uuid = 'collector' ORDER BY created_at_epoch_ms"
            ))
            .await;
        assert_eq!(rows.len(), 90);
        for r in &rows {
            assert_eq!(r[2].as_deref(), Some("portable_json"), "{r:?}");
            assert!(matches!(r[3].as_deref(), Some("1" | "true")), "consumed: {r:?}");
        }
        let null_topic = rows.iter().filter(|r| r[0].as_deref() == Some("__null__topic__")).count();
        assert_eq!(null_topic, 10, "no topic is stored as DBOS's null topic");
        // From a workflow body, each send is one marker operation.
        let markers = x
            .rows(&format!(
                "SELECT function_id, function_name, output, serialization FROM {s}operation_outputs \
                 WHERE workflow_uuid = 'sender' ORDER BY function_id"
            ))
            .await;
        assert_eq!(markers.len(), 20);
        for (i, m) in markers.iter().enumerate() {
            assert_eq!(m[0].as_deref(), Some((i + 1).to_string().as_str()));
            assert_eq!(m[1].as_deref(), Some("DBOS.send"));
            assert_eq!((m[2].as_deref(), m[3].as_deref()), (None, None), "a marker row carries no payload");
        }
        // recv takes two positions: DBOS.recv holding the message, then DBOS.sleep when it waited.
        let recvs = x
            .rows(&format!(
                "SELECT function_id, output, serialization FROM {s}operation_outputs \
                 WHERE workflow_uuid = 'collector' AND function_name = 'DBOS.recv' ORDER BY function_id"
            ))
            .await;
        assert_eq!(recvs.len(), 90);
        for (i, r) in recvs.iter().enumerate() {
            assert_eq!(r[0].as_deref(), Some((2 * i + 1).to_string().as_str()), "recv at odd positions");
            assert_eq!(r[2].as_deref(), Some("portable_json"));
        }
        assert_eq!(recvs[0][1].as_deref(), Some("0"));
        let bad_sleeps = count(&x, &format!(
            "SELECT COUNT(*) FROM {s}operation_outputs WHERE workflow_uuid = 'collector' \
             AND function_name NOT IN ('DBOS.recv', 'DBOS.sleep')"
        )).await;
        assert_eq!(bad_sleeps, 0, "only recv and its deadlines");
        rt.shutdown().await;
    }
}

#[workflow]
async fn early_then_late() -> Result<(Option<u32>, Option<u32>), Error> {
    let early = DBOS::recv::<u32>("early", Duration::from_millis(300)).await?;
    let late = DBOS::recv::<u32>("late", T).await?;
    Ok((early, late))
}

both_backends! {
    async fn a_timeout_returns_none_and_replays_as_none(db: TestDb) {
        let rt = launch(&db).await;
        let x = db.inspect().await;
        let s = db.sys();
        let started = Instant::now();
        rt.scope(DBOS::start_workflow(early_then_late().with_id("el"))).await.expect("start");
        recorded(&x, &db, "el", 1, "DBOS.recv").await;
        assert!(started.elapsed() >= Duration::from_millis(300), "the timeout ran its course first");
        let row = x.rows(&format!(
            "SELECT output, serialization, started_at_epoch_ms, completed_at_epoch_ms FROM {s}operation_outputs \
             WHERE workflow_uuid = 'el' AND function_id = 1"
        )).await;
        assert_eq!((row[0][0].as_deref(), row[0][1].as_deref()), (Some("null"), Some("portable_json")), "a timeout records JSON null");
        let waited: i64 = row[0][3].as_deref().unwrap_or("0").parse::<i64>().unwrap_or(0)
            - row[0][2].as_deref().unwrap_or("0").parse::<i64>().unwrap_or(0);
        assert!(waited >= 300, "recorded wait {waited} ms");
        recorded(&x, &db, "el", 4, "DBOS.sleep").await;
        rt.shutdown().await;

        // A message on the timed-out topic arrives while the workflow is down; the replayed
        // recv still returns None and leaves the message alone.
        let sender = launch_sender(&db).await;
        sender.scope(DBOS::send("el", &7_u32, "early")).await.expect("send early");
        let rt = launch(&db).await;
        sender.scope(DBOS::send("el", &9_u32, "late")).await.expect("send late");
        let h = rt.scope(DBOS::retrieve_workflow::<(Option<u32>, Option<u32>), Error>("el")).await.expect("handle");
        assert_eq!(within("el", rt.scope(h.get_result())).await.expect("el"), (None, Some(9)));
        let early = count(&x, &format!("SELECT COUNT(*) FROM {s}notifications WHERE topic = 'early' AND NOT consumed")).await;
        assert_eq!(early, 1, "the replayed timeout consumed nothing");
        sender.shutdown().await;
        rt.shutdown().await;
    }
}

#[workflow]
async fn recv_with_timeout(ms: u64) -> Result<Option<u32>, Error> {
    DBOS::recv::<u32>("never", Duration::from_millis(ms)).await
}

both_backends! {
    async fn the_recorded_deadline_survives_a_restart(db: TestDb) {
        let rt = launch(&db).await;
        let x = db.inspect().await;
        let t0 = Instant::now();
        rt.scope(DBOS::start_workflow(recv_with_timeout(3000).with_id("late"))).await.expect("start");
        recorded(&x, &db, "late", 2, "DBOS.sleep").await;
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(t0.elapsed())).await;
        rt.shutdown().await;
        let t1 = Instant::now();
        let rt = launch(&db).await;
        let h = rt.scope(DBOS::retrieve_workflow::<Option<u32>, Error>("late")).await.expect("handle");
        assert_eq!(within("late", rt.scope(h.get_result())).await.expect("late"), None);
        let (total, after_restart) = (t0.elapsed(), t1.elapsed());
        println!("{:?}: recv(3 s) restarted after 1 s returned after {total:?} in all, {after_restart:?} after the restart", db.backend);
        assert!(total >= Duration::from_millis(2990), "not before the recorded deadline: {total:?}");
        assert!(total < Duration::from_millis(3700), "about the recorded deadline: {total:?}");
        assert!(after_restart < Duration::from_millis(2600), "waited only the remainder: {after_restart:?}");
        rt.shutdown().await;
    }
}

#[workflow]
async fn send_then_wait(dest: String) -> Result<(), Error> {
    DBOS::send(&dest, &5_u32, "r").await?;
    DBOS::recv::<u32>("go", T).await?;
    Ok(())
}

both_backends! {
    async fn keyed_and_replayed_sends_deliver_once(db: TestDb) {
        let rt = launch(&db).await;
        let x = db.inspect().await;
        let s = db.sys();
        let h = rt.scope(DBOS::start_workflow(collect(vec![(Some("k".into()), 1), (Some("r".into()), 1)]).with_id("dest")))
            .await
            .expect("start dest");
        rt.scope(async {
            DBOS::send_with_key("dest", &1_u32, "k", "once").await?;
            DBOS::send_with_key("dest", &2_u32, "k", "once").await
        })
        .await
        .expect("keyed sends");
        let keyed = count(&x, &format!("SELECT COUNT(*) FROM {s}notifications WHERE topic = 'k'")).await;
        assert_eq!(keyed, 1, "one message per idempotency key");
        let uuid = x.rows(&format!("SELECT message_uuid FROM {s}notifications WHERE topic = 'k'")).await;
        assert_eq!(uuid[0][0].as_deref(), Some("once::dest"), "message_uuid = <key>::<destination>");

        rt.scope(DBOS::start_workflow(send_then_wait("dest".into()).with_id("sw"))).await.expect("start sw");
        recorded(&x, &db, "sw", 3, "DBOS.sleep").await;
        rt.shutdown().await;
        let rt = launch(&db).await;
        rt.scope(DBOS::send("sw", &0_u32, "go")).await.expect("go");
        let sw = rt.scope(DBOS::retrieve_workflow::<(), Error>("sw")).await.expect("handle");
        within("sw", rt.scope(sw.get_result())).await.expect("sw");
        let sent = count(&x, &format!("SELECT COUNT(*) FROM {s}notifications WHERE topic = 'r'")).await;
        assert_eq!(sent, 1, "the replayed send was not sent again");
        drop(h);
        let dest = rt.scope(DBOS::retrieve_workflow::<Vec<Vec<u32>>, Error>("dest")).await.expect("handle");
        assert_eq!(within("dest", rt.scope(dest.get_result())).await.expect("dest"), vec![vec![1], vec![5]]);
        rt.shutdown().await;
    }
}

#[workflow]
async fn two_recvs_at_once() -> Result<(u32, u32), Error> {
    let (a, b) = tokio::join!(
        DBOS::recv::<u32>("t", Duration::from_millis(200)),
        DBOS::recv::<u32>("t", Duration::from_millis(200)),
    );
    let conflicts = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(Error::ConcurrentExecution { .. })))
        .count();
    let timeouts = [&a, &b].iter().filter(|r| matches!(r, Ok(None))).count();
    Ok((conflicts as u32, timeouts as u32))
}

both_backends! {
    async fn a_second_recv_on_the_same_topic_at_once_is_refused(db: TestDb) {
        let rt = launch(&db).await;
        let got = within("two_recvs_at_once", rt.scope(two_recvs_at_once().into_future())).await.expect("workflow");
        assert_eq!(got, (1, 1), "one recv waits, the other is a conflict error");
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Wake-ups from another process, and the cost of waiting.

#[step]
async fn clock_us() -> Result<u64, Error> {
    Ok(wall_us())
}

#[workflow]
async fn wait_for_x() -> Result<(u64, u64), Error> {
    let sent = DBOS::recv::<u64>("x", T).await?;
    let woke = clock_us().await?;
    match sent {
        Some(sent) => Ok((sent, woke)),
        None => Err(Error::BadInputs("no message on x".into())),
    }
}

both_backends! {
    async fn a_send_from_another_process_wakes_the_receiver(db: TestDb) {
        let rt = launch(&db).await;
        let x = db.inspect().await;
        let h = rt.scope(DBOS::start_workflow(wait_for_x().with_id("cross"))).await.expect("start");
        recorded(&x, &db, "cross", 2, "DBOS.sleep").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = Command::new(env!("CARGO_BIN_EXE_worker_messages"))
            .env("DB_URL", &db.url)
            .env("MODE", "send")
            .env("DEST", "cross")
            .kill_on_drop(true)
            .status()
            .await
            .expect("run the sending process");
        assert!(status.success(), "the sender failed: {status}");
        let (sent, woke) = within("cross", rt.scope(h.get_result())).await.expect("cross");
        let latency = Duration::from_micros(woke.saturating_sub(sent));
        println!("{:?}: send in process B -> recv returned in process A after {latency:?}", db.backend);
        // Postgres wakes by NOTIFY (the safety net is 60 s); SQLite by the data_version watcher.
        let bound = match db.backend {
            Backend::Postgres => Duration::from_millis(250),
            Backend::Sqlite => Duration::from_millis(1600),
        };
        assert!(latency < bound, "woke after {latency:?}, more than {bound:?}");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_thousand_waiters_do_not_burn_cpu(db: TestDb) {
        // Measured in a process of its own: the tests of this file share one.
        let out = tokio::time::timeout(
            Duration::from_secs(100),
            Command::new(env!("CARGO_BIN_EXE_bench_messages"))
                .args(["waiters", &db.url, "1000", "3"])
                .env("RUST_LOG", "warn")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the waiters run finishes")
        .expect("run bench_messages waiters");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "bench_messages waiters failed: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        let line = stdout.lines().find(|l| l.starts_with("waiters")).unwrap_or_else(|| panic!("no result line: {stdout}"));
        println!("{:?}: {line}", db.backend);
        let field = |name: &str| -> f64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.trim_end_matches(['%', 's', 'm']).parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line}"))
        };
        assert!(field("cpu") < 5.0, "1,000 waiters used more than 5% of a core: {line}");
        assert_eq!(field("commits"), 0.0, "no database writes while waiting: {line}");
        assert!(field("released") < 10_000.0, "all waiters woke when released: {line}");
    }
}

#[workflow]
async fn wait_for_y() -> Result<Option<u32>, Error> {
    DBOS::recv::<u32>("y", T).await
}

/// Postgres only: pooled connections the server closed while they sat idle (a restart, an idle
/// timeout) are found and replaced before use: the runtime checks a connection that has been
/// idle for a second instead of before every use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_while_idle_are_replaced_before_use() {
    let db = TestDb::fresh(Backend::Postgres, concat!(module_path!(), "_cut_idle")).await;
    let rt = launch(&db).await;
    let x = db.inspect().await;
    rt.scope(DBOS::start_workflow(wait_for_y().with_id("cut-idle")))
        .await
        .expect("start");
    for i in 0..4_u32 {
        rt.scope(DBOS::send("cut-idle", &i, "t"))
            .await
            .expect("send before");
    }
    let cut = x
        .scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND query NOT LIKE 'LISTEN%') AS t",
        )
        .await;
    assert!(cut >= 1, "the runtime's pooled connections were cut");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 4..8_u32 {
        rt.scope(DBOS::send("cut-idle", &i, "t"))
            .await
            .expect("send on a replaced connection");
    }
    let s = db.sys();
    let sent = x
        .scalar(&format!(
            "SELECT COUNT(*) FROM {s}notifications WHERE destination_uuid = 'cut-idle'"
        ))
        .await;
    assert_eq!(sent, 8);
    rt.shutdown().await;
}

/// Postgres only: notifications sent while the LISTEN connection is down are lost, so the
/// listener wakes every waiter once it is back (the per-waiter safety net is 60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_while_listen_is_down_still_wakes_the_receiver() {
    let db = TestDb::fresh(Backend::Postgres, concat!(module_path!(), "_listen_down")).await;
    let rt = launch(&db).await;
    let x = db.inspect().await;
    let h = rt
        .scope(DBOS::start_workflow(wait_for_y().with_id("deaf")))
        .await
        .expect("start");
    recorded(&x, &db, "deaf", 2, "DBOS.sleep").await;
    // A message written by another connection with triggers off: no NOTIFY at all, as if it
    // had been sent while the LISTEN connection was down.
    x.exec(
        "SET session_replication_role = replica; \
         INSERT INTO dbos.notifications (destination_uuid, topic, message, serialization) \
         VALUES ('deaf', 'y', '5', 'portable_json'); \
         SET session_replication_role = origin;",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !h.get_status()
            .await
            .map(|s| s.status == "SUCCESS")
            .unwrap_or(false),
        "nothing woke it yet"
    );
    let killed = x
        .scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%') AS t",
        )
        .await;
    assert_eq!(killed, 1, "one LISTEN connection to terminate");
    let sent = Instant::now();
    let got = within("deaf", rt.scope(h.get_result()))
        .await
        .expect("deaf");
    println!(
        "Postgres: LISTEN connection terminated; the receiver woke {:?} later",
        sent.elapsed()
    );
    assert_eq!(got, Some(5));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "woke after {:?}",
        sent.elapsed()
    );
    rt.shutdown().await;
}

/// Waits for a message; records in a probe that the recv was refused as handed off.
#[workflow]
async fn refused_inbox(key: String) -> Result<Option<String>, Error> {
    let got = DBOS::recv::<String>("t", Duration::from_secs(30)).await;
    if matches!(got, Err(Error::ConcurrentExecution { .. })) {
        dbos_tests::probe::bump(&format!("{key}-refused"));
    }
    got
}

both_backends! {
    async fn a_recv_whose_position_another_execution_recorded_takes_no_message(db: TestDb) {
        let rt = launch(&db).await;
        let x = db.inspect().await;
        let s = db.sys();
        let key = format!("{}-taken-recv", db.url);
        rt.scope(DBOS::start_workflow(refused_inbox(key.clone()).with_id("taken-recv")))
            .await
            .expect("start");
        // The recv waits: its deadline is recorded at the next position.
        recorded(&x, &db, "taken-recv", 2, "DBOS.sleep").await;
        // "Another execution" records the recv's position; then the message comes and wakes
        // the waiter, whose attempt to take it must fail as a whole.
        x.exec(&format!(
            "INSERT INTO {s}operation_outputs (workflow_uuid, function_id, function_name, output, \
             serialization, started_at_epoch_ms, completed_at_epoch_ms) \
             VALUES ('taken-recv', 1, 'DBOS.recv', '\"theirs\"', 'portable_json', 1, 1)"
        ))
        .await;
        rt.scope(DBOS::send("taken-recv", &"mine", "t")).await.expect("send");
        eventually(T, "the recv was refused", || {
            let refused = dbos_tests::probe::count(&format!("{key}-refused"));
            async move { refused == 1 }
        })
        .await;
        let unread = count(&x, &format!(
            "SELECT COUNT(*) FROM {s}notifications WHERE destination_uuid = 'taken-recv' AND NOT consumed"
        )).await;
        assert_eq!(unread, 1, "a handed-off recv consumed the message");
        let ours = count(&x, &format!(
            "SELECT COUNT(*) FROM {s}operation_outputs WHERE workflow_uuid = 'taken-recv' \
             AND function_id = 1 AND output = '\"mine\"'"
        )).await;
        assert_eq!(ours, 0, "the recv's record is the other execution's");
        rt.shutdown().await;
    }
}

#[step]
async fn gate(key: String) -> Result<(), Error> {
    dbos_tests::probe::pass(&key).await;
    Ok(())
}

/// Passes a gate, then waits for a message; records in a probe that the recv was refused.
#[workflow]
async fn gated_inbox(key: String) -> Result<Option<String>, Error> {
    gate(key.clone()).await?;
    let got = DBOS::recv::<String>("t", Duration::from_secs(30)).await;
    if matches!(got, Err(Error::ConcurrentExecution { .. })) {
        dbos_tests::probe::bump(&format!("{key}-refused"));
    }
    got
}

/// Postgres, where a look is one statement: a recv whose position another execution recorded
/// before its first look hands off at once, without recording a deadline or waiting it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recv_already_recorded_elsewhere_hands_off_at_its_first_look() {
    let db = TestDb::fresh(Backend::Postgres, concat!(module_path!(), "_elsewhere")).await;
    let rt = launch(&db).await;
    let x = db.inspect().await;
    let s = db.sys();
    let key = format!("{}-elsewhere", db.url);
    rt.scope(DBOS::start_workflow(
        gated_inbox(key.clone()).with_id("elsewhere"),
    ))
    .await
    .expect("start");
    // While the workflow waits at its gate (position 1), "another execution" records the
    // recv's position 2.
    x.exec(&format!(
        "INSERT INTO {s}operation_outputs (workflow_uuid, function_id, function_name, output, \
         serialization, started_at_epoch_ms, completed_at_epoch_ms) \
         VALUES ('elsewhere', 2, 'DBOS.recv', '\"theirs\"', 'portable_json', 1, 1)"
    ))
    .await;
    let opened = Instant::now();
    dbos_tests::probe::open(&key);
    eventually(T, "the recv was refused", || {
        let refused = dbos_tests::probe::count(&format!("{key}-refused"));
        async move { refused == 1 }
    })
    .await;
    assert!(
        opened.elapsed() < Duration::from_secs(10),
        "the recv waited {:?} (its timeout is 30 s) before handing off",
        opened.elapsed()
    );
    let deadlines = count(&x, &format!(
        "SELECT COUNT(*) FROM {s}operation_outputs WHERE workflow_uuid = 'elsewhere' AND function_id = 3"
    )).await;
    assert_eq!(deadlines, 0, "a handed-off recv recorded a deadline");
    rt.shutdown().await;
}
