//! Unloading (issue 13): a workflow that waits long in `recv` or `DBOS::sleep` leaves memory and
//! is loaded again, by replaying its records, when its message comes or its wait ends. The work
//! before the wait runs once, a message is taken once, deadlines and timeouts hold, a cancel
//! sticks, and a restart or another process's message brings it back, on SQLite and Postgres.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::probe;
use dbos_tests::{both_backends, eventually, within, Inspect, TestDb};
use std::time::Instant;

const APP: &str = "unload-tests";
const VERSION: &str = "unload-tests-1";
/// How long a wait lasts before its workflow is unloaded, in these tests.
const UNLOAD_AFTER: Duration = Duration::from_millis(200);
/// The longest any single wait in these tests may take.
const T: Duration = Duration::from_secs(20);

async fn launch(db: &TestDb) -> Runtime {
    let cfg = db
        .config(APP)
        .with_version(VERSION)
        .with_executor_id("unload-local")
        .with_unload_waiting_after(Some(UNLOAD_AFTER));
    within("launch", Runtime::launch(cfg))
        .await
        .expect("launch the runtime")
}

/// Another process's runtime on the same database (another executor, app and version), so it
/// never runs the workflows under test.
async fn launch_sender(db: &TestDb) -> Runtime {
    let cfg = db
        .config("unload-sender")
        .with_version("unload-sender-1")
        .with_executor_id("unload-sender");
    within("launch the sender", Runtime::launch(cfg))
        .await
        .expect("launch the sender runtime")
}

/// Waits until `rt` holds `n` unloaded workflows and runs none.
async fn unloaded(rt: &Runtime, n: usize, what: &str) {
    eventually(T, what, || async {
        rt.unloaded_workflows() == n && rt.running_workflows() == 0
    })
    .await;
}

/// Whether workflow `id`'s row has status `status`.
async fn has_status(x: &Inspect, db: &TestDb, id: &str, status: &str) -> bool {
    x.scalar(&format!(
        "SELECT COUNT(*) FROM {}workflow_status WHERE workflow_uuid = '{id}' AND status = '{status}'",
        db.sys()
    ))
    .await
        == 1
}

#[step]
async fn count_run(key: String) -> Result<u32, Error> {
    Ok(probe::bump(&key))
}

/// A step, a wait for `first`, a step, a wait for `second`, a step: each step must run once
/// however often the workflow is unloaded and loaded again.
#[workflow]
async fn two_waits(key: String) -> Result<(u32, u32), Error> {
    count_run(format!("{key}/before")).await?;
    let first = DBOS::recv::<u32>("first", Duration::from_secs(60)).await?;
    count_run(format!("{key}/between")).await?;
    let second = DBOS::recv::<u32>("second", Duration::from_secs(60)).await?;
    count_run(format!("{key}/after")).await?;
    Ok((first.unwrap_or(0), second.unwrap_or(0)))
}

both_backends! {
    async fn a_waiting_workflow_leaves_memory_and_its_messages_bring_it_back(db: TestDb) {
        let key = format!("{:?}-messages", db.backend);
        let rt = launch(&db).await;
        let x = db.inspect().await;
        let s = db.sys();
        let h = rt.start_workflow(two_waits(key.clone()).with_id("w")).await.expect("start");
        unloaded(&rt, 1, "the workflow waiting for `first` is unloaded").await;

        // A message from this process loads it again; the handle held here still gets the
        // result, though the execution it was started with is gone.
        let t = Instant::now();
        rt.send("w", &1_u32, Some("first")).await.expect("send first");
        eventually(T, "`first` is taken", || async {
            x.scalar(&format!("SELECT COUNT(*) FROM {s}notifications WHERE topic = 'first' AND consumed")).await == 1
        })
        .await;
        println!("{:?}: an unloaded recv took its message {:?} after the send", db.backend, t.elapsed());
        unloaded(&rt, 1, "the workflow waiting for `second` is unloaded again").await;

        // A message from another process (NOTIFY on Postgres, the file watcher on SQLite).
        let sender = launch_sender(&db).await;
        sender.send("w", &2_u32, Some("second")).await.expect("send second");
        assert_eq!(within("the result", h.get_result()).await.expect("result"), (1, 2));
        for step in ["before", "between", "after"] {
            assert_eq!(probe::count(&format!("{key}/{step}")), 1, "step {step} ran once");
        }
        let recvs = x.scalar(&format!(
            "SELECT COUNT(*) FROM {s}operation_outputs WHERE workflow_uuid = 'w' AND function_name = 'DBOS.recv'"
        )).await;
        assert_eq!(recvs, 2, "each recv is recorded once");
        assert_eq!(rt.unloaded_workflows(), 0);
        sender.shutdown().await;
        rt.shutdown().await;
    }
}

