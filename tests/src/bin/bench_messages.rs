//! Wake-up latency of messages and events, and the CPU cost of waiting.
//!
//! ```text
//! bench_messages [ROUNDS [PART]]     every part (or those whose name contains PART: "sqlite",
//!                                    "postgres in-process", "cross-process", "waiters"...),
//!                                    on fresh databases
//! bench_messages pending URL N       N workflows waiting at shutdown: relaunch to serving, all resumed
//! bench_messages waiters URL N SECS [MIX [UNLOAD_MS]]
//!                                    N waiters for SECS: CPU, commits and memory per waiter; MIX
//!                                    is half (recv workflows and get_event callers, the default),
//!                                    recv (workflows parked in recv only) or get_event; with
//!                                    UNLOAD_MS, workflows that waited that long are unloaded
//!                                    (measured once all of them are)
//! bench_messages peer URL ROUNDS     the echo workflow in a process of its own (cross-process runs)
//! ```
//!
//! A round sends a ping to the `echo` workflow and waits for its acknowledgement: the
//! send → recv latency runs from just before `DBOS::send` to just after `DBOS::recv` returns in
//! the workflow (the message taken and recorded), and is split into the send call (its commit)
//! and the rest (wake-up, then the recv transaction). A second ping makes the workflow set an
//! event that the driver already waits for with `get_event`: the set_event → get_event latency
//! runs from just before `DBOS::set_event` to `get_event` returning. Times are wall-clock
//! microseconds, so they compare across processes on one machine.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{Backend, TestDb};
use serde::{Deserialize, Serialize};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const ECHO_ID: &str = "echo";
const WAIT: Duration = Duration::from_secs(60);

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Serialize, Deserialize)]
struct Ping {
    round: u32,
    event: bool,
}

/// Answers `2 * rounds` pings. It reads the clock in its body, which a recovered workflow must
/// not do; this one is never recovered.
#[workflow]
async fn echo(rounds: u32) -> Result<u32, Error> {
    for _ in 0..2 * rounds {
        let Some(ping) = DBOS::recv::<Ping>("ping", WAIT).await? else {
            return Err(Error::BadInputs("no ping within 60 s".into()));
        };
        let now = wall_us();
        let key = if ping.event {
            format!("ev-{}", ping.round)
        } else {
            format!("ack-{}", ping.round)
        };
        DBOS::set_event(&key, &now).await?;
    }
    Ok(rounds)
}

/// Waits for one message on `wake`.
#[workflow]
async fn parked() -> Result<Option<u32>, Error> {
    DBOS::recv::<u32>("wake", Duration::from_secs(300)).await
}

/// Waits for `go`, then sets event `k`.
#[workflow]
async fn publisher() -> Result<(), Error> {
    DBOS::recv::<u32>("go", Duration::from_secs(300)).await?;
    DBOS::set_event("k", &1_u32).await
}

