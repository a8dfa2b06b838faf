//! A load generator for the widget store: closed-loop customers (each checks out, then pays,
//! then starts over at once) against a store it starts itself, and the time the store takes
//! to serve again after its worker is SIGKILLed.
//!
//! ```text
//! cargo build --release -p widget-store
//! target/release/bench_store                       # SQLite in a fresh temporary directory
//! target/release/bench_store --backend postgres    # a fresh database `bench_store`
//! ```
//!
//! Options: `--customers 1,16,64`, `--seconds 10` (measured per level, after `--warmup 2`),
//! `--kills 10`, `--store PATH` (default: the `widget-store` next to this binary; give it twice
//! to compare two builds in one run: both stores run side by side, each on its own database,
//! and take turns at every level). Postgres is `DBOS_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432`); the databases `bench_store_0` (and `_1`) there are
//! dropped and created. The widget's inventory is set to a billion before each level so that
//! nobody meets a sold-out store.
//!
//! Besides flows/s and latency, each level reports per flow (checkout + payment):
//! - `app ms`: CPU time of the store's worker process (user + system, from `/proc`);
//! - `pg ms`: CPU time of all Postgres server processes (Postgres only);
//! - `commits`: the runtime's own count of committed transactions (its `/metrics`);
//! - `xids`: on Postgres the transaction IDs the server assigned, that is write transactions
//!   as it counts them; on SQLite the `COMMIT`s the runtime's writer ran (group commit: the
//!   commits of operations that arrive together share one);
//! - `retries`: transactions the runtime retried after a serialization failure, deadlock or
//!   busy database (its `/metrics`).
//!
//! On Postgres, `--statements 20` (the default; 0 turns it off) then counts the statements
//! one customer's flows send, from the server's statement log: the database is set to
//! `log_statement = all`, the worker is restarted so that its connections take it, and the
//! lines the server logs for that database are counted in `--pg-log` (default
//! `/var/log/postgresql/postgresql-15-main.log`, Debian's).

#[path = "../../tests/support/http.rs"]
#[allow(dead_code)]
mod http;

use http::{request, Conn};
use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error>;

struct Options {
    postgres: bool,
    customers: Vec<usize>,
    seconds: f64,
    warmup: f64,
    kills: usize,
    stores: Vec<PathBuf>,
    statements: usize,
    pg_log: PathBuf,
}

fn options() -> Result<Options, BoxError> {
    let exe = std::env::current_exe()?;
    let mut o = Options {
        postgres: false,
        customers: vec![1, 16, 64],
        seconds: 10.0,
        warmup: 2.0,
        kills: 10,
        stores: Vec::new(),
        statements: 20,
        pg_log: "/var/log/postgresql/postgresql-15-main.log".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => match value()?.as_str() {
                "sqlite" => o.postgres = false,
                "postgres" => o.postgres = true,
                other => return Err(format!("--backend is sqlite or postgres, not {other}").into()),
            },
            "--customers" => {
                o.customers = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--seconds" => o.seconds = value()?.parse()?,
            "--warmup" => o.warmup = value()?.parse()?,
            "--kills" => o.kills = value()?.parse()?,
            "--store" => o.stores.push(value()?.into()),
            "--statements" => o.statements = value()?.parse()?,
            "--pg-log" => o.pg_log = value()?.into(),
            "-h" | "--help" => {
                println!(
                    "bench_store [--backend sqlite|postgres] [--customers 1,16,64] [--seconds 10] \
                     [--warmup 2] [--kills 10] [--store PATH [--store PATH]] [--statements 20] \
                     [--pg-log PATH]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other} (try --help)").into()),
        }
    }
    if o.stores.is_empty() {
        o.stores.push(exe.with_file_name("widget-store"));
    }
    if o.stores.len() > 2 {
        return Err("--store compares at most two builds".into());
    }
    Ok(o)
}

/// The store under test: its supervisor leads a process group, SIGKILLed on drop.
struct Store {
    addr: SocketAddr,
    admin: SocketAddr,
    db_url: String,
    /// The Postgres database's name (Postgres only).
    db_name: String,
    supervisor: Child,
    dir: PathBuf,
}