#[workflow]
async fn long_sleep(key: String, ms: u64) -> Result<u32, Error> {
    count_run(format!("{key}/before")).await?;
    DBOS::sleep(Duration::from_millis(ms)).await?;
    count_run(format!("{key}/after")).await
}

both_backends! {
    async fn an_unloaded_sleep_ends_on_time(db: TestDb) {
        let key = format!("{:?}-sleep", db.backend);
        let rt = launch(&db).await;
        let t = Instant::now();
        let h = rt.start_workflow(long_sleep(key.clone(), 1500).with_id("s")).await.expect("start");
        unloaded(&rt, 1, "the sleeping workflow is unloaded").await;
        assert_eq!(within("the result", h.get_result()).await.expect("result"), 1);
        let took = t.elapsed();
        println!("{:?}: a 1.5 s sleep, unloaded, returned after {took:?}", db.backend);
        assert!(took >= Duration::from_millis(1500), "not before its end: {took:?}");
        assert!(took < Duration::from_millis(6000), "about on time: {took:?}");
        assert_eq!(probe::count(&format!("{key}/before")), 1, "the step before the sleep ran once");
        rt.shutdown().await;
    }
}

#[workflow]
async fn recv_for(ms: u64) -> Result<Option<u32>, Error> {
    DBOS::recv::<u32>("never", Duration::from_millis(ms)).await
}

#[workflow]
async fn recv_forever() -> Result<Option<u32>, Error> {
    DBOS::recv::<u32>("go", Duration::from_secs(3600)).await
}

both_backends! {
    async fn timeouts_deadlines_and_cancels_hold_while_unloaded(db: TestDb) {
        let rt = launch(&db).await;
        let x = db.inspect().await;

        // A recv's timeout passes while it is unloaded: it returns None on time.
        let t = Instant::now();
        let h = rt.start_workflow(recv_for(1200).with_id("timeout")).await.expect("start");
        unloaded(&rt, 1, "the recv with a timeout is unloaded").await;
        assert_eq!(within("the timeout", h.get_result()).await.expect("result"), None);
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(1200) && took < Duration::from_millis(6000), "took {took:?}");

        // The workflow's own timeout passes while it is unloaded: it is cancelled on time.
        let t = Instant::now();
        let h = rt
            .start_workflow(recv_forever().with_id("deadline").with_timeout(Duration::from_millis(1200)))
            .await
            .expect("start");
        unloaded(&rt, 1, "the workflow with a timeout is unloaded").await;
        let result = within("the workflow timeout", h.get_result()).await;
        assert!(matches!(result, Err(Error::WorkflowTimedOut(ref id)) if id == "deadline"), "{result:?}");
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(1200) && took < Duration::from_millis(6000), "took {took:?}");

        // A cancel of an unloaded workflow sticks: a message later loads nothing.
        let h = rt.start_workflow(recv_forever().with_id("cancelled")).await.expect("start");
        unloaded(&rt, 1, "the workflow to cancel is unloaded").await;
        assert!(rt.cancel_workflow("cancelled").await.expect("cancel"));
        assert_eq!(rt.unloaded_workflows(), 0, "a cancel forgets the unloaded workflow");
        let result = within("the cancelled result", h.get_result()).await;
        assert!(matches!(result, Err(Error::WorkflowCancelled(ref id)) if id == "cancelled"), "{result:?}");
        rt.send("cancelled", &1_u32, Some("go")).await.expect("send");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(rt.running_workflows(), 0, "nothing was loaded again");
        assert!(has_status(&x, &db, "cancelled", "CANCELLED").await, "still CANCELLED");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn an_unloaded_workflow_survives_a_restart(db: TestDb) {
        let key = format!("{:?}-restart", db.backend);
        let rt = launch(&db).await;
        rt.start_workflow(two_waits(key.clone()).with_id("r")).await.expect("start");
        unloaded(&rt, 1, "unloaded before the restart").await;
        rt.shutdown().await;

        // Recovered at launch, it replays to its wait and is unloaded again.
        let rt = launch(&db).await;
        unloaded(&rt, 1, "unloaded again after the restart").await;
        rt.send("r", &3_u32, Some("first")).await.expect("send first");
        rt.send("r", &4_u32, Some("second")).await.expect("send second");
        let h = rt.retrieve_workflow::<(u32, u32), Error>("r").await.expect("handle");
        assert_eq!(within("the result", h.get_result()).await.expect("result"), (3, 4));
        for step in ["before", "between", "after"] {
            assert_eq!(probe::count(&format!("{key}/{step}")), 1, "step {step} ran once");
        }
        rt.shutdown().await;
    }
}

