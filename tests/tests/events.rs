//! Events (issue 4): `set_event` in a workflow (recorded, the last value wins) and `get_event`
//! from anywhere (recorded inside a workflow), with timeouts that end on time and wake-ups from
//! this process and from others, on SQLite and Postgres.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::within;
use dbos_tests::{both_backends, eventually, Backend, Inspect, TestDb};
use std::future::IntoFuture;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::process::Command;

const APP: &str = "event-tests";
const VERSION: &str = "event-tests-1";
/// The longest any single wait in these tests may take.
const T: Duration = Duration::from_secs(20);

async fn launch(db: &TestDb) -> Runtime {
    let cfg = db
        .config(APP)
        .with_version(VERSION)
        .with_executor_id("event-local");
    within("launch", Runtime::launch(cfg))
        .await
        .expect("launch the runtime")
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `(function_id, function_name, output, serialization)` of a workflow's operations.
async fn ops(
    x: &Inspect,
    db: &TestDb,
    id: &str,
) -> Vec<(String, String, Option<String>, Option<String>)> {
    x.rows(&format!(
        "SELECT function_id, function_name, output, serialization FROM {}operation_outputs \
         WHERE workflow_uuid = '{id}' ORDER BY function_id",
        db.sys()
    ))
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap_or_default(),
            r[1].clone().unwrap_or_default(),
            r[2].clone(),
            r[3].clone(),
        )
    })
    .collect()
}

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

#[workflow]
async fn nothing_set() -> Result<(), Error> {
    Ok(())
}

#[workflow]
async fn get_event_in_workflow(of: String, key: String, ms: u64) -> Result<Option<u32>, Error> {
    DBOS::get_event::<u32>(&of, &key, Duration::from_millis(ms)).await
}

both_backends! {
    async fn get_event_times_out_after_the_timeout_and_not_much_after(db: TestDb) {
        let rt = launch(&db).await;
        within("nothing_set", rt.scope(nothing_set().with_id("quiet").into_future())).await.expect("quiet");
        for (of, ms) in [("quiet", 1000_u64), ("no-such-workflow", 400)] {
            let started = Instant::now();
            let got = rt.scope(DBOS::get_event::<u32>(of, "never", Duration::from_millis(ms))).await.expect("get_event");
            let took = started.elapsed();
            println!("{:?}: get_event({of}, {ms} ms) returned {got:?} after {took:?}", db.backend);
            assert_eq!(got, None);
            assert!(took >= Duration::from_millis(ms), "returned before the timeout: {took:?}");
            assert!(took < Duration::from_millis(ms + 150), "returned long after the timeout: {took:?}");
        }
        // The difference between "not set yet" and "no such workflow" is one call away.
        assert!(rt.scope(DBOS::workflow_exists("quiet")).await.expect("exists"));
        assert!(!rt.scope(DBOS::workflow_exists("no-such-workflow")).await.expect("exists"));

        // In a workflow the timeout is recorded: DBOS.getEvent holding null, DBOS.sleep after it.
        let started = Instant::now();
        let got = within("get_event_in_workflow", rt.scope(get_event_in_workflow("quiet".into(), "never".into(), 500).with_id("ge").into_future()))
            .await
            .expect("ge");
        let took = started.elapsed();
        assert_eq!(got, None);
        assert!(took >= Duration::from_millis(500) && took < Duration::from_millis(800), "took {took:?}");
        let x = db.inspect().await;
        let rows = ops(&x, &db, "ge").await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!((rows[0].0.as_str(), rows[0].1.as_str()), ("1", "DBOS.getEvent"));
        assert_eq!((rows[0].2.as_deref(), rows[0].3.as_deref()), (Some("null"), Some("portable_json")));
        assert_eq!((rows[1].0.as_str(), rows[1].1.as_str()), ("2", "DBOS.sleep"));
        let wake: f64 = rows[1].2.as_deref().unwrap_or("0").parse().expect("the wake-up in epoch seconds");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        assert!(wake > now - 60.0 && wake <= now, "wake-up {wake} is a recent epoch time in seconds");
        rt.shutdown().await;
    }
}

#[step]
async fn set_in_step(v: u32) -> Result<(), Error> {
    DBOS::set_event("from-step", &v).await
}