impl Store {
    async fn start(o: &Options, index: usize) -> Result<Store, BoxError> {
        let path = &o.stores[index];
        let dir = std::env::temp_dir().join(format!("bench-store-{}-{index}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let db_url = if o.postgres {
            let server = std::env::var("DBOS_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
            sqlx::raw_sql(&format!(
                "DROP DATABASE IF EXISTS bench_store_{index} WITH (FORCE)"
            ))
            .execute(&mut conn)
            .await?;
            sqlx::raw_sql(&format!("CREATE DATABASE bench_store_{index}"))
                .execute(&mut conn)
                .await?;
            format!("{server}/bench_store_{index}")
        } else {
            format!("sqlite://{}/widget_store.sqlite", dir.display())
        };
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let admin = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = std::fs::File::create(dir.join("store.log"))?;
        let mut cmd = Command::new(path);
        cmd.current_dir(&dir)
            .env("HOST", "127.0.0.1")
            .env("PORT", addr.port().to_string())
            .env("RUST_LOG", "warn")
            .env("DBOS_ADMIN_PORT", admin.port().to_string())
            .env_remove("DBOS_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        if o.postgres {
            cmd.env("DBOS_DATABASE_URL", &db_url);
        }
        let supervisor = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
        let store = Store {
            addr,
            admin,
            db_name: format!("bench_store_{index}"),
            db_url,
            supervisor,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !store.serves().await {
            if Instant::now() > deadline {
                return Err(format!(
                    "the store did not serve within 60 s (log: {})",
                    store.dir.display()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(store)
    }

    async fn serves(&self) -> bool {
        matches!(request(self.addr, "GET", "/product").await, Ok(r) if r.status == 200)
    }

    /// Sets the inventory out of reach of any benchmark.
    async fn stock_up(&self) -> Result<(), BoxError> {
        const STOCK: i32 = 1_000_000_000;
        let sql = "UPDATE products SET inventory = $1 WHERE product_id = 1";
        if self.db_url.starts_with("sqlite:") {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&self.db_url).await?;
            sqlx::query(sql).bind(STOCK).execute(&mut c).await?;
            c.close().await?;
        } else {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&self.db_url).await?;
            sqlx::query(sql).bind(STOCK).execute(&mut c).await?;
            c.close().await?;
        }
        Ok(())
    }

    /// The worker's process ID: the supervisor's child.
    fn worker(&self) -> Option<u32> {
        let supervisor = self.supervisor.id();
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .find_map(|entry| {
                let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                let (_, rest) = stat.rsplit_once(')')?;
                let mut fields = rest.split_whitespace();
                let state = fields.next()?;
                let ppid = fields.next()?.parse::<u32>().ok()?;
                (ppid == supervisor && state != "Z").then_some(pid)
            })
    }

    /// SIGKILLs the worker; returns when it was sent, once the store serves again.
    async fn kill_worker(&self) -> Result<Duration, BoxError> {
        let worker = self.worker().ok_or("no worker process")?;
        let killed = Instant::now();
        // SAFETY: signals the worker process this benchmark's supervisor started.
        unsafe {
            libc::kill(worker as libc::pid_t, libc::SIGKILL);
        }
        // A request sent now waits in the listening socket's backlog (the supervisor holds it)
        // until the new worker accepts it; one that the dying worker took is sent again.
        let deadline = killed + Duration::from_secs(30);
        loop {
            if self.worker().is_some_and(|w| w != worker) && self.serves().await {
                return Ok(killed.elapsed());
            }
            if Instant::now() > deadline {
                return Err("the store did not serve again within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: signals the process group this benchmark's supervisor leads.
        unsafe {
            libc::kill(-(self.supervisor.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.supervisor.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the customers measured.
#[derive(Default)]
struct Samples {
    checkout: Vec<Duration>,
    pay: Vec<Duration>,
    flow: Vec<Duration>,
    errors: usize,
    /// When the last request succeeded.
    last_ok: Option<Instant>,
}

/// One keep-alive connection that reconnects after errors.
struct Client {
    addr: SocketAddr,
    conn: Option<Conn>,
}

impl Client {
    /// POSTs `path` until it gets a 200 (the store may be restarting); returns the body.
    async fn post(&mut self, path: &str, shared: &RefCell<Samples>) -> (String, Duration) {
        loop {
            let started = Instant::now();
            let conn = match self.conn.take().filter(Conn::is_open) {
                Some(c) => Ok(c),
                None => Conn::connect(self.addr).await,
            };
            let answer = match conn {
                Ok(mut c) => {
                    let r =
                        tokio::time::timeout(Duration::from_secs(30), c.send("POST", path, true))
                            .await;
                    if c.is_open() {
                        self.conn = Some(c);
                    }
                    r.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
                }
                Err(e) => Err(e),
            };
            match answer {
                Ok(r) if r.status == 200 => {
                    shared.borrow_mut().last_ok = Some(Instant::now());
                    return (r.body, started.elapsed());
                }
                Ok(r) => {
                    eprintln!("POST {path}: {} {}", r.status, r.body);
                    shared.borrow_mut().errors += 1;
                }
                Err(_) => shared.borrow_mut().errors += 1,
            }
            self.conn = None;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A customer: checkout, pay, again, until `stop`; records what finished after `measure_from`.
async fn customer(
    addr: SocketAddr,
    tag: String,
    measure_from: Instant,
    stop: Instant,
    shared: Rc<RefCell<Samples>>,
) {
    let mut client = Client { addr, conn: None };
    let mut n = 0u64;
    while Instant::now() < stop {
        n += 1;
        let started = Instant::now();
        let (payment_id, checkout) = client.post(&format!("/checkout/{tag}-{n}"), &shared).await;
        let (_order_id, pay) = client
            .post(&format!("/payment_webhook/{payment_id}/paid"), &shared)
            .await;
        let flow = started.elapsed();
        if started >= measure_from && Instant::now() <= stop {
            let mut s = shared.borrow_mut();
            s.checkout.push(checkout);
            s.pay.push(pay);
            s.flow.push(flow);
        }
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1e3
}

/// Resource counters read at the start and at the end of a level's measured part.
#[derive(Clone, Copy)]
struct Counters {
    app: Duration,
    pg: Duration,
    commits: Option<u64>,
    xid: Option<u64>,
    retries: Option<u64>,
}

/// CPU time (user + system) of process `pid`, from `/proc`.
fn cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// CPU time of every Postgres server process on this machine.
fn postgres_cpu() -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(cpu_of)
        .sum()
}

impl Store {
    /// A counter of the worker's `/metrics`.
    async fn metric(&self, name: &str) -> Option<u64> {
        let r = request(self.admin, "GET", "/metrics").await.ok()?;
        r.body.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v as u64)
        })
    }

    /// The runtime's committed transactions.
    async fn runtime_commits(&self) -> Option<u64> {
        self.metric("dbos_commits_total").await
    }

    /// The next transaction ID Postgres will assign (none is taken to read it); on SQLite the
    /// writer's `COMMIT`s so far.
    async fn next_xid(&self) -> Option<u64> {
        if self.db_url.starts_with("sqlite:") {
            return self.metric("dbos_sqlite_batch_commits_total").await;
        }
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&self.db_url).await.ok()?;
        let xid: i64 = sqlx::query_scalar("SELECT txid_snapshot_xmax(txid_current_snapshot())")
            .fetch_one(&mut c)
            .await
            .ok()?;
        let _ = c.close().await;
        u64::try_from(xid).ok()
    }

    async fn counters(&self) -> Counters {
        Counters {
            app: self.worker().and_then(cpu_of).unwrap_or_default(),
            pg: if self.db_url.starts_with("sqlite:") {
                Duration::ZERO
            } else {
                postgres_cpu()
            },
            commits: self.runtime_commits().await,
            xid: self.next_xid().await,
            retries: self.metric("dbos_transaction_retries_total").await,
        }
    }
}

/// Runs `customers` for warmup + seconds; returns the samples of the measured part and the
/// counters at its start and end.
async fn run_level(
    store: &Store,
    o: &Options,
    tag: &str,
    customers: usize,
) -> (Samples, Counters, Counters) {
    let shared = Rc::new(RefCell::new(Samples::default()));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(o.warmup);
    let stop = measure_from + Duration::from_secs_f64(o.seconds);
    let tasks = tokio::task::LocalSet::new();
    for c in 0..customers {
        tasks.spawn_local(customer(
            store.addr,
            format!("{tag}-{c}"),
            measure_from,
            stop,
            shared.clone(),
        ));
    }
    let (before, after) = tasks
        .run_until(async {
            tokio::time::sleep_until(measure_from.into()).await;
            let before = store.counters().await;
            tokio::time::sleep_until(stop.into()).await;
            (before, store.counters().await)
        })
        .await;
    tasks.await;
    (shared.take(), before, after)
}

/// One row of the results table.
fn report(build: &str, customers: usize, o: &Options, mut s: Samples, a: Counters, b: Counters) {
    let flows = s.flow.len();
    let rate = flows as f64 / o.seconds;
    let pair =
        |v: &mut Vec<Duration>| format!("{:.2} / {:.2}", percentile(v, 50.0), percentile(v, 99.0));
    let per = |d: f64| {
        if flows == 0 {
            "-".to_owned()
        } else {
            format!("{:.2}", d / flows as f64)
        }
    };
    let ms = |x: Duration, y: Duration| per(y.saturating_sub(x).as_secs_f64() * 1e3);
    let count = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (Some(x), Some(y)) => per(y.saturating_sub(x) as f64),
        _ => "-".to_owned(),
    };
    let pg = if o.postgres {
        ms(a.pg, b.pg)
    } else {
        "-".to_owned()
    };
    println!(
        "{build:>5} {customers:>9} {rate:>8.0} {:>17} {:>17} {:>17} {:>7} {:>6} {:>7} {:>5} {:>7} {:>6}",
        pair(&mut s.checkout),
        pair(&mut s.pay),
        pair(&mut s.flow),
        ms(a.app, b.app),
        pg,
        count(a.commits, b.commits),
        count(a.xid, b.xid),
        count(a.retries, b.retries),
        s.errors
    );
}

async fn bench(o: Options) -> Result<(), BoxError> {
    let mut stores = Vec::new();
    for i in 0..o.stores.len() {
        stores.push(Store::start(&o, i).await?);
    }
    let backend = if o.postgres { "postgres" } else { "sqlite" };
    println!(
        "widget store on {backend}, {} s per level after {} s warm-up",
        o.seconds, o.warmup
    );
    for (i, path) in o.stores.iter().enumerate() {
        println!("build {}: {}", (b'A' + i as u8) as char, path.display());
    }
    println!("per flow: app ms / pg ms = CPU time of the store's worker / of Postgres; commits = the runtime's; xids = write transactions Postgres counted (SQLite: COMMITs the writer ran); retries = transactions retried after a conflict");
    println!(
        "{:>5} {:>9} {:>8} {:>17} {:>17} {:>17} {:>7} {:>6} {:>7} {:>5} {:>7} {:>6}",
        "build",
        "customers",
        "flows/s",
        "checkout p50/p99",
        "payment p50/p99",
        "flow p50/p99 ms",
        "app ms",
        "pg ms",
        "commits",
        "xids",
        "retries",
        "errors"
    );
    for (level, &customers) in o.customers.iter().enumerate() {
        for (i, store) in stores.iter().enumerate() {
            store.stock_up().await?;
            let (s, a, b) = run_level(store, &o, &format!("bench{level}-{i}"), customers).await;
            let build = ((b'A' + i as u8) as char).to_string();
            report(&build, customers, &o, s, a, b);
        }
    }
    if o.postgres && o.statements > 0 {
        for (i, store) in stores.iter().enumerate() {
            let build = (b'A' + i as u8) as char;
            match count_statements(store, &o).await {
                Ok((n, commits)) => println!(
                    "build {build}: one customer, {} flows: {:.1} statements and {:.1} commits per flow \
                     (Postgres statement log)",
                    o.statements,
                    n as f64 / o.statements as f64,
                    commits as f64 / o.statements as f64
                ),
                Err(e) => println!("build {build}: statements not counted: {e}"),
            }
        }
    }

    if o.kills > 0 {
        for (i, store) in stores.iter().enumerate() {
            let build = (b'A' + i as u8) as char;
            let mut idle = Vec::new();
            for _ in 0..o.kills {
                idle.push(store.kill_worker().await?);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let mut loaded = Vec::new();
            for _ in 0..o.kills.div_ceil(2) {
                loaded.push(kill_under_load(store).await?);
            }
            let ms = |v: &mut Vec<Duration>| {
                format!(
                    "p50 {:.0} ms, max {:.0} ms",
                    percentile(v, 50.0),
                    percentile(v, 100.0)
                )
            };
            println!(
                "build {build}: SIGKILL of the worker -> serving again: idle {} ({} kills)",
                ms(&mut idle),
                idle.len()
            );
            println!(
                "build {build}: SIGKILL of the worker -> a customer served again, 16 customers: \
                 {} ({} kills)",
                ms(&mut loaded),
                loaded.len()
            );
        }
    }
    Ok(())
}

/// Counts the statements and commits (`COMMIT`s and autocommit writes are not told apart by
/// the log, so commits come from the runtime's counter) of `o.statements` flows of one
/// customer, from the Postgres statement log. Restarts the worker twice (to turn the log on
/// and off for its connections).
async fn count_statements(store: &Store, o: &Options) -> Result<(usize, u64), BoxError> {
    let set = |on: bool| {
        let sql = if on {
            format!("ALTER DATABASE {} SET log_statement = 'all'", store.db_name)
        } else {
            format!("ALTER DATABASE {} RESET log_statement", store.db_name)
        };
        async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&store.db_url).await?;
            sqlx::raw_sql(&sql).execute(&mut c).await?;
            c.close().await?;
            Ok::<_, BoxError>(())
        }
    };
    let log_len = || std::fs::metadata(&o.pg_log).map(|m| m.len());
    log_len().map_err(|e| format!("cannot read {}: {e}", o.pg_log.display()))?;
    set(true).await?;
    let counted = async {
        store.kill_worker().await?;
        store.stock_up().await?;
        let shared = Rc::new(RefCell::new(Samples::default()));
        let mut client = Client {
            addr: store.addr,
            conn: None,
        };
        // Warm up the connections and their statement caches.
        for n in 0..5 {
            flow(&mut client, &format!("count-warm-{n}"), &shared).await;
        }
        let commits0 = store.runtime_commits().await;
        let from = log_len()?;
        for n in 0..o.statements {
            flow(&mut client, &format!("count-{n}"), &shared).await;
        }
        let commits1 = store.runtime_commits().await;
        // Let the server write its last lines.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let log = std::fs::read(&o.pg_log)?;
        let tail = String::from_utf8_lossy(log.get(from as usize..).unwrap_or_default());
        let marker = format!("@{} LOG:  ", store.db_name);
        let n = tail
            .lines()
            .filter_map(|l| l.split_once(&marker).map(|(_, rest)| rest))
            .filter(|rest| rest.starts_with("statement: ") || rest.starts_with("execute "))
            .count();
        let commits = match (commits0, commits1) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        };
        Ok::<_, BoxError>((n, commits))
    }
    .await;
    set(false).await?;
    store.kill_worker().await?;
    counted
}

/// One checkout and its payment.
async fn flow(client: &mut Client, tag: &str, shared: &RefCell<Samples>) {
    let (payment_id, _) = client.post(&format!("/checkout/{tag}"), shared).await;
    client
        .post(&format!("/payment_webhook/{payment_id}/paid"), shared)
        .await;
}

/// Kills the worker while 16 customers shop; returns the time until a customer's request
/// succeeded again.
async fn kill_under_load(store: &Store) -> Result<Duration, BoxError> {
    store.stock_up().await?;
    let shared = Rc::new(RefCell::new(Samples::default()));
    let now = Instant::now();
    let stop = now + Duration::from_secs(3);
    let tag = format!("kill{}", now.elapsed().as_nanos() ^ fastish_seed());
    let tasks = tokio::task::LocalSet::new();
    for c in 0..16 {
        tasks.spawn_local(customer(
            store.addr,
            format!("{tag}-{c}"),
            stop,
            stop,
            shared.clone(),
        ));
    }
    let measured = tasks
        .run_until(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let worker = store.worker().ok_or("no worker process")?;
            let killed = Instant::now();
            // SAFETY: signals the worker process this benchmark's supervisor started.
            unsafe {
                libc::kill(worker as libc::pid_t, libc::SIGKILL);
            }
            let deadline = killed + Duration::from_secs(30);
            // Answers from the new worker: those that arrive after it exists.
            let mut restarted = None;
            loop {
                if restarted.is_none() && store.worker().is_some_and(|w| w != worker) {
                    restarted = Some(Instant::now());
                }
                if let (Some(r), Some(ok)) = (restarted, shared.borrow().last_ok) {
                    if ok > r {
                        return Ok::<_, BoxError>(ok - killed);
                    }
                }
                if Instant::now() > deadline {
                    return Err("no customer was served within 30 s of the kill".into());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    tasks.await;
    measured
}

/// A seed that differs between runs, for unique idempotency keys.
fn fastish_seed() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn main() -> std::process::ExitCode {
    let result = options().and_then(|o| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(bench(o))
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_store: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