fn backend_of(url: &str) -> Backend {
    if url.starts_with("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// Latencies of one run, in microseconds.
#[derive(Default)]
struct Run {
    send_recv: Vec<u64>,
    set_get: Vec<u64>,
    /// How long `DBOS::send` itself took (its commit), part of `send_recv`.
    send_call: Vec<u64>,
    /// From `DBOS::send` returning (the message committed) to `recv` returning: the rest.
    committed_recv: Vec<u64>,
}

/// Drives `rounds` rounds (after `warmup` unmeasured ones) against the echo workflow.
async fn drive(rt: &Runtime, rounds: u32, warmup: u32) -> Result<Run, BoxError> {
    let mut run = Run::default();
    for round in 0..warmup + rounds {
        // Let the workflow park in recv, so the message wakes it rather than being found.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let sent = wall_us();
        DBOS::send(
            ECHO_ID,
            &Ping {
                round,
                event: false,
            },
            "ping",
        )
        .await?;
        let sent_back = wall_us();
        let woke: u64 = DBOS::get_event(ECHO_ID, &format!("ack-{round}"), WAIT)
            .await?
            .ok_or("no ack")?;
        let key = format!("ev-{round}");
        let scoped = rt.clone();
        let waiter = tokio::spawn(async move {
            let set = scoped
                .scope(DBOS::get_event::<u64>(ECHO_ID, &key, WAIT))
                .await;
            (set, wall_us())
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
        DBOS::send(ECHO_ID, &Ping { round, event: true }, "ping").await?;
        let (set, got) = waiter.await?;
        let set = set?.ok_or("no event")?;
        if round >= warmup {
            run.send_recv.push(woke.saturating_sub(sent));
            run.set_get.push(got.saturating_sub(set));
            run.send_call.push(sent_back.saturating_sub(sent));
            run.committed_recv.push(woke.saturating_sub(sent_back));
        }
    }
    Ok(run)
}

fn percentile(sorted: &[u64], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)] as f64 / 1000.0
}

fn report(label: &str, run: &mut Run) {
    let lines = [
        ("send -> recv", &mut run.send_recv),
        ("  send call (commit)", &mut run.send_call),
        ("  committed -> recv", &mut run.committed_recv),
        ("set_event -> get_event", &mut run.set_get),
    ];
    for (what, v) in lines {
        v.sort_unstable();
        println!(
            "{label:<24} {what:<24} n={:<5} p50={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms",
            v.len(),
            percentile(v, 50),
            percentile(v, 99),
            percentile(v, 100)
        );
    }
}

fn driver_config(url: &str) -> DbosConfig {
    DbosConfig::new("bench-messages")
        .with_database_url(url)
        .with_executor_id("driver")
        .with_version("driver")
}

/// Echo workflow and driver in one process.
async fn in_process(url: &str, rounds: u32) -> Result<Run, BoxError> {
    let rt = Runtime::launch(driver_config(url)).await?;
    let run = rt
        .scope(async {
            let h = DBOS::start_workflow(echo(rounds + 20).with_id(ECHO_ID)).await?;
            let run = drive(&rt, rounds, 20).await?;
            h.get_result().await?;
            Ok::<Run, BoxError>(run)
        })
        .await?;
    rt.shutdown().await;
    Ok(run)
}

/// Echo workflow in a child process, driver here.
async fn cross_process(url: &str, rounds: u32) -> Result<Run, BoxError> {
    let me = std::env::current_exe()?;
    let mut peer = tokio::process::Command::new(me)
        .args(["peer", url, &(rounds + 20).to_string()])
        .kill_on_drop(true)
        .spawn()?;
    let rt = Runtime::launch(driver_config(url)).await?;
    let run = rt
        .scope(async {
            let deadline = Instant::now() + WAIT;
            while !DBOS::workflow_exists(ECHO_ID).await? {
                if Instant::now() > deadline {
                    return Err::<Run, BoxError>("the peer never started the echo workflow".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drive(&rt, rounds, 20).await
        })
        .await?;
    let status = peer.wait().await?;
    rt.shutdown().await;
    if !status.success() {
        return Err(format!("the peer failed: {status}").into());
    }
    Ok(run)
}

async fn peer(url: &str, rounds: u32) -> Result<(), BoxError> {
    let cfg = DbosConfig::new("bench-messages-peer")
        .with_database_url(url)
        .with_executor_id("peer")
        .with_version("peer");
    let rt = Runtime::launch(cfg).await?;
    rt.scope(async {
        DBOS::start_workflow(echo(rounds).with_id(ECHO_ID))
            .await?
            .get_result()
            .await
    })
    .await?;
    rt.shutdown().await;
    Ok(())
}

/// CPU time of this process (all threads), from `/proc/self/stat`.
fn cpu_time() -> Result<Duration, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').ok_or("malformed /proc/self/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `after` starts at field 3. USER_HZ is 100 on Linux.
    let ticks: u64 = fields.get(11).ok_or("no utime")?.parse::<u64>()?
        + fields.get(12).ok_or("no stime")?.parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// A connection to inspect the rows of the database at `url`, and its system tables' prefix.
async fn inspect(url: &str) -> (dbos_tests::Inspect, &'static str) {
    let db = TestDb {
        url: url.to_owned(),
        backend: backend_of(url),
        dir: None,
    };
    (db.inspect().await, db.sys())
}

/// This process's resident memory, from `/proc/self/statm`.
fn rss_bytes() -> Result<u64, BoxError> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("no resident size")?
        .parse()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Ok(pages * page)
}

/// Heap bytes in use (glibc's `mallinfo2`): what is allocated now, without the free memory
/// the allocator keeps.
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 has no preconditions.
    unsafe { libc::mallinfo2() }.uordblks as u64
}

/// Gives the free memory the allocator holds back to the system, so that the resident size
/// measures what is in use rather than what starting the waiters left behind.
fn trim_heap() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
}

async fn waiters(
    url: &str,
    n: usize,
    secs: u64,
    mix: &str,
    unload_ms: Option<u64>,
) -> Result<(), BoxError> {
    // The liveness record's renewal (a commit every timeout/5 on Postgres) is the process's
    // cost, not the waiters': kept out of the measured window.
    let cfg = DbosConfig::new("bench-messages-waiters")
        .with_liveness_timeout(Duration::from_secs(3600))
        .with_database_url(url)
        .with_executor_id("waiters")
        .with_version("waiters")
        .with_unload_waiting_after(unload_ms.map(Duration::from_millis));
    let rt = Runtime::launch(cfg).await?;
    let (inspect, sys) = inspect(url).await;
    let parked_n = match mix {
        "half" => n / 2,
        "recv" => n,
        "get_event" => 0,
        other => return Err(format!("the mix is half, recv or get_event, not {other}").into()),
    };
    let getters_n = n - parked_n;
    let line = rt
        .scope(async {
            trim_heap();
            let (rss0, heap0) = (rss_bytes()?, heap_in_use());
            let started = Instant::now();
            let publisher = DBOS::start_workflow(publisher().with_id("pub")).await?;
            let getters: Vec<_> = (0..getters_n)
                .map(|_| {
                    let scoped = rt.clone();
                    tokio::spawn(async move {
                        scoped.scope(DBOS::get_event::<u32>("pub", "k", Duration::from_secs(300))).await
                    })
                })
                .collect();
            // The handles are dropped: what is measured is what the waiting workflows hold, not
            // their callers (a handle keeps its execution's context).
            for i in 0..parked_n {
                DBOS::start_workflow(parked().with_id(format!("park-{i}"))).await?;
            }
            // Every parked workflow has recorded its deadline: all of them wait.
            let sql = format!(
                "SELECT COUNT(*) FROM {sys}operation_outputs WHERE function_name = 'DBOS.sleep' \
                 AND (workflow_uuid LIKE 'park-%' OR workflow_uuid = 'pub')"
            );
            while inspect.scalar(&sql).await < parked_n as i64 + 1 {
                if started.elapsed() > Duration::from_secs(120) {
                    return Err::<String, BoxError>("the waiters did not all start within 120 s".into());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if unload_ms.is_some() {
                while rt.unloaded_workflows() < parked_n {
                    if started.elapsed() > Duration::from_secs(180) {
                        return Err::<String, BoxError>("the waiters were not all unloaded within 180 s".into());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let settled = started.elapsed();
            // Let the get_event waiters finish their first reads.
            tokio::time::sleep(Duration::from_secs(1)).await;
            // What the waiters hold: the heap in use, and the resident size once the allocator
            // has given back what starting them left free.
            let heap = heap_in_use().saturating_sub(heap0);
            let rss_untrimmed = rss_bytes()?.saturating_sub(rss0);
            trim_heap();
            let rss = rss_bytes()?.saturating_sub(rss0);
            let unloaded = rt.unloaded_workflows();
            let (cpu0, commits0, t0) = (cpu_time()?, rt.metrics_snapshot().commits, Instant::now());
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let (cpu, commits, window) =
                (cpu_time()? - cpu0, rt.metrics_snapshot().commits - commits0, t0.elapsed());
            let t1 = Instant::now();
            for i in 0..parked_n {
                DBOS::send(&format!("park-{i}"), &(i as u32), "wake").await?;
            }
            DBOS::send("pub", &0_u32, "go").await?;
            for i in 0..parked_n {
                let h = DBOS::retrieve_workflow::<Option<u32>, Error>(&format!("park-{i}")).await?;
                if h.get_result().await? != Some(i as u32) {
                    return Err("a parked workflow got another message".into());
                }
            }
            publisher.get_result().await?;
            for g in getters {
                if g.await?? != Some(1) {
                    return Err("a get_event waiter missed the event".into());
                }
            }
            let released = t1.elapsed();
            Ok(format!(
                "waiters n={n} recv={parked_n} get_event={getters_n} unloaded={unloaded} started_in={:.1}s window={:.2}s cpu_time={}ms \
                 cpu={:.2}% commits={commits} released={}ms rss_per_waiter={}B \
                 (before trimming the allocator {}B) heap_per_waiter={}B",
                settled.as_secs_f64(),
                window.as_secs_f64(),
                cpu.as_millis(),
                100.0 * cpu.as_secs_f64() / window.as_secs_f64(),
                released.as_millis(),
                rss / n.max(1) as u64,
                rss_untrimmed / n.max(1) as u64,
                heap / n.max(1) as u64
            ))
        })
        .await?;
    println!("{line}");
    rt.shutdown().await;
    Ok(())
}

/// Resumed executions of [`pending_one`] in this process.
static RESUMED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts its execution, then waits for a message.
#[workflow]
async fn pending_one() -> Result<Option<u32>, Error> {
    RESUMED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    DBOS::recv::<u32>("wake", Duration::from_secs(3600)).await
}

/// `bench_messages pending URL N`: N workflows wait in `recv` when the runtime shuts down;
/// a new runtime (same executor) is launched: how long until it serves, until every workflow
/// runs again, and until all have finished once a message is sent to each.
async fn pending(url: &str, n: usize) -> Result<(), BoxError> {
    let cfg = || {
        DbosConfig::new("bench-messages-pending")
            .with_database_url(url)
            .with_executor_id("pending")
            .with_version("pending")
    };
    let rt = Runtime::launch(cfg()).await?;
    let (inspect, sys) = inspect(url).await;
    let started = Instant::now();
    rt.scope(async {
        for i in 0..n {
            DBOS::start_workflow(pending_one().with_id(format!("pending-{i}"))).await?;
        }
        Ok::<_, BoxError>(())
    })
    .await?;
    let sql = format!(
        "SELECT COUNT(*) FROM {sys}operation_outputs WHERE function_name = 'DBOS.sleep' \
         AND workflow_uuid LIKE 'pending-%'"
    );
    while inspect.scalar(&sql).await < n as i64 {
        if started.elapsed() > Duration::from_secs(300) {
            return Err("the workflows did not all wait within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let parked_in = started.elapsed();
    rt.shutdown().await;
    drop(rt);
    RESUMED.store(0, std::sync::atomic::Ordering::SeqCst);

    let t0 = Instant::now();
    let rt = Runtime::launch(cfg()).await?;
    let serving = t0.elapsed();
    while RESUMED.load(std::sync::atomic::Ordering::SeqCst) < n {
        if t0.elapsed() > Duration::from_secs(300) {
            return Err("the workflows did not all resume within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resumed = t0.elapsed();
    let done = rt
        .scope(async {
            for i in 0..n {
                DBOS::send(&format!("pending-{i}"), &(i as u32), "wake").await?;
            }
            for i in 0..n {
                let h =
                    DBOS::retrieve_workflow::<Option<u32>, Error>(&format!("pending-{i}")).await?;
                if h.get_result().await? != Some(i as u32) {
                    return Err::<_, BoxError>("a resumed workflow got another message".into());
                }
            }
            Ok(t0.elapsed())
        })
        .await?;
    rt.shutdown().await;
    println!(
        "pending n={n} parked_in={:.1}s launch_to_serving={}ms all_resumed={}ms \
         all_finished_after_sends={}ms",
        parked_in.as_secs_f64(),
        serving.as_millis(),
        resumed.as_millis(),
        done.as_millis()
    );
    Ok(())
}

/// Runs `bench_messages waiters` in a child process, so the measurement sees only the waiters.
async fn waiters_child(url: &str, n: usize, secs: u64) -> Result<String, BoxError> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .args(["waiters", url, &n.to_string(), &secs.to_string()])
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "waiters run failed: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(stdout
        .lines()
        .find(|l| l.starts_with("waiters"))
        .unwrap_or("no result")
        .to_owned())
}

/// Runs the parts whose names contain `only` (all of them when empty).
async fn all(rounds: u32, only: &str) -> Result<(), BoxError> {
    let want = |part: &str| part.contains(only);
    println!("bench_messages: {rounds} measured rounds per run (after 20 warm-up rounds)");
    if want("sqlite in-process") {
        let db = TestDb::fresh(Backend::Sqlite, "bench_messages_sqlite").await;
        report("sqlite in-process", &mut in_process(&db.url, rounds).await?);
    }
    if want("postgres in-process") {
        let db = TestDb::fresh(Backend::Postgres, "bench_messages_pg").await;
        report(
            "postgres in-process",
            &mut in_process(&db.url, rounds).await?,
        );
    }
    if want("postgres cross-process") {
        let db = TestDb::fresh(Backend::Postgres, "bench_messages_pg_cross").await;
        report(
            "postgres cross-process",
            &mut cross_process(&db.url, rounds).await?,
        );
    }
    if want("sqlite cross-process") {
        // SQLite has no NOTIFY: another process's write is seen by the once-a-second watcher.
        let db = TestDb::fresh(Backend::Sqlite, "bench_messages_sqlite_cross").await;
        report(
            "sqlite cross-process",
            &mut cross_process(&db.url, 20.min(rounds)).await?,
        );
    }
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let label = format!(
            "{} waiters",
            if backend == Backend::Sqlite {
                "sqlite"
            } else {
                "postgres"
            }
        );
        if want(&label) {
            let db = TestDb::fresh(
                backend,
                &format!("bench_messages_{}", label.replace(' ', "_")),
            )
            .await;
            println!("{label:<24} {}", waiters_child(&db.url, 1000, 5).await?);
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing argument {i}: see the usage in bench_messages.rs"))
    };
    match args.first().map(String::as_str) {
        Some("waiters") => {
            let mix = args.get(4).map_or("half", String::as_str);
            let unload_ms = args.get(5).map(|ms| ms.parse()).transpose()?;
            waiters(arg(1)?, arg(2)?.parse()?, arg(3)?.parse()?, mix, unload_ms).await
        }
        Some("pending") => pending(arg(1)?, arg(2)?.parse()?).await,
        Some("peer") => peer(arg(1)?, arg(2)?.parse()?).await,
        Some(rounds) => all(rounds.parse()?, args.get(1).map_or("", String::as_str)).await,
        None => all(1000, "").await,
    }
}