#[workflow]
async fn set_three_times() -> Result<(), Error> {
    for v in 1..=3_u32 {
        DBOS::set_event("k", &v).await?;
    }
    DBOS::set_event("other", "text").await?;
    set_in_step(7).await
}

both_backends! {
    async fn the_last_value_wins_and_every_value_is_kept_in_history(db: TestDb) {
        let rt = launch(&db).await;
        within("set_three_times", rt.scope(set_three_times().with_id("setter").into_future())).await.expect("setter");
        let got = rt.scope(DBOS::get_event::<u32>("setter", "k", Duration::ZERO)).await.expect("get_event");
        assert_eq!(got, Some(3));
        let other = rt.scope(DBOS::get_event::<String>("setter", "other", Duration::ZERO)).await.expect("get_event");
        assert_eq!(other.as_deref(), Some("text"));
        let x = db.inspect().await;
        let s = db.sys();
        let events = x
            .rows(&format!("SELECT key, value, serialization FROM {s}workflow_events WHERE workflow_uuid = 'setter' ORDER BY key"))
            .await;
        let events: Vec<Vec<Option<&str>>> = events.iter().map(|r| r.iter().map(Option::as_deref).collect()).collect();
        assert_eq!(
            events,
            vec![
                vec![Some("from-step"), Some("7"), Some("portable_json")],
                vec![Some("k"), Some("3"), Some("portable_json")],
                vec![Some("other"), Some("\"text\""), Some("portable_json")],
            ]
        );
        let history = x
            .rows(&format!(
                "SELECT function_id, key, value FROM {s}workflow_events_history WHERE workflow_uuid = 'setter' ORDER BY function_id"
            ))
            .await;
        let history: Vec<Vec<Option<&str>>> = history.iter().map(|r| r.iter().map(Option::as_deref).collect()).collect();
        assert_eq!(
            history,
            vec![
                vec![Some("1"), Some("k"), Some("1")],
                vec![Some("2"), Some("k"), Some("2")],
                vec![Some("3"), Some("k"), Some("3")],
                vec![Some("4"), Some("other"), Some("\"text\"")],
                vec![Some("5"), Some("from-step"), Some("7")],
            ],
            "one history row per set, at its operation (a step's set at the step's position)"
        );
        let rows = ops(&x, &db, "setter").await;
        assert_eq!(rows.len(), 5, "{rows:?}");
        for r in &rows[..4] {
            assert_eq!((r.1.as_str(), r.2.as_deref(), r.3.as_deref()), ("DBOS.setEvent", None, None), "a marker row: {r:?}");
        }
        assert!(rows[4].1.ends_with("set_in_step"), "the step's own row: {:?}", rows[4]);
        let err = rt.scope(DBOS::set_event("k", &1_u32)).await.expect_err("outside a workflow");
        assert!(matches!(err, Error::NotInWorkflow(_)), "{err:?}");
        rt.shutdown().await;
    }
}

#[workflow]
async fn set_after_go(value: u32) -> Result<(), Error> {
    DBOS::recv::<u32>("go", T).await?;
    DBOS::set_event("k", &value).await
}

#[workflow]
async fn read_then_park(of: String) -> Result<(Option<u32>, Option<u32>), Error> {
    let value = DBOS::get_event::<u32>(&of, "k", Duration::from_secs(10)).await?;
    let go = DBOS::recv::<u32>("go", T).await?;
    Ok((value, go))
}

