//! Patching (issue 14, part 4): a workflow's code changes while executions of the old code are
//! in flight. `DBOS::patch` sends new executions (and those that had not reached the patch) down
//! the new path and those that recorded the old code's operation down the old one, across a
//! restart onto the new code; `DBOS::deprecate_patch` retires it. On SQLite and Postgres.
//!
//! The "code version" is a switch the test flips between runtimes: one registered workflow
//! runs the body of version 1, 2 or 3.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{both_backends, eventually, within, TestDb};
use std::collections::HashMap;
use std::sync::Mutex;

const T: Duration = Duration::from_secs(20);

/// The code version each test (keyed by its database URL) runs.
fn versions() -> &'static Mutex<HashMap<String, u8>> {
    static V: std::sync::OnceLock<Mutex<HashMap<String, u8>>> = std::sync::OnceLock::new();
    V.get_or_init(Default::default)
}

fn set_version(key: &str, v: u8) {
    versions()
        .lock()
        .expect("versions")
        .insert(key.to_owned(), v);
}

fn version(key: &str) -> u8 {
    versions()
        .lock()
        .expect("versions")
        .get(key)
        .copied()
        .unwrap_or(1)
}

#[step]
async fn step_a() -> Result<String, Error> {
    Ok("a".into())
}

#[step]
async fn step_b() -> Result<String, Error> {
    Ok("b".into())
}

#[step]
async fn step_c() -> Result<String, Error> {
    Ok("c".into())
}

/// v1: a, b, wait for "go". v2: a, then c where patched (b otherwise), wait. v3: a, the patch
/// deprecated, c, wait.
#[workflow]
async fn charge(key: String, wait: bool) -> Result<String, Error> {
    let mut path = step_a().await?;
    match version(&key) {
        1 => path += &step_b().await?,
        2 => {
            if DBOS::patch("use-c").await? {
                path += &step_c().await?;
            } else {
                path += &step_b().await?;
            }
        }
        _ => {
            DBOS::deprecate_patch("use-c").await?;
            path += &step_c().await?;
        }
    }
    if wait {
        DBOS::recv::<u8>("go", Duration::from_secs(60)).await?;
    }
    Ok(path)
}

#[workflow]
async fn patch_unpatched() -> Result<bool, Error> {
    DBOS::patch("x").await
}

async fn launch(db: &TestDb) -> Runtime {
    let cfg = db
        .config("patching")
        .with_executor_id("patch-local")
        .with_patching();
    within("launch", Runtime::launch(cfg))
        .await
        .expect("launch")
}

async fn names(db: &TestDb, id: &str) -> Vec<(i64, String)> {
    let x = db.inspect().await;
    x.rows(&format!(
        "SELECT function_id, function_name FROM {}operation_outputs WHERE workflow_uuid = '{id}' ORDER BY function_id",
        db.sys()
    ))
    .await
    .into_iter()
    .map(|r| (r[0].as_deref().unwrap_or("0").parse().expect("an id"), r[1].clone().unwrap_or_default()))
    .collect()
}

fn named(list: &[(i64, &str)]) -> Vec<(i64, String)> {
    list.iter().map(|(n, s)| (*n, (*s).to_owned())).collect()
}

/// Waits until workflow `id` has `n` operations recorded.
async fn recorded(db: &TestDb, id: &str, n: usize) {
    eventually(T, &format!("{id} records {n} operations"), || async {
        names(db, id).await.len() >= n
    })
    .await;
}

