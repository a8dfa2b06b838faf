//! SIGKILL the worker at random moments, restart it, and check that every workflow finished,
//! every recorded step's effect exists, and steps re-ran only in killed processes.

use dbos_tests::{both_backends, TestDb};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::process::Command;

const WORKFLOWS: usize = 1000;
const KILLS: usize = 20;

fn worker(db: &TestDb) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker_crash"));
    cmd.env("DB_URL", &db.url)
        .env("WORKFLOWS", WORKFLOWS.to_string())
        .env("STEP_MAX_MS", "40")
        .env("CONCURRENCY", "8")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null());
    cmd
}

both_backends! {
    async fn steps_finish_exactly_once_after_sigkill(db: TestDb) {
        let mut killed_pids = HashSet::new();
        let mut kills = 0;
        while kills < KILLS {
            let mut child = worker(&db).spawn().expect("spawn the worker");
            let pid = child.id().expect("worker pid");
            tokio::time::sleep(Duration::from_millis(fastrand::u64(150..600))).await;
            if child.try_wait().expect("poll the worker").is_some() {
                // It finished all work before the kill: the rest of the kills hit idle runs.
                break;
            }
            child.start_kill().expect("SIGKILL the worker");
            let _ = child.wait().await;
            killed_pids.insert(pid as i64);
            kills += 1;
        }
        let status = worker(&db).status().await.expect("run the worker to completion");
        assert!(status.success(), "the final worker run failed: {status}");

        let x = db.inspect().await;
        let s = db.sys();
        let done = x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE workflow_uuid LIKE 'crash-%' AND status = 'SUCCESS'")).await;
        assert_eq!(done as usize, WORKFLOWS, "every workflow is SUCCESS");
        let steps = x.rows(&format!("SELECT workflow_uuid, function_id, function_name FROM {s}operation_outputs WHERE workflow_uuid LIKE 'crash-%'")).await;
        assert_eq!(steps.len(), WORKFLOWS * 5, "each workflow recorded exactly five steps");
        let effects = x.rows("SELECT workflow_id, step, pid FROM side_effects").await;
        let mut runs: HashMap<(String, String), Vec<i64>> = HashMap::new();
        for r in &effects {
            let key = (r[0].clone().unwrap_or_default(), r[1].clone().unwrap_or_default());
            runs.entry(key).or_default().push(r[2].as_deref().unwrap_or("0").parse().unwrap_or(0));
        }
        for r in &steps {
            let key = (r[0].clone().unwrap_or_default(), r[1].clone().unwrap_or_default());
            assert!(runs.contains_key(&key), "recorded step {key:?} has its side effect");
        }
        let mut reruns = 0;
        for (key, pids) in &runs {
            if pids.len() > 1 {
                reruns += pids.len() - 1;
                let distinct: HashSet<_> = pids.iter().collect();
                assert_eq!(distinct.len(), pids.len(), "step {key:?} ran twice in one process: {pids:?}");
                let survivors = pids.iter().filter(|p| !killed_pids.contains(p)).count();
                assert!(survivors <= 1, "step {key:?} re-ran in a process that was not killed: {pids:?}");
            }
        }
        println!(
            "{:?}: {kills} SIGKILLs, {WORKFLOWS} workflows SUCCESS, {} step records, {reruns} step re-runs (each in a process killed before its record was written)",
            db.backend, steps.len()
        );
        assert!(kills >= KILLS, "the worker finished too fast to be killed {KILLS} times ({kills} kills)");
    }
}