both_backends! {
    async fn get_event_in_a_workflow_is_recorded_and_replayed(db: TestDb) {
        let rt = launch(&db).await;
        let x = db.inspect().await;
        let s = db.sys();
        rt.scope(DBOS::start_workflow(set_after_go(1).with_id("src"))).await.expect("start src");
        // The reader waits for the event (its deadline recorded at position 2), then wakes.
        rt.scope(DBOS::start_workflow(read_then_park("src".into()).with_id("reader"))).await.expect("start reader");
        recorded(&x, &db, "reader", 2, "DBOS.sleep").await;
        let set_at = Instant::now();
        rt.scope(DBOS::send("src", &0_u32, "go")).await.expect("go");
        recorded(&x, &db, "reader", 1, "DBOS.getEvent").await;
        println!("{:?}: a waiting get_event in a workflow took {:?} from the go message to its record", db.backend, set_at.elapsed());
        recorded(&x, &db, "reader", 4, "DBOS.sleep").await;
        rt.shutdown().await;

        // Change the event behind the reader's back: the replay must return what it recorded.
        x.exec(&format!("UPDATE {s}workflow_events SET value = '2' WHERE workflow_uuid = 'src' AND key = 'k'")).await;
        let rt = launch(&db).await;
        rt.scope(DBOS::send("reader", &5_u32, "go")).await.expect("go");
        let h = rt.scope(DBOS::retrieve_workflow::<(Option<u32>, Option<u32>), Error>("reader")).await.expect("handle");
        assert_eq!(within("reader", rt.scope(h.get_result())).await.expect("reader"), (Some(1), Some(5)));
        let rows = ops(&x, &db, "reader").await;
        let names: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
        assert_eq!(names, vec![("1", "DBOS.getEvent"), ("2", "DBOS.sleep"), ("3", "DBOS.recv"), ("4", "DBOS.sleep")]);
        assert_eq!((rows[0].2.as_deref(), rows[0].3.as_deref()), (Some("1"), Some("portable_json")), "the value, as read");

        // A value that is already there is read without waiting: no deadline row.
        let got = within("reader2", rt.scope(get_event_in_workflow("src".into(), "k".into(), 5000).with_id("reader2").into_future()))
            .await
            .expect("reader2");
        assert_eq!(got, Some(2));
        let rows = ops(&x, &db, "reader2").await;
        assert_eq!(rows.len(), 1, "only DBOS.getEvent: {rows:?}");
        assert_eq!((rows[0].1.as_str(), rows[0].2.as_deref()), ("DBOS.getEvent", Some("2")));
        rt.shutdown().await;
    }
}

#[workflow]
async fn set_now_after_go() -> Result<(), Error> {
    DBOS::recv::<u32>("go", T).await?;
    // The clock is read in the body on purpose: it is what the test measures against.
    DBOS::set_event("k", &wall_us()).await
}

