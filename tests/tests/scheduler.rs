//! `#[scheduled]`: once per tick on whole seconds, across processes, SIGKILLs and restarts;
//! missed ticks skipped by default and caught up, bounded, on request.
//!
//! The scheduled functions live in worker binaries (`worker_schedule_ticks`,
//! `worker_schedule_crash`): every schedule linked into a binary starts in every runtime it
//! launches, so this binary has none.

use dbos_runtime::tick_workflow_id;
use dbos_tests::{both_backends, Inspect, TestDb};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tokio::process::Command;

const TICKS_FN: &str = "worker_schedule_ticks::every_second";
const CRASH_FN: &str = "worker_schedule_crash::slow_tick";
/// As in `worker_schedule_ticks`.
const TICK_RUNS_DDL: &str = "CREATE TABLE IF NOT EXISTS tick_runs (workflow_id TEXT NOT NULL, \
    scheduled_ms BIGINT NOT NULL, actual_ms BIGINT NOT NULL, started_ms BIGINT NOT NULL, pid BIGINT NOT NULL)";

fn ticks_worker(db: &TestDb, run_secs: u32) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker_schedule_ticks"));
    cmd.env("DB_URL", &db.url)
        .env("RUN_SECS", run_secs.to_string())
        .env("RUST_LOG", "warn")
        .env_remove("CATCH_UP")
        .env_remove("DBOS__VMID")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null());
    cmd
}

async fn run_to_end(mut cmd: Command, what: &str) {
    let status = cmd
        .status()
        .await
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    assert!(status.success(), "{what} failed: {status}");
}

/// Runs a ticks worker to its end; returns when it launched and stopped (epoch ms), as it
/// printed them.
async fn run_for_span(mut cmd: Command, what: &str) -> (i64, i64) {
    cmd.stdout(std::process::Stdio::piped());
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("launched "))
        .unwrap_or_else(|| panic!("{what} printed no span: {text}"));
    let mut words = line.split_whitespace();
    let launched = words.next().and_then(|w| w.parse().ok());
    let stopped = words.nth(1).and_then(|w| w.parse().ok());
    match (launched, stopped) {
        (Some(l), Some(s)) => (l, s),
        _ => panic!("{what} printed a malformed span: {line}"),
    }
}

fn ms_to_time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).expect("a valid timestamp")
}

/// One row of `tick_runs`: one execution of a tick's body.
#[derive(Debug)]
struct Run {
    id: String,
    scheduled: i64,
    actual: i64,
    started: i64,
    pid: i64,
}

async fn runs(x: &Inspect) -> Vec<Run> {
    let num = |v: &Option<String>| {
        v.as_deref()
            .unwrap_or("0")
            .parse::<i64>()
            .expect("an integer column")
    };
    x.rows("SELECT workflow_id, scheduled_ms, actual_ms, started_ms, pid FROM tick_runs ORDER BY scheduled_ms")
        .await
        .iter()
        .map(|r| Run {
            id: r[0].clone().unwrap_or_default(),
            scheduled: num(&r[1]),
            actual: num(&r[2]),
            started: num(&r[3]),
            pid: num(&r[4]),
        })
        .collect()
}

