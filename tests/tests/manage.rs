//! Operating workflows (issue 11): cancel (honoured at every checkpoint, waits end at once,
//! nothing runs after it even across a restart), resume, fork, timeouts, listing and garbage
//! collection, on SQLite and Postgres.

use dbos_runtime::prelude::*;
use dbos_runtime::{ForkOptions, Runtime, WorkflowFilter};
use dbos_tests::{both_backends, eventually, probe, within, Inspect, TestDb};
use std::time::Instant;

/// Records one effect row in the application's table, exactly once per (workflow, step).
#[transaction]
async fn effect(tx: &mut Tx, step: i64) -> Result<(), Error> {
    let id = DBOS::workflow_id()?;
    tx.query("INSERT INTO effects (workflow_id, step) VALUES ($1, $2)")
        .bind(id)
        .bind(step)
        .execute()
        .await?;
    Ok(())
}

/// Counts a run of `key`'s step `n`, then waits at gate `key/n` when `hold`.
#[step]
async fn mark(key: String, n: u32, hold: bool) -> Result<u32, Error> {
    probe::bump(&format!("{key}/{n}/started"));
    if hold {
        probe::pass(&format!("{key}/{n}")).await;
    }
    probe::bump(&format!("{key}/{n}/done"));
    Ok(n)
}

/// effect 1, a step held at gate 2, effect 3.
#[workflow]
async fn three_effects(key: String) -> Result<u32, Error> {
    effect(1).await?;
    mark(key.clone(), 2, true).await?;
    effect(3).await?;
    Ok(3)
}

#[workflow]
async fn waits_in_recv() -> Result<Option<String>, Error> {
    DBOS::recv("go", Duration::from_secs(120)).await
}

#[workflow]
async fn waits_in_sleep() -> Result<(), Error> {
    DBOS::sleep(Duration::from_secs(120)).await
}

#[workflow]
async fn waits_for_child(child: String) -> Result<Option<String>, Error> {
    let handle = DBOS::start_workflow(waits_in_recv().with_id(child)).await?;
    handle.get_result().await
}

#[workflow]
async fn child_then_recv() -> Result<Option<String>, Error> {
    DBOS::start_workflow(waits_in_recv()).await?;
    DBOS::recv("go", Duration::from_secs(120)).await
}

#[workflow]
async fn plain(n: u32) -> Result<u32, Error> {
    Ok(n)
}

async fn launch(db: &TestDb, app: &str) -> Runtime {
    within(
        "launch",
        Runtime::launch(db.config(app).with_executor_id("ops")),
    )
    .await
    .expect("launch")
}

async fn effects_table(x: &Inspect) {
    x.exec("CREATE TABLE IF NOT EXISTS effects (workflow_id TEXT NOT NULL, step BIGINT NOT NULL)")
        .await;
}

async fn effects_of(x: &Inspect, id: &str) -> Vec<i64> {
    x.rows(&format!(
        "SELECT step FROM effects WHERE workflow_id = '{id}' ORDER BY step"
    ))
    .await
    .into_iter()
    .map(|r| {
        r[0].as_deref()
            .and_then(|s| s.parse().ok())
            .expect("a step number")
    })
    .collect()
}

async fn status(rt: &Runtime, id: &str) -> String {
    rt.get_status(id)
        .await
        .expect("status")
        .expect("exists")
        .status
}

fn key(db: &TestDb, what: &str) -> String {
    format!("{what}-{:?}", db.backend)
}