#[workflow]
async fn short_wait(key: String) -> Result<Option<u32>, Error> {
    count_run(format!("{key}/before")).await?;
    DBOS::recv::<u32>("go", Duration::from_millis(100)).await
}

both_backends! {
    async fn waits_shorter_than_the_bound_and_unloading_off_stay_in_memory(db: TestDb) {
        let key = format!("{:?}-short", db.backend);
        let rt = launch(&db).await;
        // A wait that ends before the bound never unloads.
        let h = rt.start_workflow(short_wait(key.clone()).with_id("short")).await.expect("start");
        assert_eq!(within("short", h.get_result()).await.expect("result"), None);
        rt.shutdown().await;

        // Unloading off: a long wait stays in memory.
        let cfg = db
            .config(APP)
            .with_version(VERSION)
            .with_executor_id("unload-local")
            .with_unload_waiting_after(None);
        let rt = within("launch", Runtime::launch(cfg)).await.expect("launch");
        let h = rt.start_workflow(recv_forever().with_id("kept")).await.expect("start");
        tokio::time::sleep(UNLOAD_AFTER * 3).await;
        assert_eq!((rt.running_workflows(), rt.unloaded_workflows()), (1, 0), "the waiting workflow stays in memory");
        rt.send("kept", &5_u32, Some("go")).await.expect("send");
        assert_eq!(within("kept", h.get_result()).await.expect("result"), Some(5));
        rt.shutdown().await;
    }
}

#[step]
async fn slow_count(key: String, ms: u64) -> Result<u32, Error> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(probe::bump(&key))
}

/// A recv beside a step that runs for 900 ms (plain `tokio::join!`, not `DBOS::join`).
#[workflow]
async fn wait_beside_a_step(key: String) -> Result<(Option<u32>, u32), Error> {
    let (message, n) = tokio::join!(
        DBOS::recv::<u32>("go", Duration::from_secs(60)),
        slow_count(key, 900)
    );
    Ok((message?, n?))
}

#[workflow]
async fn recv_on(topic: String) -> Result<Option<String>, Error> {
    DBOS::recv::<String>(topic.as_str(), Duration::from_secs(60)).await
}