both_backends! {
    async fn a_waiting_get_event_wakes_when_the_event_is_set(db: TestDb) {
        let rt = launch(&db).await;
        // Here: the setter runs in this process.
        rt.scope(DBOS::start_workflow(set_now_after_go().with_id("local-setter"))).await.expect("start");
        let waiter = {
            let rt = rt.clone();
            tokio::spawn(async move {
                let got = rt.scope(DBOS::get_event::<u64>("local-setter", "k", T)).await;
                (got, wall_us())
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        rt.scope(DBOS::send("local-setter", &0_u32, "go")).await.expect("go");
        let (got, woke) = within("local waiter", waiter).await.expect("waiter task");
        let set = got.expect("get_event").expect("the event");
        let local = Duration::from_micros(woke.saturating_sub(set));
        println!("{:?}: set_event -> get_event in one process: {local:?}", db.backend);
        assert!(local < Duration::from_millis(100), "{local:?}");

        // Another process: the workflow does not exist yet when get_event starts waiting.
        let waiter = {
            let rt = rt.clone();
            tokio::spawn(async move {
                let got = rt.scope(DBOS::get_event::<u64>("remote-setter", "x", T)).await;
                (got, wall_us())
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = Command::new(env!("CARGO_BIN_EXE_worker_messages"))
            .env("DB_URL", &db.url)
            .env("MODE", "set_event")
            .env("SET_ID", "remote-setter")
            .kill_on_drop(true)
            .status()
            .await
            .expect("run the setting process");
        assert!(status.success(), "the setter failed: {status}");
        let (got, woke) = within("remote waiter", waiter).await.expect("waiter task");
        let set = got.expect("get_event").expect("the event");
        let remote = Duration::from_micros(woke.saturating_sub(set));
        println!("{:?}: set_event in process B -> get_event in process A: {remote:?}", db.backend);
        // Postgres wakes by NOTIFY (the safety net is 60 s); SQLite by the data_version watcher.
        let bound = match db.backend {
            Backend::Postgres => Duration::from_millis(250),
            Backend::Sqlite => Duration::from_millis(1600),
        };
        assert!(remote < bound, "{remote:?}");
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// A position another execution recorded first: nothing of ours is written.

#[step]
async fn held(key: String) -> Result<(), Error> {
    dbos_tests::probe::pass(&key).await;
    Ok(())
}

/// Waits at a gate, then sets an event, sends a message and writes a stream value; records in
/// probes what the calls returned.
#[workflow]
async fn set_and_send(key: String, dest: String) -> Result<(), Error> {
    held(key.clone()).await?;
    let set = DBOS::set_event("k", &"mine").await;
    let sent = DBOS::send(&dest, &"mine", "t").await;
    let streamed = DBOS::write_stream("s", &"mine").await;
    if matches!(streamed, Err(Error::ConcurrentExecution { .. })) {
        dbos_tests::probe::bump(&format!("{key}-stream-refused"));
    }
    if matches!(set, Err(Error::ConcurrentExecution { .. })) {
        dbos_tests::probe::bump(&format!("{key}-set-refused"));
    }
    if matches!(sent, Err(Error::ConcurrentExecution { .. })) {
        dbos_tests::probe::bump(&format!("{key}-send-refused"));
    }
    dbos_tests::probe::bump(&format!("{key}-done"));
    Ok(())
}

#[workflow]
async fn inbox() -> Result<Option<String>, Error> {
    DBOS::recv("t", Duration::from_secs(30)).await
}

both_backends! {
    async fn a_position_recorded_by_another_execution_writes_no_event_or_message(db: TestDb) {
        let rt = launch(&db).await;
        let key = format!("{}-taken", db.url);
        let x = db.inspect().await;
        let s = db.sys();
        rt.scope(DBOS::start_workflow(inbox().with_id("taken-inbox"))).await.expect("start the inbox");
        rt.scope(DBOS::start_workflow(set_and_send(key.clone(), "taken-inbox".into()).with_id("taken")))
            .await
            .expect("start");
        // While the workflow waits at its gate, "another execution" records positions 2 and 3.
        for (n, name) in [(2, "DBOS.setEvent"), (3, "DBOS.send"), (4, "DBOS.writeStream")] {
            x.exec(&format!(
                "INSERT INTO {s}operation_outputs (workflow_uuid, function_id, function_name, \
                 started_at_epoch_ms, completed_at_epoch_ms) VALUES ('taken', {n}, '{name}', 1, 1)"
            ))
            .await;
        }
        dbos_tests::probe::open(&key);
        eventually(T, "the workflow tried both writes", || {
            let done = dbos_tests::probe::count(&format!("{key}-done"));
            async move { done == 1 }
        })
        .await;
        assert_eq!(dbos_tests::probe::count(&format!("{key}-set-refused")), 1, "set_event reported the hand-off");
        let events = x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_events WHERE workflow_uuid = 'taken'")).await;
        let history = x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_events_history WHERE workflow_uuid = 'taken'")).await;
        let messages = x.scalar(&format!("SELECT COUNT(*) FROM {s}notifications WHERE destination_uuid = 'taken-inbox'")).await;
        let values = x.scalar(&format!("SELECT COUNT(*) FROM {s}streams WHERE workflow_uuid = 'taken'")).await;
        assert_eq!((events, history, messages, values), (0, 0, 0, 0), "a handed-off execution wrote an event, a message or a stream value");
        rt.shutdown().await;
    }
}

#[workflow]
async fn set_one(key: String, value: String) -> Result<(), Error> {
    DBOS::set_event(&key, &value).await
}

both_backends! {
    async fn a_waiter_never_takes_the_value_of_an_event_whose_wake_up_key_collides(db: TestDb) {
        let rt = launch(&db).await;
        // Workflow "col" with key "b::c" and workflow "col::b" with key "c" share a wake-up
        // key; a waiter on the second must not take the first's value.
        let waiter = {
            let rt = rt.clone();
            tokio::spawn(async move {
                rt.scope(DBOS::get_event::<String>("col::b", "c", Duration::from_millis(1500))).await
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        rt.scope(set_one("b::c".into(), "not yours".into()).with_id("col").into_future())
            .await
            .expect("set the colliding event");
        let got = within("the waiter", waiter).await.expect("waiter task").expect("get_event");
        assert_eq!(got, None, "the waiter took another workflow's event");
        rt.shutdown().await;
    }
}
