//! Queues across processes on one Postgres database (issue 10): the global and per-process
//! concurrency limits hold at every instant, one deduplication ID from two processes makes
//! one workflow, and workers SIGKILLed while they drain a queue lose and duplicate nothing.
//! On one SQLite file, two processes stay correct: no workflow starts twice.

use dbos_tests::{Backend, Inspect, TestDb};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::process::{Child, Command};

/// A worker process; `executor` "local" lets it pick an ID of its own.
fn worker(db: &TestDb, mode: &str, executor: &str, jobs: usize, pause_ms: u64) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker_queue"));
    cmd.env("DB_URL", &db.url)
        .env("MODE", mode)
        .env("EXECUTOR", executor)
        .env("JOBS", jobs.to_string())
        .env("PAUSE_MS", pause_ms.to_string())
        .env("DBOS_ADMIN_PORT", "off")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

async fn spawn(db: &TestDb, executor: &str, jobs: usize, pause_ms: u64) -> Child {
    worker(db, "work", executor, jobs, pause_ms)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn a worker")
}

/// Enqueues `jobs` jobs from a client process, and creates the workers' tables (before they
/// start, so they do not race to create them).
async fn enqueue(db: &TestDb, jobs: usize) {
    let out = worker(db, "enqueue", "client", jobs, 0)
        .output()
        .await
        .expect("run the enqueuer");
    assert!(
        out.status.success(),
        "enqueue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    db.inspect()
        .await
        .exec(
            "CREATE TABLE IF NOT EXISTS spans (workflow_id TEXT NOT NULL, pid BIGINT NOT NULL, \
             kind TEXT NOT NULL, at_us BIGINT NOT NULL); \
             CREATE TABLE IF NOT EXISTS effects (workflow_id TEXT NOT NULL, k INTEGER NOT NULL, \
             pid BIGINT NOT NULL)",
        )
        .await;
}

/// The most executions running at one instant, in all and per process, from the spans of
/// executions that recorded both their start and their end.
async fn most_at_once(x: &Inspect) -> (usize, usize) {
    let rows = x
        .rows("SELECT workflow_id, pid, kind, at_us FROM spans")
        .await;
    let mut starts: HashMap<(String, String), i64> = HashMap::new();
    let mut ends: HashMap<(String, String), i64> = HashMap::new();
    for r in rows {
        let key = (
            r[0].clone().unwrap_or_default(),
            r[1].clone().unwrap_or_default(),
        );
        let at: i64 = r[3]
            .as_deref()
            .and_then(|v| v.parse().ok())
            .expect("a time");
        match r[2].as_deref() {
            Some("start") => starts.insert(key, at),
            _ => ends.insert(key, at),
        };
    }
    // (time, +1 start / -1 end, pid); ends sort before starts at the same instant.
    let mut events: Vec<(i64, i32, String)> = Vec::new();
    for (key, start) in &starts {
        if let Some(end) = ends.get(key) {
            events.push((*start, 1, key.1.clone()));
            events.push((*end, -1, key.1.clone()));
        }
    }
    events.sort();
    let (mut all, mut most_all) = (0i32, 0i32);
    let mut per: HashMap<String, i32> = HashMap::new();
    let mut most_one = 0i32;
    for (_, d, pid) in events {
        all += d;
        most_all = most_all.max(all);
        let p = per.entry(pid).or_default();
        *p += d;
        most_one = most_one.max(*p);
    }
    (most_all as usize, most_one as usize)
}

async fn check_exactly_once(x: &Inspect, jobs: usize) {
    let sys = match x {
        Inspect::Sqlite(_) => "",
        Inspect::Postgres(_) => "dbos.",
    };
    let done = x
        .scalar(&format!("SELECT COUNT(*) FROM {sys}workflow_status WHERE workflow_uuid LIKE 'job-%' AND status = 'SUCCESS'"))
        .await;
    assert_eq!(done as usize, jobs, "every job is SUCCESS");
    let effects = x.rows("SELECT workflow_id, k FROM effects").await;
    let distinct: HashSet<_> = effects.iter().collect();
    assert_eq!(
        distinct.len(),
        jobs * 3,
        "every transaction's effect exists"
    );
    assert_eq!(effects.len(), jobs * 3, "and exists once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_respect_the_global_and_per_process_limits() {
    let db = TestDb::fresh(Backend::Postgres, "queue_processes_limits_pg").await;
    const JOBS: usize = 60;
    enqueue(&db, JOBS).await;
    let mut workers = Vec::new();
    for w in ["w1", "w2", "w3"] {
        workers.push(spawn(&db, w, JOBS, 30).await);
    }
    for mut w in workers {
        let status = tokio::time::timeout(Duration::from_secs(90), w.wait())
            .await
            .expect("the workers finish")
            .expect("wait for a worker");
        assert!(status.success(), "a worker failed: {status}");
    }
    let x = db.inspect().await;
    check_exactly_once(&x, JOBS).await;
    let (all, one) = most_at_once(&x).await;
    println!("three workers: at most {all} running at once in all, {one} in one process");
    assert!(all <= 5, "{all} ran at once; the queue's concurrency is 5");
    assert!(
        one <= 2,
        "{one} ran at once in one process; its worker concurrency is 2"
    );
    // Per process at most 2: more than 2 at once means the processes ran side by side.
    assert!(
        all >= 3,
        "only {all} ran at once: the processes did not share the work"
    );
    let pids = x.scalar("SELECT COUNT(DISTINCT pid) FROM spans").await;
    assert!(pids >= 2, "{pids} worker(s) took part");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_dedup_id_from_two_processes_makes_one_workflow() {
    let db = TestDb::fresh(Backend::Postgres, "queue_processes_dedup_pg").await;
    // Create the schema first, so the two clients race on enqueues, not on migrations.
    enqueue(&db, 0).await;
    let a = worker(&db, "dedup", "a", 0, 0).env("TAG", "a").output();
    let b = worker(&db, "dedup", "b", 0, 0).env("TAG", "b").output();
    let (a, b) = tokio::join!(a, b);
    let mut enqueued = 0;
    let mut deduplicated = 0;
    for out in [a.expect("client a"), b.expect("client b")] {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let words: Vec<&str> = text.split_whitespace().collect();
        enqueued += words[1].parse::<usize>().expect("a count");
        deduplicated += words[3].parse::<usize>().expect("a count");
    }
    assert_eq!((enqueued, deduplicated), (1, 49));
    let x = db.inspect().await;
    let rows = x
        .scalar("SELECT COUNT(*) FROM dbos.workflow_status WHERE workflow_uuid LIKE 'dedup-%'")
        .await;
    assert_eq!(rows, 1, "one workflow exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sigkilled_while_draining_lose_and_duplicate_nothing() {
    let db = TestDb::fresh(Backend::Postgres, "queue_processes_crash_pg").await;
    const JOBS: usize = 2000;
    const KILLS: usize = 20;
    enqueue(&db, JOBS).await;
    let names = ["w1", "w2", "w3"];
    let mut workers = Vec::new();
    for w in names {
        workers.push(spawn(&db, w, JOBS, 12).await);
    }
    let mut kills = 0;
    while kills < KILLS {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..400))).await;
        let i = fastrand::usize(0..names.len());
        if workers[i].try_wait().expect("poll a worker").is_some() {
            break; // The queue drained before all the kills.
        }
        workers[i].start_kill().expect("SIGKILL a worker");
        let _ = workers[i].wait().await;
        kills += 1;
        // Restarted at once under the same executor ID: it recovers its own work.
        workers[i] = spawn(&db, names[i], JOBS, 12).await;
    }
    for mut w in workers {
        let status = tokio::time::timeout(Duration::from_secs(120), w.wait())
            .await
            .expect("the workers finish")
            .expect("wait for a worker");
        assert!(status.success(), "a worker failed: {status}");
    }
    let x = db.inspect().await;
    check_exactly_once(&x, JOBS).await;
    let (all, one) = most_at_once(&x).await;
    let reruns = x
        .scalar("SELECT COUNT(*) - COUNT(DISTINCT workflow_id) FROM spans WHERE kind = 'start'")
        .await;
    println!("{kills} SIGKILLs: {JOBS} jobs SUCCESS, each effect once; {reruns} executions resumed after a kill; at most {all} running at once ({one} in one process)");
    assert!(
        all <= 5 && one <= 2,
        "limits exceeded: {all} in all, {one} in one process"
    );
    assert!(kills >= KILLS, "the queue drained after only {kills} kills");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_sqlite_file_never_start_a_workflow_twice() {
    let db = TestDb::fresh(Backend::Sqlite, "queue_processes_sqlite").await;
    const JOBS: usize = 150;
    enqueue(&db, JOBS).await;
    let mut workers = Vec::new();
    // Both with the default executor ID: each takes its own slot (`local`, `local-2`), so the
    // second one's launch does not recover the first one's running workflows.
    for _ in 0..2 {
        workers.push(spawn(&db, "local", JOBS, 5).await);
    }
    for mut w in workers {
        let status = tokio::time::timeout(Duration::from_secs(90), w.wait())
            .await
            .expect("the workers finish")
            .expect("wait for a worker");
        assert!(status.success(), "a worker failed: {status}");
    }
    let x = db.inspect().await;
    check_exactly_once(&x, JOBS).await;
    let starts = x
        .scalar("SELECT COUNT(*) FROM spans WHERE kind = 'start'")
        .await;
    assert_eq!(starts as usize, JOBS, "each workflow started once");
    let (all, one) = most_at_once(&x).await;
    let pids = x.scalar("SELECT COUNT(DISTINCT pid) FROM spans").await;
    let executors = x
        .scalar("SELECT COUNT(DISTINCT executor_id) FROM workflow_status WHERE workflow_uuid LIKE 'job-%'")
        .await;
    println!("two processes on one SQLite file: {JOBS} jobs, each started once, by {pids} processes ({executors} executor IDs); at most {all} at once ({one} in one)");
    assert!(
        all <= 5 && one <= 2,
        "limits exceeded: {all} in all, {one} in one process"
    );
}

/// The executions that started a job in `pid` and whose job was then started again in
/// another process.
async fn taken_from(x: &Inspect, pid: u32) -> i64 {
    x.scalar(&format!(
        "SELECT COUNT(DISTINCT a.workflow_id) FROM spans a JOIN spans b ON a.workflow_id = b.workflow_id \
         WHERE a.kind = 'start' AND b.kind = 'start' AND a.pid = {pid} AND b.pid <> {pid} AND b.at_us > a.at_us"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_for_good_has_its_work_finished_by_the_others() {
    let db = TestDb::fresh(Backend::Postgres, "queue_processes_gone_pg").await;
    const JOBS: usize = 200;
    enqueue(&db, JOBS).await;
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(
            worker(&db, "work", "local", JOBS, 40)
                .env("LIVENESS_MS", "3000")
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn a worker"),
        );
    }
    let x = db.inspect().await;
    // Kill one once it has work in hand; it never comes back.
    let victim = workers.remove(0);
    let pid = victim.id().expect("a pid");
    dbos_tests::eventually(
        Duration::from_secs(30),
        "the victim starts a job",
        || async {
            x.scalar(&format!("SELECT COUNT(*) FROM spans WHERE pid = {pid}"))
                .await
                > 0
        },
    )
    .await;
    let mut victim = victim;
    victim.start_kill().expect("SIGKILL");
    let _ = victim.wait().await;
    let killed = std::time::Instant::now();
    for mut w in workers {
        let status = tokio::time::timeout(Duration::from_secs(90), w.wait())
            .await
            .expect("the workers finish")
            .expect("wait for a worker");
        assert!(status.success(), "a worker failed: {status}");
    }
    check_exactly_once(&x, JOBS).await;
    let taken = taken_from(&x, pid).await;
    let orphans = x
        .scalar(&format!(
            "SELECT COUNT(*) FROM spans s WHERE pid = {pid} AND kind = 'start' AND NOT EXISTS \
             (SELECT 1 FROM spans e WHERE e.workflow_id = s.workflow_id AND e.pid = s.pid AND e.kind = 'end')"
        ))
        .await;
    println!("killed worker: {orphans} of its executions were cut off, {taken} of its jobs resumed elsewhere; all {JOBS} done {:?} after the kill", killed.elapsed());
    assert!(
        taken >= orphans,
        "every job cut off by the kill was resumed by another process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_is_taken_over_and_fenced_when_it_comes_back() {
    let db = TestDb::fresh(Backend::Postgres, "queue_processes_paused_pg").await;
    const JOBS: usize = 60;
    enqueue(&db, JOBS).await;
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(
            worker(&db, "work", "local", JOBS, 300)
                .env("LIVENESS_MS", "1500")
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn a worker"),
        );
    }
    let x = db.inspect().await;
    let pid = workers[0].id().expect("a pid");
    dbos_tests::eventually(
        Duration::from_secs(30),
        "the worker starts a job",
        || async {
            x.scalar(&format!(
                "SELECT COUNT(*) FROM spans WHERE pid = {pid} AND kind = 'start'"
            ))
            .await
                > 0
        },
    )
    .await;
    let stop = |sig: i32| {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let done = unsafe { libc::kill(pid as i32, sig) };
        assert_eq!(done, 0, "signal {sig} to {pid}");
    };
    stop(libc::SIGSTOP);
    let stopped_at = std::time::Instant::now();
    // Past its deadline: the others take its workflows over.
    dbos_tests::eventually(
        Duration::from_secs(30),
        "its work is resumed elsewhere",
        || async { taken_from(&x, pid).await > 0 },
    )
    .await;
    let taken_after = stopped_at.elapsed();
    stop(libc::SIGCONT);
    for mut w in workers {
        let status = tokio::time::timeout(Duration::from_secs(90), w.wait())
            .await
            .expect("the workers finish")
            .expect("wait for a worker");
        assert!(status.success(), "a worker failed: {status}");
    }
    check_exactly_once(&x, JOBS).await;
    println!("paused worker: its work was resumed elsewhere {taken_after:?} after SIGSTOP (deadline 1.5 s); after SIGCONT every effect still exists once");
    // Its last renewal was up to a fifth of the deadline before the SIGSTOP.
    assert!(
        taken_after >= Duration::from_millis(1000),
        "taken over before the deadline: {taken_after:?}"
    );
}
