//! Durable concurrency inside a workflow (issue 16, part 2): `DBOS::join_all` numbers each
//! branch's operations on its own, so positions do not depend on which branch finishes first,
//! and a workflow resumed halfway replays the finished branches; `DBOS::select` records its
//! winner, so a resumed workflow takes the same branch, and a `recv` that loses never takes its
//! message. On SQLite and Postgres, in one process and across SIGKILLs.

use dbos_runtime::prelude::*;
use dbos_runtime::{ForkOptions, Runtime};
use dbos_tests::probe;
use dbos_tests::{both_backends, eventually, within, TestDb};
use std::collections::{BTreeMap, BTreeSet};
use tokio::process::Command;

const T: Duration = Duration::from_secs(30);

async fn launch(db: &TestDb) -> Runtime {
    let cfg = db
        .config("branch-tests")
        .with_version("branch-tests-1")
        .with_executor_id("branch-local");
    within("launch", Runtime::launch(cfg))
        .await
        .expect("launch the runtime")
}

/// `(function_id, function_name, output)` of every operation of workflow `id`.
async fn operations(db: &TestDb, id: &str) -> Vec<(i64, String, String)> {
    let x = db.inspect().await;
    let sql = format!(
        "SELECT function_id, function_name, COALESCE(output, '') FROM {}operation_outputs \
         WHERE workflow_uuid = '{id}' ORDER BY function_id",
        db.sys()
    );
    x.rows(&sql)
        .await
        .into_iter()
        .map(|r| {
            let id = r[0]
                .as_deref()
                .unwrap_or("0")
                .parse()
                .expect("a function id");
            (
                id,
                r[1].clone().unwrap_or_default(),
                r[2].clone().unwrap_or_default(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// join

#[step]
async fn slow(key: String, i: u32, delay_ms: u64) -> Result<u32, Error> {
    probe::bump(&format!("{key}-{i}"));
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    Ok(i)
}

/// Six branches finishing in the order `delays` gives; branches 0 and 3 then join two more
/// steps of their own; one step after the join.
#[workflow]
async fn fan_out(key: String, delays: Vec<u64>) -> Result<Vec<u32>, Error> {
    let branches = delays.iter().enumerate().map(|(i, &d)| {
        let key = key.clone();
        async move {
            let i = i as u32;
            let mut got = vec![slow(key.clone(), i, d).await?];
            if i.is_multiple_of(3) {
                let (a, b) =
                    DBOS::join(slow(key.clone(), 100 + i, d), slow(key.clone(), 200 + i, 0))
                        .await?;
                got.push(a?);
                got.push(b?);
            }
            Ok::<_, Error>(got)
        }
    });
    let mut all = Vec::new();
    for got in DBOS::join_all(branches).await? {
        all.extend(got?);
    }
    all.push(slow(key, 999, 0).await?);
    Ok(all)
}

both_backends! {
    async fn join_positions_do_not_depend_on_which_branch_finishes_first(db: TestDb) {
        let rt = launch(&db).await;
        let key = format!("{:?}-fan", db.backend);
        let up: Vec<u64> = (0..6).map(|i| i * 40).collect();
        let down: Vec<u64> = (0..6).rev().map(|i| i * 40).collect();
        let a = rt.scope(DBOS::start_workflow(fan_out(format!("{key}-a"), up).with_id("fan-a")));
        let a = within("fan-a", rt.scope(a.await.expect("start fan-a").get_result())).await.expect("fan-a");
        let b = rt.scope(DBOS::start_workflow(fan_out(format!("{key}-b"), down).with_id("fan-b")));
        let b = within("fan-b", rt.scope(b.await.expect("start fan-b").get_result())).await.expect("fan-b");
        let expected = vec![0, 100, 200, 1, 2, 3, 103, 203, 4, 5, 999];
        assert_eq!(a, expected);
        assert_eq!(b, expected);

        // The branches finished in opposite orders, yet every operation sits where the
        // numbering puts it: branch i's first step at i + 1, the nested joins' steps at 7 + i
        // and 13 + i, and the step after the join at 19 (three indices of six branches).
        let ops_a = operations(&db, "fan-a").await;
        let ops_b = operations(&db, "fan-b").await;
        assert_eq!(ops_a, ops_b, "the two runs numbered their operations differently");
        let at: BTreeMap<i64, String> = ops_a.iter().map(|(n, _, out)| (*n, out.clone())).collect();
        let mut want = BTreeMap::new();
        for i in 0..6i64 {
            want.insert(i + 1, i.to_string());
        }
        for i in [0i64, 3] {
            want.insert(7 + i, (100 + i).to_string());
            want.insert(13 + i, (200 + i).to_string());
        }
        want.insert(19, "999".to_owned());
        assert_eq!(at, want);

        // A fork from the last step replays all eighteen positions and runs only that step.
        let fork = rt
            .scope(DBOS::fork_workflow("fan-a", 19, ForkOptions::new().workflow_id("fan-a-fork")))
            .await
            .expect("fork fan-a");
        let h = rt.scope(DBOS::retrieve_workflow::<Vec<u32>, Error>(&fork)).await.expect("retrieve the fork");
        assert_eq!(within("the fork", rt.scope(h.get_result())).await.expect("the fork"), expected);
        for i in [0u32, 1, 2, 3, 4, 5, 100, 103, 200, 203] {
            assert_eq!(probe::count(&format!("{key}-a-{i}")), 1, "step {i} ran again in the fork");
        }
        assert_eq!(probe::count(&format!("{key}-a-999")), 2);
        rt.shutdown().await;
    }
}

#[test]
fn join_and_select_outside_a_workflow_are_plain() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let all = DBOS::join_all((0..4u64).map(|i| async move {
            tokio::time::sleep(Duration::from_millis(40 - i * 10)).await;
            i
        }))
        .await
        .expect("a plain join");
        assert_eq!(all, vec![0, 1, 2, 3]);
        let won = DBOS::select(tokio::time::sleep(Duration::from_secs(5)), async { 7 })
            .await
            .expect("a plain select");
        assert!(matches!(won, Either::Right(7)));
        let none: Vec<std::future::Ready<u8>> = Vec::new();
        assert!(matches!(
            DBOS::select_all(none).await,
            Err(Error::BadInputs(_))
        ));
    });
}

// ---------------------------------------------------------------------------------------------
// select

/// The sleep is branch 0 on purpose: replayed without its record, the select would find the
/// sleep's recorded deadline long past and take it.
#[workflow]
async fn sleep_or_pay(sleep_ms: u64) -> Result<String, Error> {
    let outcome = match DBOS::select(
        DBOS::sleep(Duration::from_millis(sleep_ms)),
        DBOS::recv::<u64>("pay", Duration::from_secs(60)),
    )
    .await?
    {
        Either::Left(slept) => {
            slept?;
            "timeout".to_owned()
        }
        Either::Right(paid) => format!("paid-{:?}", paid?),
    };
    DBOS::set_event("outcome", &outcome).await?;
    Ok(outcome)
}

/// A select that times out, then waits for "go" and reads `pay` again without waiting.
#[workflow]
async fn timeout_then_read() -> Result<(String, Option<u64>), Error> {
    let outcome = match DBOS::select(
        DBOS::recv::<u64>("pay", Duration::from_secs(60)),
        DBOS::sleep(Duration::from_millis(200)),
    )
    .await?
    {
        Either::Left(paid) => format!("paid-{:?}", paid?),
        Either::Right(slept) => {
            slept?;
            "timeout".to_owned()
        }
    };
    DBOS::recv::<u8>("go", Duration::from_secs(20)).await?;
    let later = DBOS::recv::<u64>("pay", Duration::ZERO).await?;
    Ok((outcome, later))
}

/// Waits for "start", then selects between two topics whose messages both wait already.
#[workflow]
async fn either_topic() -> Result<(String, Option<u8>, Option<u8>), Error> {
    DBOS::recv::<u8>("start", Duration::from_secs(20)).await?;
    let won = match DBOS::select(
        DBOS::recv::<u8>("a", Duration::from_secs(20)),
        DBOS::recv::<u8>("b", Duration::from_secs(20)),
    )
    .await?
    {
        Either::Left(a) => format!("a{:?}", a?),
        Either::Right(b) => format!("b{:?}", b?),
    };
    let a = DBOS::recv::<u8>("a", Duration::ZERO).await?;
    let b = DBOS::recv::<u8>("b", Duration::ZERO).await?;
    Ok((won, a, b))
}

#[step]
async fn sleepy(ms: u64) -> Result<u64, Error> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(ms)
}

#[workflow]
async fn steps_race() -> Result<(usize, u64), Error> {
    let (i, out) = DBOS::select_all([sleepy(8000), sleepy(20), sleepy(5000)]).await?;
    Ok((i, out?))
}

#[workflow]
async fn two_ops_in_a_branch() -> Result<u64, Error> {
    let (_, out) = DBOS::select_all([
        Box::pin(async { Ok::<u64, Error>(sleepy(10).await? + sleepy(10).await?) })
            as std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, Error>> + Send>>,
        Box::pin(async { sleepy(1000).await }),
    ])
    .await?;
    out
}

/// An operation beside a running join, as `tokio::join!` would start it: its position would
/// collide with the join's.
#[workflow]
async fn beside_a_join() -> Result<u64, Error> {
    let (joined, beside) = tokio::join!(DBOS::join(sleepy(50), sleepy(60)), sleepy(10));
    let (a, b) = joined?;
    Ok(a? + b? + beside?)
}

/// Two groups side by side would number their branches alike.
#[workflow]
async fn two_joins_side_by_side() -> Result<u64, Error> {
    let (x, y) = tokio::join!(
        DBOS::join(sleepy(30), sleepy(40)),
        DBOS::join(sleepy(10), sleepy(20))
    );
    let ((a, b), (c, d)) = (x?, y?);
    Ok(a? + b? + c? + d?)
}

/// A join is many operations: not a select branch.
#[workflow]
async fn a_join_as_a_select_branch() -> Result<(), Error> {
    match DBOS::select(
        DBOS::join(sleepy(10), sleepy(10)),
        DBOS::sleep(Duration::from_secs(5)),
    )
    .await?
    {
        Either::Left(joined) => joined.map(|_| ()),
        Either::Right(slept) => slept,
    }
}

/// Two branches waiting on one topic: which message goes where would depend on timing.
#[workflow]
async fn two_recvs_one_topic() -> Result<Vec<Option<u8>>, Error> {
    DBOS::join_all((0..2).map(|_| DBOS::recv::<u8>("same", Duration::from_secs(5))))
        .await?
        .into_iter()
        .collect()
}

#[workflow]
async fn empty_select() -> Result<(), Error> {
    let none: Vec<std::future::Ready<()>> = Vec::new();
    DBOS::select_all(none).await.map(|_| ())
}

both_backends! {
    async fn a_resumed_select_takes_the_recorded_branch(db: TestDb) {
        let rt = launch(&db).await;
        let h = rt
            .scope(DBOS::start_workflow(sleep_or_pay(3000).with_id("pay-1")))
            .await
            .expect("start pay-1");
        // The payment comes once the recv waits (its deadline recorded at 5).
        let x = db.inspect().await;
        let waiting = format!(
            "SELECT COUNT(*) FROM {}operation_outputs WHERE workflow_uuid = 'pay-1' AND function_id = 5",
            db.sys()
        );
        eventually(T, "the recv waits", || async { x.scalar(&waiting).await == 1 }).await;
        rt.scope(DBOS::send("pay-1", &7u64, "pay")).await.expect("send the payment");
        assert_eq!(within("pay-1", rt.scope(h.get_result())).await.expect("pay-1"), "paid-Some(7)");
        // select at 1; sleep (branch 0) at 2; recv (branch 1) at 3 and its deadline at 5
        // (its second index: 1 + 1·2 + 1 + 1);
        // the event after the select at 6.
        let ops = operations(&db, "pay-1").await;
        let names: Vec<(i64, &str)> = ops.iter().map(|(n, name, _)| (*n, name.as_str())).collect();
        assert_eq!(
            names,
            vec![(1, "DBOS.select"), (2, "DBOS.sleep"), (3, "DBOS.recv"), (5, "DBOS.sleep"), (6, "DBOS.setEvent")]
        );
        let select: serde_json::Value = serde_json::from_str(&ops[0].2).expect("the select's record is JSON");
        assert_eq!(select, serde_json::json!({"branch": 1, "span": 2}));

        // Long after the sleep's deadline, a fork from the event replays the select: it must
        // take the payment again, not the sleep that is now over.
        tokio::time::sleep(Duration::from_millis(3100)).await;
        let fork = rt
            .scope(DBOS::fork_workflow("pay-1", 6, ForkOptions::new().workflow_id("pay-1-fork")))
            .await
            .expect("fork pay-1");
        let f = rt.scope(DBOS::retrieve_workflow::<String, Error>(&fork)).await.expect("retrieve the fork");
        assert_eq!(within("the fork", rt.scope(f.get_result())).await.expect("the fork"), "paid-Some(7)");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_message_that_comes_after_the_timeout_won_stays_unread(db: TestDb) {
        let rt = launch(&db).await;
        let h = rt
            .scope(DBOS::start_workflow(timeout_then_read().with_id("late")))
            .await
            .expect("start late");
        let x = db.inspect().await;
        let decided = format!(
            "SELECT COUNT(*) FROM {}operation_outputs WHERE workflow_uuid = 'late' AND function_name = 'DBOS.select'",
            db.sys()
        );
        eventually(T, "the select is decided", || async { x.scalar(&decided).await == 1 }).await;
        rt.scope(DBOS::send("late", &5u64, "pay")).await.expect("send the late payment");
        rt.scope(DBOS::send("late", &1u8, "go")).await.expect("send go");
        let got = within("late", rt.scope(h.get_result())).await.expect("late");
        assert_eq!(got, ("timeout".to_owned(), Some(5)));
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_recv_that_loses_a_select_leaves_its_message(db: TestDb) {
        let rt = launch(&db).await;
        for round in 0..5 {
            let id = format!("topics-{round}");
            let h = rt.scope(DBOS::start_workflow(either_topic().with_id(&id))).await.expect("start");
            rt.scope(DBOS::send(&id, &1u8, "a")).await.expect("send a");
            rt.scope(DBOS::send(&id, &2u8, "b")).await.expect("send b");
            rt.scope(DBOS::send(&id, &0u8, "start")).await.expect("send start");
            // Both branches find a message at once; only the winner may take its own.
            let got = within("the two topics", rt.scope(h.get_result())).await.expect("either_topic");
            match got.0.as_str() {
                "aSome(1)" => assert_eq!((got.1, got.2), (None, Some(2)), "{id}"),
                "bSome(2)" => assert_eq!((got.1, got.2), (Some(1), None), "{id}"),
                other => panic!("{id}: unexpected winner {other}"),
            }
        }
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_select_between_steps_takes_the_fastest_and_drops_the_rest(db: TestDb) {
        let rt = launch(&db).await;
        let started = std::time::Instant::now();
        let h = rt.scope(DBOS::start_workflow(steps_race().with_id("steps"))).await.expect("start");
        assert_eq!(within("steps", rt.scope(h.get_result())).await.expect("steps"), (1, 20));
        assert!(started.elapsed() < Duration::from_millis(4500), "waited for a losing step");
        let ops = operations(&db, "steps").await;
        let names: Vec<(i64, &str)> = ops.iter().map(|(n, name, _)| (*n, name.as_str())).collect();
        assert_eq!(names, vec![(1, "DBOS.select"), (3, "concurrency::sleepy")], "only the winner is recorded");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_select_refuses_branches_it_cannot_make_durable(db: TestDb) {
        let rt = launch(&db).await;
        let h = rt.scope(DBOS::start_workflow(two_ops_in_a_branch().with_id("two"))).await.expect("start");
        match within("two", rt.scope(h.get_result())).await {
            Err(Error::BadInputs(why)) => assert!(why.contains("second durable operation"), "{why}"),
            other => panic!("a branch of two steps was accepted: {other:?}"),
        }
        let h = rt.scope(DBOS::start_workflow(beside_a_join().with_id("beside"))).await.expect("start");
        match within("beside", rt.scope(h.get_result())).await {
            Err(Error::BadInputs(why)) => assert!(why.contains("beside a running DBOS::join"), "{why}"),
            other => panic!("an operation beside a join was accepted: {other:?}"),
        }
        for (id, want) in [
            ("side", "beside a running DBOS::join"),
            ("join-branch", "opened a DBOS::join"),
            ("same-topic", "two recvs on topic"),
        ] {
            let got = match id {
                "side" => {
                    let h = rt.scope(DBOS::start_workflow(two_joins_side_by_side().with_id(id))).await.expect("start");
                    within(id, rt.scope(h.get_result())).await.map(|_| ())
                }
                "join-branch" => {
                    let h = rt.scope(DBOS::start_workflow(a_join_as_a_select_branch().with_id(id))).await.expect("start");
                    within(id, rt.scope(h.get_result())).await
                }
                _ => {
                    let h = rt.scope(DBOS::start_workflow(two_recvs_one_topic().with_id(id))).await.expect("start");
                    within(id, rt.scope(h.get_result())).await.map(|_| ())
                }
            };
            match got {
                Err(Error::BadInputs(why)) => assert!(why.contains(want), "{id}: {why}"),
                other => panic!("{id} was accepted: {other:?}"),
            }
        }
        let h = rt.scope(DBOS::start_workflow(empty_select().with_id("empty"))).await.expect("start");
        match within("empty", rt.scope(h.get_result())).await {
            Err(Error::BadInputs(why)) => assert!(why.contains("at least one branch"), "{why}"),
            other => panic!("an empty select was accepted: {other:?}"),
        }
        rt.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Across SIGKILLs

fn worker(db: &TestDb, mode: &str, dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker_branches"));
    cmd.env("DB_URL", &db.url)
        .env("MODE", mode)
        .env("RUN_LOG", dir.join("run.log"))
        .env("GATE", dir.join("gate"))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

fn scratch(db: &TestDb, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dbos-branches-{name}-{:?}-{}",
        db.backend,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("make a scratch directory");
    dir
}

fn log_lines(dir: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("run.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect()
}

both_backends! {
    async fn a_join_killed_halfway_runs_each_finished_step_once(db: TestDb) {
        let dir = scratch(&db, "join");
        // This runtime only makes the system tables (another executor and version: it never
        // runs the worker's workflow).
        let rt = launch(&db).await;
        let mut first = worker(&db, "join", &dir).env("WF_ID", "fan").stdout(std::process::Stdio::null()).spawn().expect("spawn the worker");
        // Half the branches finish (branches 0-4, and the second steps of 0, 2 and 4); the
        // first steps of branches 5-9 have started and wait for the gate.
        eventually(T, "half the branches are recorded", || async {
            let recorded = operations(&db, "fan").await.len();
            let started = log_lines(&dir).iter().filter(|l| l[0] == "work" && l[1] == "0").count();
            recorded == 8 && started == 10
        })
        .await;
        first.start_kill().expect("SIGKILL the worker");
        let _ = first.wait().await;
        std::fs::write(dir.join("gate"), b"open").expect("open the gate");
        let out = worker(&db, "join", &dir).env("WF_ID", "fan").output().await.expect("run the worker again");
        assert!(out.status.success(), "the second worker failed: {}", String::from_utf8_lossy(&out.stderr));
        let got: Vec<u32> = serde_json::from_slice(&out.stdout).expect("the worker prints the outputs");
        assert_eq!(got, vec![1, 10, 201, 30, 401, 50, 601, 70, 801, 90, 992]);

        // Every step the first process recorded ran once; the five it was running ran again.
        let mut runs: BTreeMap<(String, String), usize> = BTreeMap::new();
        for l in log_lines(&dir) {
            *runs.entry((l[1].clone(), l[2].clone())).or_default() += 1;
        }
        for i in 0..10u32 {
            let want = if i < 5 { 1 } else { 2 };
            assert_eq!(runs[&("0".to_owned(), i.to_string())], want, "layer-0 step {i}");
            if i % 2 == 0 {
                assert_eq!(runs[&("1".to_owned(), (i * 10).to_string())], 1, "layer-1 step of branch {i}");
            }
        }
        assert_eq!(runs[&("2".to_owned(), "99".to_owned())], 1);
        // Positions: branch i's steps at i + 1 and 11 + i, the last step at 21.
        let ops = operations(&db, "fan").await;
        let at: BTreeSet<i64> = ops.iter().map(|(n, _, _)| *n).collect();
        let want: BTreeSet<i64> = (1..=10).chain([11, 13, 15, 17, 19, 21]).collect();
        assert_eq!(at, want);
        rt.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

const RACES: u64 = 24;

both_backends! {
    async fn select_decisions_survive_sigkills(db: TestDb) {
        let dir = scratch(&db, "select");
        let sender = launch(&db).await;
        let spawn = || worker(&db, "select", &dir)
            .env("RACES", RACES.to_string())
            .env("SLEEP_MS", "1200")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn the worker");
        let mut child = spawn();
        let x = db.inspect().await;
        let created = format!("SELECT COUNT(*) FROM {}workflow_status WHERE workflow_uuid LIKE 'race-%'", db.sys());
        eventually(T, "the races exist", || async { x.scalar(&created).await == RACES as i64 }).await;
        // Payments arrive spread over twice the timeout, some close to it, while the worker is
        // killed at random moments and started again at once.
        let sending = {
            let sender = sender.clone();
            tokio::spawn(async move {
                sender
                    .scope(async {
                        for k in 0..RACES {
                            tokio::time::sleep(Duration::from_millis(fastrand::u64(60..140))).await;
                            DBOS::send_with_key(&format!("race-{k}"), &k, "pay", &format!("pay-{k}")).await?;
                        }
                        Ok::<(), Error>(())
                    })
                    .await
            })
        };
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(200..900))).await;
            child.start_kill().expect("SIGKILL the worker");
            let _ = child.wait().await;
            child = spawn();
        }
        within("the sender", sending).await.expect("the sender task").expect("send every payment");
        let status = within("the last worker", child.wait()).await.expect("wait for the worker");
        assert!(status.success(), "the last worker failed: {status}");

        let s = db.sys();
        let mut decided: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for l in log_lines(&dir) {
            if l[0] == "decided" {
                decided.entry(l[1].clone()).or_default().insert(l[2].clone());
            }
        }
        let (mut paid, mut timed_out) = (0, 0);
        for k in 0..RACES {
            let id = format!("race-{k}");
            let outs = &decided[&id];
            assert_eq!(outs.len(), 1, "{id} took different branches in different executions: {outs:?}");
            let outcome = outs.iter().next().cloned().unwrap_or_default();
            let result = x.rows(&format!("SELECT output FROM {s}workflow_status WHERE workflow_uuid = '{id}'")).await;
            assert_eq!(result[0][0].as_deref(), Some(format!("\"{outcome}\"").as_str()), "{id}'s result");
            let ops = operations(&db, &id).await;
            let select: serde_json::Value = serde_json::from_str(&ops[0].2).expect("the select's record");
            let unread = x.scalar(&format!("SELECT COUNT(*) FROM {s}notifications WHERE destination_uuid = '{id}' AND NOT consumed")).await;
            if outcome == format!("paid-{k}") {
                paid += 1;
                assert_eq!(select["branch"], 0, "{id}");
                assert_eq!(unread, 0, "{id} was paid but its message is unread");
            } else {
                timed_out += 1;
                assert_eq!(outcome, "timeout");
                assert_eq!(select["branch"], 1, "{id}");
                assert_eq!(unread, 1, "{id} timed out but its payment was taken");
            }
        }
        println!("{:?}: {paid} paid, {timed_out} timed out", db.backend);
        assert!(paid > 0 && timed_out > 0, "both branches should have won somewhere: {paid} paid, {timed_out} timed out");
        sender.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

both_backends! {
    async fn a_select_killed_right_after_deciding_replays_its_decision(db: TestDb) {
        let dir = scratch(&db, "decided");
        let sender = launch(&db).await;
        let x = db.inspect().await;
        let s = db.sys();
        let spawn = || worker(&db, "select", &dir)
            .env("RACES", "4")
            .env("SLEEP_MS", "1500")
            .env("DIE_AFTER_DECIDING", &dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn the worker");
        let mut child = spawn();
        let created = format!("SELECT COUNT(*) FROM {s}workflow_status WHERE workflow_uuid LIKE 'race-%'");
        eventually(T, "the races exist", || async { x.scalar(&created).await == 4 }).await;
        // Races 0 and 1 are paid at once; 2 and 3 get their payment only once their select
        // has decided (for the timeout), while the worker lies dead.
        for k in 0..2u64 {
            sender.scope(DBOS::send_with_key(&format!("race-{k}"), &k, "pay", &format!("pay-{k}"))).await.expect("pay");
        }
        let mut runs = 1;
        loop {
            let status = within("a worker run", child.wait()).await.expect("wait for the worker");
            if status.success() {
                break;
            }
            for k in 2..4u64 {
                let id = format!("race-{k}");
                let decided = x.scalar(&format!(
                    "SELECT COUNT(*) FROM {s}operation_outputs WHERE workflow_uuid = '{id}' AND function_name = 'DBOS.select'"
                )).await;
                if decided == 1 {
                    sender.scope(DBOS::send_with_key(&id, &k, "pay", &format!("pay-{k}"))).await.expect("pay late");
                }
            }
            runs += 1;
            assert!(runs <= 10, "the worker died more often than once per race");
            child = spawn();
        }
        let mut decided: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in log_lines(&dir) {
            if l[0] == "decided" {
                decided.entry(l[1].clone()).or_default().push(l[2].clone());
            }
        }
        for k in 0..4u64 {
            let id = format!("race-{k}");
            let want = if k < 2 { format!("paid-{k}") } else { "timeout".to_owned() };
            let seen = &decided[&id];
            assert!(seen.len() >= 2, "{id} was not replayed after its kill: {seen:?}");
            assert!(seen.iter().all(|o| *o == want), "{id} decided {seen:?}, want {want}");
            let unread = x.scalar(&format!("SELECT COUNT(*) FROM {s}notifications WHERE destination_uuid = '{id}' AND NOT consumed")).await;
            assert_eq!(unread, if k < 2 { 0 } else { 1 }, "{id}'s payment");
        }
        sender.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