both_backends! {
    async fn a_wait_beside_another_operation_unloads_only_once_that_one_ended(db: TestDb) {
        let key = format!("{:?}-beside", db.backend);
        let rt = launch(&db).await;
        let h = rt.start_workflow(wait_beside_a_step(key.clone()).with_id("beside")).await.expect("start");
        // The recv's unload is refused while the step runs (dropping the body would cut the
        // step off and run it again)...
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!((rt.running_workflows(), rt.unloaded_workflows()), (1, 0), "in memory while the step runs");
        // ... and granted once the step has ended.
        unloaded(&rt, 1, "unloaded after the step ended").await;
        rt.send("beside", &7_u32, Some("go")).await.expect("send");
        assert_eq!(within("the result", h.get_result()).await.expect("result"), (Some(7), 1));
        assert_eq!(probe::count(&key), 1, "the step ran once");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn workflows_whose_message_keys_collide_both_wake(db: TestDb) {
        // `a::b` waiting on `c` and `a` waiting on `b::c` share the key `m:a::b::c`.
        let rt = launch(&db).await;
        let first = rt.start_workflow(recv_on("c".into()).with_id("a::b")).await.expect("start a::b");
        let second = rt.start_workflow(recv_on("b::c".into()).with_id("a")).await.expect("start a");
        unloaded(&rt, 2, "both are unloaded").await;
        rt.send("a::b", "one", Some("c")).await.expect("send to a::b");
        assert_eq!(within("a::b", first.get_result()).await.expect("a::b").as_deref(), Some("one"));
        unloaded(&rt, 1, "the other is unloaded (again)").await;
        rt.send("a", "two", Some("b::c")).await.expect("send to a");
        assert_eq!(within("a", second.get_result()).await.expect("a").as_deref(), Some("two"));
        rt.shutdown().await;
    }
}

#[workflow]
async fn child_waits(key: String) -> Result<u32, Error> {
    count_run(format!("{key}/child")).await?;
    Ok(DBOS::recv::<u32>("go", Duration::from_secs(60))
        .await?
        .unwrap_or(0))
}

#[workflow]
async fn parent_awaits(key: String) -> Result<u32, Error> {
    count_run(format!("{key}/parent")).await?;
    let child = DBOS::start_workflow(child_waits(key).with_id("child")).await?;
    Ok(child.get_result().await? + 1)
}

#[workflow]
async fn awaits_elsewhere(id: String) -> Result<u32, Error> {
    let other = DBOS::retrieve_workflow::<u32, Error>(&id).await?;
    Ok(other.get_result().await? + 1)
}

both_backends! {
    async fn a_parent_waiting_for_its_child_leaves_memory_and_the_child_s_end_brings_it_back(db: TestDb) {
        let key = format!("{:?}-parent", db.backend);
        let rt = launch(&db).await;
        let h = rt.start_workflow(parent_awaits(key.clone()).with_id("parent")).await.expect("start");
        unloaded(&rt, 2, "the child in recv and the parent in get_result are unloaded").await;
        rt.send("child", &41_u32, Some("go")).await.expect("send");
        assert_eq!(within("the parent", h.get_result()).await.expect("result"), 42);
        assert_eq!(probe::count(&format!("{key}/parent")), 1, "the parent's step ran once");
        assert_eq!(probe::count(&format!("{key}/child")), 1, "the child's step ran once");

        // A workflow that ends in another process notifies nobody here: the parked parent
        // looks at its row every second.
        let sender = launch_sender(&db).await;
        let key2 = format!("{key}-remote");
        sender.start_workflow(child_waits(key2).with_id("remote")).await.expect("start remote");
        let h = rt.start_workflow(awaits_elsewhere("remote".into()).with_id("waits-remote")).await.expect("start");
        unloaded(&rt, 1, "the workflow waiting for another process's is unloaded").await;
        let t = Instant::now();
        sender.send("remote", &9_u32, Some("go")).await.expect("send to remote");
        assert_eq!(within("waits-remote", h.get_result()).await.expect("result"), 10);
        println!("{:?}: a parked parent saw another process's workflow end after {:?}", db.backend, t.elapsed());
        sender.shutdown().await;
        rt.shutdown().await;
    }
}

#[workflow]
async fn awaits_itself() -> Result<String, Error> {
    let me = DBOS::retrieve_workflow::<String, Error>(&DBOS::workflow_id()?).await?;
    match me.get_result().await {
        Err(e) => Ok(e.kind().to_owned()),
        Ok(v) => Ok(format!("returned {v}")),
    }
}

both_backends! {
    async fn a_workflow_awaiting_its_own_result_is_refused(db: TestDb) {
        // It would wait for itself forever (and, unloaded, be polled forever).
        let rt = launch(&db).await;
        let h = rt.start_workflow(awaits_itself().with_id("self")).await.expect("start");
        assert_eq!(within("self", h.get_result()).await.expect("result"), "BadInputs");
        rt.shutdown().await;
    }
}