/// `workflow_uuid -> status` of every tick of `function`.
async fn tick_rows(db: &TestDb, x: &Inspect, function: &str) -> BTreeMap<String, String> {
    let sql = format!(
        "SELECT workflow_uuid, status FROM {}workflow_status WHERE workflow_uuid LIKE 'sched-{function}-%'",
        db.sys()
    );
    x.rows(&sql)
        .await
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap_or_default(),
                r[1].clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn lateness_report(runs: &[Run]) -> String {
    let mut fired: Vec<i64> = runs.iter().map(|r| r.actual - r.scheduled).collect();
    let mut started: Vec<i64> = runs.iter().map(|r| r.started - r.scheduled).collect();
    fired.sort_unstable();
    started.sort_unstable();
    format!(
        "{} ticks; actual - scheduled p50 {} ms, p99 {} ms; body start - scheduled p50 {} ms, p99 {} ms",
        runs.len(),
        percentile(&fired, 0.5),
        percentile(&fired, 0.99),
        percentile(&started, 0.5),
        percentile(&started, 0.99)
    )
}

/// Every recorded tick ran and finished `SUCCESS`, except ticks the last shutdown left
/// `ENQUEUED` before any dispatcher claimed them: those are the next launch's work (a shutdown
/// starts nothing new), so they may only come after the last tick that ran.
fn assert_recorded_ticks_ran(rows: &BTreeMap<String, String>, runs: &[Run]) {
    let ran: HashSet<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let last_run = runs.iter().map(|r| r.scheduled).max().unwrap_or(i64::MIN);
    for (id, status) in rows {
        if ran.contains(id.as_str()) {
            assert_eq!(status, "SUCCESS", "{id} ran but did not finish");
        } else {
            assert_eq!(status, "ENQUEUED", "{id} never ran but is {status}");
            let tick = tick_of(id);
            assert!(
                tick > last_run,
                "{id} was left queued before the last tick that ran ({last_run})"
            );
        }
    }
    assert!(
        ran.iter().all(|id| rows.contains_key(*id)),
        "every run belongs to a recorded tick"
    );
}

/// The tick time (epoch ms) in a tick's workflow ID.
fn tick_of(id: &str) -> i64 {
    let stamp = &id[id.len() - "2026-01-01T00:00:00+00:00".len()..];
    chrono::DateTime::parse_from_rfc3339(stamp)
        .unwrap_or_else(|e| panic!("{id} does not end in a tick time: {e}"))
        .timestamp_millis()
}

/// The newest tick recorded in the system database (run or not).
async fn last_recorded_tick(db: &TestDb, x: &Inspect) -> i64 {
    tick_rows(db, x, TICKS_FN)
        .await
        .keys()
        .map(|id| tick_of(id))
        .max()
        .expect("a tick was recorded")
}

/// Every tick ran exactly once, on a whole second, under its deterministic ID, finished
/// `SUCCESS`, and the ticks are consecutive seconds.
fn check_once_per_tick(rows: &BTreeMap<String, String>, runs: &[Run]) {
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for r in runs {
        *per_id.entry(r.id.as_str()).or_default() += 1;
        assert_eq!(
            r.scheduled % 1000,
            0,
            "{} was scheduled off the second: {}",
            r.id,
            r.scheduled
        );
        assert_eq!(
            r.id,
            tick_workflow_id(TICKS_FN, ms_to_time(r.scheduled)),
            "the ID names the tick"
        );
        assert!(
            r.actual >= r.scheduled,
            "{} fired before its time ({} < {})",
            r.id,
            r.actual,
            r.scheduled
        );
    }
    let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "ticks whose body ran more than once: {twice:?}"
    );
    assert_recorded_ticks_ran(rows, runs);
    for pair in runs.windows(2) {
        assert_eq!(
            pair[1].scheduled - pair[0].scheduled,
            1000,
            "ticks {} and {} are not a second apart",
            pair[0].id,
            pair[1].id
        );
    }
}

both_backends! {
    async fn an_every_second_schedule_ticks_ten_times_in_ten_seconds(db: TestDb) {
        run_to_end(ticks_worker(&db, 10), "the tick worker").await;
        let x = db.inspect().await;
        let rows = tick_rows(&db, &x, TICKS_FN).await;
        let runs = runs(&x).await;
        assert!((9..=11).contains(&rows.len()), "10 ± 1 ticks in 10 s, got {}: {rows:?}", rows.len());
        check_once_per_tick(&rows, &runs);
        println!("{:?}, one process: {}", db.backend, lateness_report(&runs));
    }
}

both_backends! {
    async fn two_processes_on_one_database_run_each_tick_once(db: TestDb) {
        // The schemas first, so that the two processes start together. This binary has no
        // schedule, so its runtime only migrates.
        let rt = dbos_runtime::Runtime::launch(db.config("worker-schedule-ticks")).await.expect("launch to migrate");
        rt.shutdown().await;
        let x = db.inspect().await;
        x.exec(TICK_RUNS_DDL).await;
        let mut a = ticks_worker(&db, 10);
        a.env("DBOS__VMID", "executor-a");
        let mut b = ticks_worker(&db, 10);
        b.env("DBOS__VMID", "executor-b");
        let (a, b) = tokio::join!(run_for_span(a, "worker a"), run_for_span(b, "worker b"));
        let rows = tick_rows(&db, &x, TICKS_FN).await;
        let runs = runs(&x).await;
        // The ticks due while either process ran: the two may launch a second apart on a
        // loaded machine, so count from the first launch to the last stop.
        let (launched, stopped) = (a.0.min(b.0), a.1.max(b.1));
        let due = (launched / 1000 + 1..=stopped / 1000).count();
        assert!(
            (due.saturating_sub(1)..=due).contains(&rows.len()) && (9..=12).contains(&rows.len()),
            "{due} ticks due between {launched} and {stopped}, got {}: {rows:?}",
            rows.len()
        );
        check_once_per_tick(&rows, &runs);
        let pids: HashSet<i64> = runs.iter().map(|r| r.pid).collect();
        let executors = x
            .rows(&format!(
                "SELECT DISTINCT executor_id FROM {}workflow_status WHERE workflow_uuid LIKE 'sched-%'",
                db.sys()
            ))
            .await;
        println!(
            "{:?}, two processes: {} ({} process(es) ran ticks, executors {executors:?})",
            db.backend,
            lateness_report(&runs),
            pids.len()
        );
    }
}