both_backends! {
    async fn in_flight_workflows_keep_their_path_across_a_restart_onto_patched_code(db: TestDb) {
        let key = db.url.clone();
        set_version(&key, 1);
        let rt = launch(&db).await;
        // Old code: `old` records a and b and waits for "go" when the process goes.
        rt.start_workflow(charge(key.clone(), true).with_id("old")).await.expect("start old");
        recorded(&db, "old", 3).await; // a, b, and the recv's deadline
        assert_eq!(names(&db, "old").await[..2], named(&[(1, "patching::step_a"), (2, "patching::step_b")])[..]);
        rt.shutdown().await;

        // The new code ships under the same version; recovery resumes `old` on it.
        set_version(&key, 2);
        let rt = launch(&db).await;
        rt.start_workflow(charge(key.clone(), false).with_id("new")).await.expect("start new");
        let new = rt.retrieve_workflow::<String, Error>("new").await.expect("retrieve new");
        assert_eq!(within("new", new.get_result()).await.expect("new"), "ac");
        assert_eq!(
            names(&db, "new").await,
            named(&[(1, "patching::step_a"), (2, "DBOS.patch-use-c"), (3, "patching::step_c")])
        );
        rt.send("old", &1u8, "go").await.expect("go");
        let old = rt.retrieve_workflow::<String, Error>("old").await.expect("retrieve old");
        assert_eq!(within("old", old.get_result()).await.expect("old"), "ab", "the old execution keeps its path");
        assert!(!names(&db, "old").await.iter().any(|(_, n)| n.starts_with("DBOS.patch")), "no marker on the old path");

        // A patched execution in flight (it recorded the marker) when the patch is deprecated.
        rt.start_workflow(charge(key.clone(), true).with_id("patched")).await.expect("start patched");
        recorded(&db, "patched", 4).await; // a, the marker, c, the recv's deadline
        rt.shutdown().await;
        set_version(&key, 3);
        let rt = launch(&db).await;
        rt.send("patched", &1u8, "go").await.expect("go");
        let patched = rt.retrieve_workflow::<String, Error>("patched").await.expect("retrieve");
        assert_eq!(within("patched", patched.get_result()).await.expect("patched"), "ac", "the marker is skipped");
        // A new execution on v3 records no marker: c follows a directly.
        rt.start_workflow(charge(key.clone(), false).with_id("v3")).await.expect("start v3");
        let v3 = rt.retrieve_workflow::<String, Error>("v3").await.expect("retrieve v3");
        assert_eq!(within("v3", v3.get_result()).await.expect("v3"), "ac");
        assert_eq!(names(&db, "v3").await, named(&[(1, "patching::step_a"), (2, "patching::step_c")]));
        rt.shutdown().await;
    }
}

both_backends! {
    async fn an_execution_that_had_not_reached_the_patch_takes_the_new_path(db: TestDb) {
        let key = db.url.clone();
        set_version(&key, 2);
        let rt = launch(&db).await;
        // Recorded rows of an old execution that stopped after a: the patch point is empty.
        rt.start_workflow(charge(key.clone(), false).with_id("fresh")).await.expect("start");
        let h = rt.retrieve_workflow::<String, Error>("fresh").await.expect("retrieve");
        assert_eq!(within("fresh", h.get_result()).await.expect("fresh"), "ac");
        // Fork from the patch point: a's record is copied, the patch point is empty again.
        let fork = rt
            .fork_workflow("fresh", 2, dbos_runtime::ForkOptions::new().workflow_id("fresh-fork"))
            .await
            .expect("fork");
        let f = rt.retrieve_workflow::<String, Error>(&fork).await.expect("retrieve the fork");
        assert_eq!(within("fork", f.get_result()).await.expect("fork"), "ac");
        assert_eq!(
            names(&db, "fresh-fork").await,
            named(&[(1, "patching::step_a"), (2, "DBOS.patch-use-c"), (3, "patching::step_c")])
        );
        rt.shutdown().await;
    }
}

both_backends! {
    async fn patching_must_be_enabled_and_called_from_a_workflow(db: TestDb) {
        let cfg = db.config("patching-off").with_executor_id("patch-off");
        let rt = within("launch", Runtime::launch(cfg)).await.expect("launch");
        let h = rt.start_workflow(patch_unpatched().with_id("off")).await.expect("start");
        match within("off", h.get_result()).await {
            Err(Error::Config(why)) => assert!(why.contains("with_patching"), "{why}"),
            other => panic!("patch ran without patching enabled: {other:?}"),
        }
        match rt.scope(DBOS::patch("x")).await {
            Err(Error::NotInWorkflow(_)) => {}
            other => panic!("patch outside a workflow: {other:?}"),
        }
        rt.shutdown().await;
    }
}