both_backends! {
    async fn cancel_mid_step_stops_before_the_next_operation_even_after_a_restart(db: TestDb) {
        let k = key(&db, "cancel-mid-step");
        let rt = launch(&db, "ops-cancel").await;
        let x = db.inspect().await;
        effects_table(&x).await;
        let handle = rt.start_workflow(three_effects(k.clone()).with_id("c-1")).await.expect("start");
        eventually(Duration::from_secs(20), "step 2 runs", || async { probe::count(&format!("{k}/2/started")) == 1 }).await;

        assert!(rt.cancel_workflow("c-1").await.expect("cancel"), "a running workflow is cancelled");
        assert_eq!(status(&rt, "c-1").await, "CANCELLED");
        // The step that was running finishes its body; nothing after it runs or is recorded.
        probe::open(&format!("{k}/2"));
        let result = within("the cancelled result", handle.get_result()).await;
        assert!(matches!(result, Err(Error::WorkflowCancelled(ref id)) if id == "c-1"), "{result:?}");
        eventually(Duration::from_secs(20), "the execution stops", || async { rt.running_workflows() == 0 }).await;
        assert_eq!(probe::count(&format!("{k}/2/done")), 1);
        assert_eq!(effects_of(&x, "c-1").await, vec![1], "effect 3 never ran");
        let steps = rt.get_workflow_steps("c-1").await.expect("steps");
        assert_eq!(steps.iter().map(|s| s.function_id).collect::<Vec<_>>(), vec![1], "only step 1 is recorded: {steps:?}");
        assert!(rt.cancel_workflow("c-1").await.is_ok(), "cancelling again is harmless");

        // A restart does not bring it back.
        rt.shutdown().await;
        let rt = launch(&db, "ops-cancel").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(status(&rt, "c-1").await, "CANCELLED");
        assert_eq!(effects_of(&x, "c-1").await, vec![1]);
        assert_eq!(probe::count(&format!("{k}/2/started")), 1, "not resumed by the restart");

        // Finished workflows are left alone; unknown IDs are typed errors.
        let done = rt.start_workflow(plain(4).with_id("c-done")).await.expect("start");
        assert_eq!(within("plain", done.get_result()).await.expect("plain"), 4);
        assert!(!rt.cancel_workflow("c-done").await.expect("cancel a finished one"));
        assert_eq!(status(&rt, "c-done").await, "SUCCESS");
        assert!(matches!(rt.cancel_workflow("nope").await, Err(Error::NonExistentWorkflow(_))));
        assert!(matches!(rt.resume_workflow("nope").await, Err(Error::NonExistentWorkflow(_))));
        assert!(matches!(rt.get_workflow_steps("nope").await, Err(Error::NonExistentWorkflow(_))));
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_cancel_ends_waits_in_recv_sleep_and_get_result_at_once(db: TestDb) {
        let rt = launch(&db, "ops-waits").await;
        let x = db.inspect().await;
        effects_table(&x).await;
        let recv = rt.start_workflow(waits_in_recv().with_id("w-recv")).await.expect("recv");
        let sleep = rt.start_workflow(waits_in_sleep().with_id("w-sleep")).await.expect("sleep");
        let parent = rt
            .start_workflow(waits_for_child("w-child".to_owned()).with_id("w-parent"))
            .await
            .expect("parent");
        let waiting = format!(
            "SELECT COUNT(*) FROM {}operation_outputs WHERE function_name = 'DBOS.sleep' OR function_name = 'DBOS.getResult' \
             OR (workflow_uuid = 'w-parent' AND function_id = 1)",
            db.sys()
        );
        // recv's deadline, the child's recv deadline, the sleep, and the parent's child start.
        eventually(Duration::from_secs(20), "all four wait", || async { x.scalar(&waiting).await == 4 }).await;
        tokio::time::sleep(Duration::from_millis(100)).await;

        for (id, handle_result) in [
            ("w-recv", Box::pin(async { recv.get_result().await.map(|_| ()) }) as std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send + '_>>),
            ("w-sleep", Box::pin(async { sleep.get_result().await })),
            ("w-parent", Box::pin(async { parent.get_result().await.map(|_| ()) })),
        ] {
            let started = Instant::now();
            assert!(rt.cancel_workflow(id).await.expect("cancel"));
            let result = within(id, handle_result).await;
            let took = started.elapsed();
            assert!(matches!(result, Err(Error::WorkflowCancelled(ref w)) if w == id), "{id}: {result:?}");
            println!("{:?}: {id} stopped {took:?} after its cancel", db.backend);
            assert!(took < Duration::from_secs(2), "{id} took {took:?} to notice its cancel");
        }
        // The child is not cancelled with its parent (as in DBOS), and still waits.
        assert_eq!(status(&rt, "w-child").await, "PENDING");
        rt.send("w-child", &"hi", "go").await.expect("send");
        let child = rt.retrieve_workflow::<Option<String>, Error>("w-child").await.expect("child");
        assert_eq!(within("child", child.get_result()).await.expect("child"), Some("hi".to_owned()));
        rt.shutdown().await;
    }
}

both_backends! {
    async fn resume_after_cancel_and_after_dead_letter_finishes_exactly_once(db: TestDb) {
        let s = db.sys();
        let k = key(&db, "resume");
        let rt = launch(&db, "ops-resume").await;
        let x = db.inspect().await;
        effects_table(&x).await;
        let handle = rt.start_workflow(three_effects(k.clone()).with_id("r-1")).await.expect("start");
        eventually(Duration::from_secs(20), "step 2 runs", || async { probe::count(&format!("{k}/2/started")) == 1 }).await;
        rt.cancel_workflow("r-1").await.expect("cancel");
        assert!(matches!(within("cancelled", handle.get_result()).await, Err(Error::WorkflowCancelled(_))));

        probe::open(&format!("{k}/2"));
        assert!(rt.resume_workflow("r-1").await.expect("resume"), "a cancelled workflow resumes");
        let handle = rt.retrieve_workflow::<u32, Error>("r-1").await.expect("retrieve");
        assert_eq!(within("resumed", handle.get_result()).await.expect("resumed"), 3);
        assert_eq!(effects_of(&x, "r-1").await, vec![1, 3], "each transaction committed once");
        // Step 2's body was running at the cancel: it ran again after the resume, unless the
        // cancelled execution recorded it after the resume made the row active again (a step
        // is at-least-once; the transactions around it are exactly-once).
        let runs = probe::count(&format!("{k}/2/started"));
        assert!((1..=2).contains(&runs), "step 2 ran {runs} times");
        assert!(!rt.resume_workflow("r-1").await.expect("resume a finished one"), "a success stays");
        let attempts = x.scalar(&format!("SELECT recovery_attempts FROM {s}workflow_status WHERE workflow_uuid = 'r-1'")).await;
        assert_eq!(attempts, 1, "attempts were reset, then one claim");

        // Dead-lettered (as the dispatcher does after too many attempts): resume runs it once.
        let k2 = key(&db, "dead");
        probe::open(&format!("{k2}/2"));
        let h = rt.start_workflow(three_effects(k2.clone()).with_id("r-dead")).await.expect("start");
        within("r-dead", h.get_result()).await.expect("r-dead");
        x.exec(&format!(
            "UPDATE {s}workflow_status SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', recovery_attempts = 101, output = NULL \
             WHERE workflow_uuid = 'r-dead'"
        )).await;
        x.exec(&format!("DELETE FROM {s}operation_outputs WHERE workflow_uuid = 'r-dead' AND function_id = 3")).await;
        x.exec("DELETE FROM effects WHERE workflow_id = 'r-dead' AND step = 3").await;
        assert!(rt.resume_workflow("r-dead").await.expect("resume"));
        let h = rt.retrieve_workflow::<u32, Error>("r-dead").await.expect("retrieve");
        assert_eq!(within("r-dead resumed", h.get_result()).await.expect("r-dead"), 3);
        assert_eq!(effects_of(&x, "r-dead").await, vec![1, 3]);
        rt.shutdown().await;
    }
}

both_backends! {
    async fn fork_replays_the_steps_before_its_start_and_runs_the_rest(db: TestDb) {
        let s = db.sys();
        let k = key(&db, "fork");
        probe::open(&format!("{k}/2"));
        let rt = launch(&db, "ops-fork").await;
        let x = db.inspect().await;
        effects_table(&x).await;
        let h = rt.start_workflow(three_effects(k.clone()).with_id("f-0")).await.expect("start");
        assert_eq!(within("original", h.get_result()).await.expect("original"), 3);

        for (start, new_id, reran) in [(1, "f-1", vec![1, 3]), (3, "f-3", vec![3]), (4, "f-4", vec![])] {
            let id = rt
                .fork_workflow("f-0", start, ForkOptions::new().workflow_id(new_id))
                .await
                .unwrap_or_else(|e| panic!("fork from {start}: {e}"));
            assert_eq!(id, new_id);
            let h = rt.retrieve_workflow::<u32, Error>(new_id).await.expect("retrieve");
            assert_eq!(within(new_id, h.get_result()).await.expect("fork"), 3);
            assert_eq!(effects_of(&x, new_id).await, reran, "fork from step {start}");
            let steps = rt.get_workflow_steps(new_id).await.expect("steps");
            assert_eq!(steps.len(), 3, "{new_id}: {steps:?}");
        }
        assert_eq!(probe::count(&format!("{k}/2/started")), 2, "step 2 ran for the original and the fork from 1");
        let forks = rt.list_workflows(&WorkflowFilter::new().forked_from("f-0")).await.expect("list");
        assert_eq!(forks.iter().map(|w| w.workflow_id.as_str()).collect::<Vec<_>>(), ["f-1", "f-3", "f-4"]);
        let marked = x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE workflow_uuid = 'f-0' AND was_forked_from")).await;
        assert_eq!(marked, 1);

        let past = rt.fork_workflow("f-0", 5, ForkOptions::new()).await;
        assert!(matches!(past, Err(Error::InvalidArgument(ref m)) if m.contains("1 to 4")), "{past:?}");
        assert!(matches!(rt.fork_workflow("f-0", 0, ForkOptions::new()).await, Err(Error::InvalidArgument(_))));
        assert!(matches!(rt.fork_workflow("nope", 1, ForkOptions::new()).await, Err(Error::NonExistentWorkflow(_))));
        let taken = rt.fork_workflow("f-0", 1, ForkOptions::new().workflow_id("f-1")).await;
        assert!(matches!(taken, Err(Error::InvalidArgument(_))), "{taken:?}");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_timeout_cancels_a_workflow_blocked_in_recv_with_its_child(db: TestDb) {
        let s = db.sys();
        let rt = launch(&db, "ops-timeout").await;
        let x = db.inspect().await;
        effects_table(&x).await;
        let started = Instant::now();
        let h = rt
            .start_workflow(child_then_recv().with_id("t-1").with_timeout(Duration::from_secs(1)))
            .await
            .expect("start");
        let result = within("timed out", h.get_result()).await;
        let took = started.elapsed();
        assert!(matches!(result, Err(Error::WorkflowTimedOut(ref id)) if id == "t-1"), "{result:?}");
        println!("{:?}: a 1 s timeout cancelled the workflow after {took:?}", db.backend);
        assert!(took >= Duration::from_secs(1) && took < Duration::from_millis(2500), "took {took:?}");
        assert_eq!(status(&rt, "t-1").await, "CANCELLED");
        eventually(Duration::from_secs(5), "the child is cancelled too", || async { status(&rt, "t-1-1").await == "CANCELLED" }).await;
        let rows = x
            .rows(&format!(
                "SELECT workflow_uuid, workflow_timeout_ms, workflow_deadline_epoch_ms FROM {s}workflow_status \
                 WHERE workflow_uuid IN ('t-1', 't-1-1') ORDER BY workflow_uuid"
            ))
            .await;
        assert_eq!(rows[0][1].as_deref(), Some("1000"), "{rows:?}");
        assert!(rows[0][2].is_some(), "the deadline is recorded: {rows:?}");
        assert_eq!(rows[1][1], None, "the child has no timeout of its own: {rows:?}");
        assert_eq!(rows[1][2], rows[0][2], "the child inherits the parent's deadline: {rows:?}");
        assert!(matches!(
            rt.start_workflow(plain(1).with_timeout(Duration::ZERO)).await,
            Err(Error::InvalidArgument(_))
        ));
        rt.shutdown().await;
    }
}

both_backends! {
    async fn list_filters_agree_with_the_rows_and_garbage_collection_keeps_active_ones(db: TestDb) {
        let s = db.sys();
        let rt = launch(&db, "ops-list").await;
        let x = db.inspect().await;
        effects_table(&x).await;
        for i in 0..12u32 {
            let h = rt.start_workflow(plain(i).with_id(format!("l-{i:02}"))).await.expect("start");
            within("plain", h.get_result()).await.expect("plain");
        }
        rt.start_workflow(waits_in_recv().with_id("l-wait")).await.expect("start");
        let h = rt.start_workflow(waits_in_sleep().with_id("l-cancel")).await.expect("start");
        rt.cancel_workflow("l-cancel").await.expect("cancel");
        assert!(h.get_result().await.is_err());

        let ids = |v: Vec<dbos_runtime::WorkflowInfo>| v.into_iter().map(|w| w.workflow_id).collect::<Vec<_>>();
        let all = ids(rt.list_workflows(&WorkflowFilter::new()).await.expect("all"));
        let truth: Vec<String> = x
            .rows(&format!("SELECT workflow_uuid FROM {s}workflow_status ORDER BY created_at, workflow_uuid"))
            .await
            .into_iter()
            .map(|r| r[0].clone().expect("id"))
            .collect();
        assert_eq!(all, truth);
        let newest = ids(rt.list_workflows(&WorkflowFilter::new().newest_first().limit(3).offset(1)).await.expect("page"));
        let mut reversed = truth.clone();
        reversed.reverse();
        assert_eq!(newest, reversed[1..4].to_vec());
        let success = rt.list_workflows(&WorkflowFilter::new().status("SUCCESS").with_payloads()).await.expect("success");
        assert_eq!(success.len(), 12);
        assert_eq!(success[3].output.as_deref(), Some("3"));
        assert_eq!(success[3].inputs.as_deref(), Some(r#"{"namedArgs":{},"positionalArgs":[3]}"#));
        let lean = rt.list_workflows(&WorkflowFilter::new().status("SUCCESS").limit(1)).await.expect("lean");
        assert_eq!((lean[0].inputs.clone(), lean[0].output.clone()), (None, None));
        let prefixed = ids(rt.list_workflows(&WorkflowFilter::new().id_prefix("l-1")).await.expect("prefix"));
        assert_eq!(prefixed, ["l-10", "l-11"]);
        assert!(rt.list_workflows(&WorkflowFilter::new().id_prefix("L-1")).await.expect("case").is_empty(), "prefixes are case-sensitive");
        let mut active = ids(rt.list_workflows(&WorkflowFilter::new().status("PENDING").status("CANCELLED")).await.expect("two statuses"));
        active.sort();
        assert_eq!(active, ["l-cancel", "l-wait"]);
        let by_name = rt.list_workflows(&WorkflowFilter::new().name(plain(0).name())).await.expect("by name");
        assert_eq!(by_name.len(), 12);
        let bad = rt.list_workflows(&WorkflowFilter::new().status("RUNNING")).await;
        assert!(matches!(bad, Err(Error::InvalidArgument(ref m)) if m.contains("RUNNING")), "{bad:?}");

        // Keep the newest 5: the older finished ones go, with their steps; the waiting one stays.
        let deleted = rt.garbage_collect(None, Some(5)).await.expect("gc");
        let left = ids(rt.list_workflows(&WorkflowFilter::new()).await.expect("after gc"));
        assert_eq!(deleted as usize, truth.len() - left.len());
        assert!(left.contains(&"l-wait".to_owned()), "{left:?}");
        // (Workflows created in the same millisecond as the 5th newest stay with it.)
        assert!(left.len() >= 5 && left.len() < truth.len(), "{left:?}");
        let orphans = x
            .scalar(&format!("SELECT COUNT(*) FROM {s}operation_outputs o WHERE NOT EXISTS (SELECT 1 FROM {s}workflow_status w WHERE w.workflow_uuid = o.workflow_uuid)"))
            .await;
        assert_eq!(orphans, 0, "steps go with their workflows");
        assert_eq!(rt.garbage_collect(None, None).await.expect("gc nothing"), 0);
        rt.shutdown().await;
    }
}

/// Sleeps a little (the foreign cancel lands meanwhile), then writes effect 1.
#[workflow]
async fn nap_then_effect() -> Result<(), Error> {
    DBOS::sleep(Duration::from_millis(700)).await?;
    effect(1).await
}

#[workflow]
async fn held_step_then_effect(key: String) -> Result<(), Error> {
    mark(key.clone(), 1, true).await?;
    effect(2).await
}

both_backends! {
    async fn a_cancel_written_by_another_tool_stops_the_next_checkpoint_and_rolls_back_its_transaction(db: TestDb) {
        // DBOS's own CLI cancels with a bare UPDATE and tells nobody: the running process
        // learns it from the next checkpoint write, which fails, and nothing is recorded.
        let rt = launch(&db, "ops-foreign").await;
        let x = db.inspect().await;
        effects_table(&x).await;
        let s = db.sys();
        let k = key(&db, "foreign");
        let cancel = |id: &str| format!(
            "UPDATE {s}workflow_status SET status = 'CANCELLED', queue_name = NULL WHERE workflow_uuid = '{id}'"
        );

        // (On SQLite a transaction holds the write lock while its body runs, so the cancel
        // lands before it begins: here, while the workflow sleeps.)
        let tx_run = rt.start_workflow(nap_then_effect().with_id("x-tx")).await.expect("start");
        let napping = format!("SELECT COUNT(*) FROM {s}operation_outputs WHERE workflow_uuid = 'x-tx'");
        eventually(Duration::from_secs(20), "the workflow sleeps", || async { x.scalar(&napping).await == 1 }).await;
        x.exec(&cancel("x-tx")).await;
        let result = within("x-tx", tx_run.get_result()).await;
        assert!(matches!(result, Err(Error::WorkflowCancelled(ref id)) if id == "x-tx"), "{result:?}");
        assert_eq!(effects_of(&x, "x-tx").await, Vec::<i64>::new(), "the transaction rolled back with its checkpoint");
        let steps = rt.get_workflow_steps("x-tx").await.expect("steps");
        assert_eq!(steps.iter().map(|s| s.function_name.as_str()).collect::<Vec<_>>(), ["DBOS.sleep"]);

        let step_run = rt.start_workflow(held_step_then_effect(k.clone()).with_id("x-step")).await.expect("start");
        eventually(Duration::from_secs(20), "the step body runs", || async { probe::count(&format!("{k}/1/started")) == 1 }).await;
        x.exec(&cancel("x-step")).await;
        probe::open(&format!("{k}/1"));
        let result = within("x-step", step_run.get_result()).await;
        assert!(matches!(result, Err(Error::WorkflowCancelled(ref id)) if id == "x-step"), "{result:?}");
        assert_eq!(effects_of(&x, "x-step").await, Vec::<i64>::new(), "the next transaction never ran");
        assert!(rt.get_workflow_steps("x-step").await.expect("steps").is_empty(), "the step's result is not recorded");
        for id in ["x-tx", "x-step"] {
            assert_eq!(status(&rt, id).await, "CANCELLED");
        }
        rt.shutdown().await;
    }
}

both_backends! {
    /// A cancel made by another process (here a connected client) reaches the process running
    /// the workflow: on Postgres by notification, on SQLite when the file's change watcher
    /// (1 Hz while something waits) sees the write. Its wait ends at once either way.
    async fn a_cancel_from_another_process_ends_a_wait(db: TestDb) {
        let rt = launch(&db, "ops-remote").await;
        let client = within("connect", Runtime::connect(db.config("ops-remote"))).await.expect("connect");
        let x = db.inspect().await;
        let h = rt.start_workflow(waits_in_recv().with_id("remote-1")).await.expect("start");
        let waiting = format!("SELECT COUNT(*) FROM {}operation_outputs WHERE workflow_uuid = 'remote-1'", db.sys());
        eventually(Duration::from_secs(20), "it waits", || async { x.scalar(&waiting).await == 1 }).await;
        let started = Instant::now();
        assert!(client.cancel_workflow("remote-1").await.expect("cancel"));
        let result = within("the cancelled wait", h.get_result()).await;
        let took = started.elapsed();
        assert!(matches!(result, Err(Error::WorkflowCancelled(_))), "{result:?}");
        println!("{:?}: a cancel from another process ended the wait after {took:?}", db.backend);
        let bound = match db.backend {
            dbos_tests::Backend::Postgres => Duration::from_secs(2),
            dbos_tests::Backend::Sqlite => Duration::from_secs(4),
        };
        assert!(took < bound, "took {took:?}");
        client.shutdown().await;
        rt.shutdown().await;
    }
}

/// The listings operators use are served by the system tables' indexes, not a sequential scan,
/// on 100,000 workflows (the plans are each backend's for these rows and statistics).
mod listings_on_100_000_workflows_use_indexes {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let db = TestDb::fresh(dbos_tests::Backend::Postgres, "manage_listing_plans").await;
        let rt = launch(&db, "ops-plans").await;
        let x = db.inspect().await;
        x.exec(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, queue_name, executor_id, \
             application_version, created_at, updated_at, inputs, output, serialization) \
             SELECT 'wf-' || i, \
               CASE WHEN i % 100 = 0 THEN 'ERROR' WHEN i % 97 = 0 THEN 'PENDING' \
                    WHEN i % 89 = 0 THEN 'ENQUEUED' WHEN i % 83 = 0 THEN 'CANCELLED' ELSE 'SUCCESS' END, \
               'app::workflow_' || (i % 10), CASE WHEN i % 89 = 0 THEN 'emails' END, 'exec-' || (i % 4), \
               '1.0', 1700000000000 + i * 1000, 1700000000000 + i * 1000, '{}', '1', 'portable_json' \
             FROM generate_series(1, 100000) AS i; ANALYZE dbos.workflow_status",
        )
        .await;
        let hour = (Some(1_700_050_000_000), Some(1_700_053_600_000));
        let cases: Vec<(&str, WorkflowFilter, bool)> = vec![
            (
                "the newest 10 (the CLI's default)",
                WorkflowFilter::new().newest_first().limit(10),
                false,
            ),
            (
                "failed ones",
                WorkflowFilter::new()
                    .status("ERROR")
                    .newest_first()
                    .limit(100),
                false,
            ),
            (
                "pending ones",
                WorkflowFilter::new().status("PENDING"),
                false,
            ),
            (
                "one name, newest 20",
                WorkflowFilter::new()
                    .name("app::workflow_3")
                    .newest_first()
                    .limit(20),
                false,
            ),
            (
                "an hour",
                WorkflowFilter::new().created_between(hour.0, hour.1),
                false,
            ),
            (
                "an hour of one status",
                WorkflowFilter::new()
                    .status("SUCCESS")
                    .created_between(hour.0, hour.1),
                false,
            ),
            (
                "a page deep in the list",
                WorkflowFilter::new().newest_first().limit(50).offset(5_000),
                false,
            ),
            ("one ID", WorkflowFilter::new().workflow_id("wf-777"), false),
            ("the queues", WorkflowFilter::new(), true),
            ("one queue", WorkflowFilter::new().queue("emails"), true),
        ];
        for (what, filter, queued) in cases {
            let plan = rt
                .explain_list_workflows(&filter, queued)
                .await
                .expect("explain");
            assert!(
                !plan.contains("Seq Scan"),
                "{what}: a sequential scan on 100,000 rows:\n{plan}"
            );
            println!(
                "{what}: {}",
                plan.lines()
                    .map(str::trim)
                    .filter(|l| l.contains("Scan"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            );
        }
        rt.shutdown().await;
    }

    /// SQLite uses a partial index only when the query repeats the index's WHERE term, and a
    /// prefix only as a key range: each listing names the index it must use.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let db = TestDb::fresh(dbos_tests::Backend::Sqlite, "manage_listing_plans").await;
        let rt = launch(&db, "ops-plans").await;
        let x = db.inspect().await;
        x.exec(
            "INSERT INTO workflow_status (workflow_uuid, status, name, queue_name, executor_id, \
             application_version, created_at, updated_at, inputs, output, serialization) \
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 100000) \
             SELECT 'wf-' || i, \
               CASE WHEN i % 100 = 0 THEN 'ERROR' WHEN i % 97 = 0 THEN 'PENDING' \
                    WHEN i % 89 = 0 THEN 'ENQUEUED' WHEN i % 83 = 0 THEN 'CANCELLED' ELSE 'SUCCESS' END, \
               'app::workflow_' || (i % 10), CASE WHEN i % 89 = 0 THEN 'emails' END, 'exec-' || (i % 4), \
               '1.0', 1700000000000 + i * 1000, 1700000000000 + i * 1000, '{}', '1', 'portable_json' \
             FROM s; ANALYZE",
        )
        .await;
        let cases: Vec<(&str, WorkflowFilter, &str)> = vec![
            (
                "failed ones",
                WorkflowFilter::new()
                    .status("ERROR")
                    .newest_first()
                    .limit(100),
                "idx_workflow_status_failed",
            ),
            (
                "pending ones",
                WorkflowFilter::new().status("PENDING"),
                "idx_workflow_status_pending",
            ),
            (
                "an ID prefix",
                WorkflowFilter::new().id_prefix("wf-777"),
                "workflow_uuid>? AND workflow_uuid<?",
            ),
        ];
        for (what, filter, index) in cases {
            let plan = rt
                .explain_list_workflows(&filter, false)
                .await
                .expect("explain");
            assert!(plan.contains(index), "{what}: not by {index}:\n{plan}");
        }
        let prefixed = rt
            .list_workflows(&WorkflowFilter::new().id_prefix("wf-777"))
            .await
            .expect("list by prefix");
        let mut ids: Vec<String> = prefixed.into_iter().map(|w| w.workflow_id).collect();
        ids.sort();
        let mut want: Vec<String> = ["wf-777".to_owned()]
            .into_iter()
            .chain((0..10).map(|d| format!("wf-777{d}")))
            .chain((0..100).map(|d| format!("wf-777{d:02}")))
            .collect();
        want.sort();
        assert_eq!(ids, want, "the prefix listing is exact");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn sigkill_during_forks_and_cancels_leaves_each_whole_or_absent(db: TestDb) {
        let worker = |mode: &str| {
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker_manage"));
            cmd.env("DB_URL", &db.url)
                .env("MODE", mode)
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true);
            cmd
        };
        let seeded = within("seed", worker("seed").output()).await.expect("seed");
        assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
        let mut next = 0u64;
        for kill in 0..10 {
            let mut child = worker("churn").env("START", next.to_string()).spawn().expect("spawn");
            tokio::time::sleep(Duration::from_millis(fastrand::u64(60..300))).await;
            child.start_kill().expect("SIGKILL");
            let out = within("the killed worker", child.wait_with_output()).await.expect("wait");
            let done = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("done")).count();
            println!("{:?}: kill {kill} after {done} forks", db.backend);
            // The fork being made at the kill may have committed or not: the next one starts after it.
            next += done as u64 + 1;
        }
        let x = db.inspect().await;
        let s = db.sys();
        let forks = x.rows(&format!(
            "SELECT w.workflow_uuid, w.status, \
               (SELECT COUNT(*) FROM {s}operation_outputs o WHERE o.workflow_uuid = w.workflow_uuid), \
               (SELECT COUNT(*) FROM {s}workflow_events_history h WHERE h.workflow_uuid = w.workflow_uuid), \
               (SELECT COUNT(*) FROM {s}workflow_events e WHERE e.workflow_uuid = w.workflow_uuid) \
             FROM {s}workflow_status w WHERE w.forked_from = 'orig' ORDER BY w.workflow_uuid"
        )).await;
        assert!(forks.len() >= 10, "the workers made forks: {}", forks.len());
        for f in &forks {
            let counts: Vec<&str> = f[2..].iter().map(|c| c.as_deref().unwrap_or("")).collect();
            assert_eq!(counts, ["3", "1", "1"], "a fork is whole: {f:?}");
            assert!(matches!(f[1].as_deref(), Some("ENQUEUED" | "CANCELLED")), "{f:?}");
        }
        println!("{:?}: {} forks after 10 SIGKILLs, each whole", db.backend, forks.len());
    }
}

both_backends! {
    /// Another process cancels and at once resumes a workflow waiting here: the execution that
    /// was cancelled stops (even if this process had not heard of the cancel yet) and the
    /// resumed one runs alone, to one outcome.
    async fn cancel_then_resume_from_another_process_at_once_runs_the_workflow_once(db: TestDb) {
        let rt = launch(&db, "ops-flip").await;
        let client = within("connect", Runtime::connect(db.config("ops-flip"))).await.expect("connect");
        let x = db.inspect().await;
        for round in 0..3 {
            let id = format!("flip-{round}");
            rt.start_workflow(waits_in_recv().with_id(&id)).await.expect("start");
            let waiting = format!("SELECT COUNT(*) FROM {}operation_outputs WHERE workflow_uuid = '{id}'", db.sys());
            eventually(Duration::from_secs(20), "it waits", || async { x.scalar(&waiting).await == 1 }).await;
            assert!(client.cancel_workflow(&id).await.expect("cancel"));
            assert!(client.resume_workflow(&id).await.expect("resume"));
            client.send(&id, &format!("hello {round}"), "go").await.expect("send");
            let h = rt.retrieve_workflow::<Option<String>, Error>(&id).await.expect("retrieve");
            let got = match tokio::time::timeout(Duration::from_secs(20), h.get_result()).await {
                Ok(got) => got,
                Err(_) => {
                    let rows = x.rows(&format!("SELECT status, recovery_attempts, executor_id, queue_name FROM {}workflow_status WHERE workflow_uuid = '{id}'", db.sys())).await;
                    let steps = x.rows(&format!("SELECT function_id, function_name, output FROM {}operation_outputs WHERE workflow_uuid = '{id}'", db.sys())).await;
                    let msgs = x.rows(&format!("SELECT consumed FROM {}notifications WHERE destination_uuid = '{id}'", db.sys())).await;
                    panic!("round {round}: no outcome in 20 s; row {rows:?}, steps {steps:?}, messages {msgs:?}, running here {}", rt.running_workflows());
                }
            };
            assert_eq!(got.expect("one outcome, not a conflict"), Some(format!("hello {round}")));
            assert_eq!(status(&rt, &id).await, "SUCCESS");
            let recvs = x.scalar(&format!("SELECT COUNT(*) FROM {}operation_outputs WHERE workflow_uuid = '{id}' AND function_name = 'DBOS.recv'", db.sys())).await;
            assert_eq!(recvs, 1);
        }
        client.shutdown().await;
        rt.shutdown().await;
    }
}