both_backends! {
    async fn sigkill_inside_a_scheduled_transaction_applies_each_tick_once(db: TestDb) {
        const KILLS: usize = 4;
        let dir = std::env::temp_dir().join(format!("dbos-worker-schedule-crash-{}-{:?}", std::process::id(), db.backend));
        std::fs::create_dir_all(&dir).expect("create the attempts directory");
        let attempts = dir.join("attempts");
        let _ = std::fs::remove_file(&attempts);
        let worker = |run_secs: u32| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker_schedule_crash"));
            cmd.env("DB_URL", &db.url)
                .env("ATTEMPTS", &attempts)
                .env("TX_SLEEP_MS", "500")
                .env("RUN_SECS", run_secs.to_string())
                .env("RUST_LOG", "warn")
                .kill_on_drop(true)
                .stdout(std::process::Stdio::null());
            cmd
        };
        let read_attempts = || -> Vec<(i64, i64)> {
            std::fs::read_to_string(&attempts)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace().map(|v| v.parse::<i64>());
                    Some((f.next()?.ok()?, f.next()?.ok()?))
                })
                .collect()
        };
        // (pid, tick) of each kill: the tick whose transaction was open when the process died.
        let mut kills = Vec::new();
        while kills.len() < KILLS {
            let mut child = worker(3600).spawn().expect("spawn the worker");
            let pid = i64::from(child.id().expect("worker pid"));
            let tick = loop {
                // A tick not killed before: a live one, not the re-run of the last kill.
                let fresh = read_attempts().into_iter().find(|(t, p)| *p == pid && kills.iter().all(|(_, k)| k != t));
                if let Some((tick, _)) = fresh {
                    break tick;
                }
                assert!(child.try_wait().expect("poll the worker").is_none(), "the worker exited early");
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            // Inside the transaction's 500 ms sleep, its write not committed.
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..150))).await;
            child.start_kill().expect("SIGKILL the worker");
            let _ = child.wait().await;
            kills.push((pid, tick));
            // Restart at once: the next iteration (or the final run) recovers the tick.
        }
        run_to_end(worker(4), "the final worker").await;

        let x = db.inspect().await;
        let effects: HashMap<i64, i64> = x
            .rows("SELECT tick_ms, n FROM tick_effects")
            .await
            .iter()
            .map(|r| {
                let num = |v: &Option<String>| v.as_deref().unwrap_or("0").parse::<i64>().expect("an integer");
                (num(&r[0]), num(&r[1]))
            })
            .collect();
        let twice: Vec<_> = effects.iter().filter(|(_, n)| **n != 1).collect();
        assert!(twice.is_empty(), "ticks whose effect was applied more than once: {twice:?}");
        let rows = tick_rows(&db, &x, CRASH_FN).await;
        for tick in effects.keys() {
            let id = tick_workflow_id(CRASH_FN, ms_to_time(*tick));
            assert!(rows.contains_key(&id), "effect of tick {tick} without its workflow {id}");
        }
        let all_attempts = read_attempts();
        let mut reruns = 0;
        for (pid, tick) in &kills {
            let id = tick_workflow_id(CRASH_FN, ms_to_time(*tick));
            assert_eq!(rows.get(&id).map(String::as_str), Some("SUCCESS"), "killed tick {id} was recovered");
            assert_eq!(effects.get(tick), Some(&1), "killed tick {id} applied once");
            let later = all_attempts.iter().filter(|(t, p)| t == tick && p != pid).count();
            assert!(later > 0, "tick {id}: the kill in {pid} landed after its commit, not inside the transaction");
            reruns += later;
        }
        // Ticks left unfinished by the final shutdown are the only non-SUCCESS ones.
        let unfinished: Vec<_> = rows.iter().filter(|(_, s)| s.as_str() != "SUCCESS").collect();
        assert!(unfinished.len() <= 1, "unfinished ticks: {unfinished:?}");
        println!(
            "{:?}: {KILLS} SIGKILLs inside a scheduled transaction; {} ticks, each applied once; killed transactions re-ran {reruns} times in later processes",
            db.backend,
            effects.len()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

both_backends! {
    async fn missed_ticks_are_skipped_unless_catch_up_is_set_and_then_bounded(db: TestDb) {
        let x_ticks = |runs: &[Run]| runs.iter().map(|r| r.scheduled).collect::<Vec<i64>>();
        let now_ms = || chrono::Utc::now().timestamp_millis();
        // A: a few ticks. Then down for 3 s.
        run_to_end(ticks_worker(&db, 2), "run A").await;
        let x = db.inspect().await;
        // The last tick A recorded: one it left queued at shutdown is B's to run, not a replay.
        let last_a = last_recorded_tick(&db, &x).await;
        tokio::time::sleep(Duration::from_secs(3)).await;

        // B, default: the ticks missed while down are not replayed.
        let b_spawned = now_ms();
        run_to_end(ticks_worker(&db, 2), "run B").await;
        let ticks = x_ticks(&runs(&x).await);
        let replayed: Vec<_> = ticks.iter().filter(|t| **t > last_a && **t <= b_spawned).collect();
        assert!(replayed.is_empty(), "missed ticks replayed without catch-up: {replayed:?}");
        let last_b = last_recorded_tick(&db, &x).await;
        tokio::time::sleep(Duration::from_secs(3)).await;

        // C, catch-up of at most 2: the two ticks after the last recorded one, no more.
        let c_spawned = now_ms();
        assert!(c_spawned - last_b >= 3_000, "at least three ticks were missed");
        let mut c = ticks_worker(&db, 2);
        c.env("CATCH_UP", "2");
        run_to_end(c, "run C").await;
        let all = runs(&x).await;
        let caught: Vec<i64> = x_ticks(&all).into_iter().filter(|t| *t > last_b && *t <= c_spawned).collect();
        assert_eq!(caught, vec![last_b + 1000, last_b + 2000], "catch-up of 2 after {last_b}");
        for r in all.iter().filter(|r| caught.contains(&r.scheduled)) {
            assert!(r.actual - r.scheduled >= 1000, "a caught-up tick carries its launch time as actual time: {r:?}");
        }
        let last_c = last_recorded_tick(&db, &x).await;
        tokio::time::sleep(Duration::from_secs(2)).await;

        // D, catch-up of up to 1000: every missed tick, so no hole from C's last tick on.
        assert!(now_ms() - last_c >= 2_000, "at least two ticks were missed");
        let mut d = ticks_worker(&db, 2);
        d.env("CATCH_UP", "1000");
        run_to_end(d, "run D").await;
        let all = runs(&x).await;
        let after_c: Vec<i64> = x_ticks(&all).into_iter().filter(|t| *t >= last_c).collect();
        for pair in after_c.windows(2) {
            assert_eq!(pair[1] - pair[0], 1000, "a hole after catching up everything: {after_c:?}");
        }
        let rows = tick_rows(&db, &x, TICKS_FN).await;
        let per_id: HashSet<&str> = all.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(per_id.len(), all.len(), "each tick's body ran once");
        assert_recorded_ticks_ran(&rows, &all);
        println!(
            "{:?}: {} ticks over four runs; without catch-up the gap stayed empty, catch-up 2 added 2, catch-up 1000 filled {} ms",
            db.backend,
            all.len(),
            after_c.last().unwrap_or(&last_c) - last_c
        );
    }
}

both_backends! {
    async fn shutdown_during_a_tick_leaves_it_recorded_or_not_and_nothing_after(db: TestDb) {
        // Shut down 0-8 ms after a tick, while its start is in flight.
        let mut cut = 0;
        for end_ms in [0, 1, 2, 3, 5, 8] {
            let mut cmd = ticks_worker(&db, 1);
            cmd.env("END_MS", end_ms.to_string()).env("LINGER_MS", "1500").stdout(std::process::Stdio::piped());
            let out = cmd.output().await.expect("run the worker");
            assert!(out.status.success(), "the worker failed: {}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let line = text.lines().find(|l| l.starts_with("after shutdown:")).expect("the worker's counts");
            let n: Vec<i64> = line
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .map(|w| w.parse().expect("a count"))
                .collect();
            assert_eq!((n[0], n[2]), (n[1], n[3]), "something changed after shutdown returned: {line}");
            cut = n[4];
        }
        // What the last cut run recorded but did not finish, the next launch finishes.
        run_to_end(ticks_worker(&db, 2), "the final worker").await;
        let x = db.inspect().await;
        let rows = tick_rows(&db, &x, TICKS_FN).await;
        assert_recorded_ticks_ran(&rows, &runs(&x).await);
        println!("{:?}: 6 shutdowns 0-8 ms after a tick; nothing changed after shutdown returned; {cut} tick(s) left unfinished by the last one, finished by the next launch", db.backend);
    }
}
