//! Configuration: which databases, which app, which executor.

use crate::error::Error;

/// How the runtime is set up. Build it with [`DbosConfig::new`] or [`DbosConfig::from_env`],
/// adjust fields, then pass it to [`crate::DBOS::launch`].
///
/// # Durability
/// On SQLite the default `synchronous=NORMAL` (with WAL) survives a killed process, which is
/// what the framework promises; set [`DbosConfig::sqlite_synchronous_full`] to also survive a
/// power loss, at some cost in commit latency. Postgres commits are durable per its own settings.
#[derive(Debug, Clone)]
pub struct DbosConfig {
    /// The application's name, written to `application_name` and used for the default database file.
    pub name: String,
    /// The application database (and, unless `system_database_url` is set, the system database).
    /// `sqlite://path` or `postgres://...`. Default: `sqlite://<name>.sqlite` in the working directory.
    pub database_url: String,
    /// A separate system database; `None` keeps workflow state in the application database.
    pub system_database_url: Option<String>,
    /// This process's executor ID: distinct per process sharing a database. Default:
    /// `DBOS__VMID`, else `local`, which a launched runtime makes unique so processes never
    /// recover each other's live work:
    /// - on Postgres, `<host>-<pid>-<random>`; its unfinished workflows are taken over by a
    ///   restart on the same host when it launches, or by any live process after
    ///   [`DbosConfig::liveness_timeout`];
    /// - on a SQLite file, the first free slot, `local`, `local-2`, ... (a lock file next to
    ///   the database); a launch takes over the work of slots whose process is gone.
    ///
    /// Set `DBOS__VMID` (or this field to anything but `local`) for a fixed ID.
    pub executor_id: String,
    /// The application version recorded on each workflow; only workflows of this version are recovered.
    pub application_version: String,
    /// Recoveries allowed per workflow before it is set aside as `MAX_RECOVERY_ATTEMPTS_EXCEEDED`.
    pub max_recovery_attempts: i32,
    /// The Postgres schema of the system tables (`dbos`).
    pub system_schema: String,
    /// SQLite only: `synchronous=FULL` (survives power loss) instead of `NORMAL`.
    pub sqlite_synchronous_full: bool,
    /// Postgres only: the maximum connections of the pool.
    pub max_connections: u32,
    /// Whether `#[scheduled]` functions catch up on ticks missed while no process ran.
    ///
    /// `None` (the default, as in DBOS): missed ticks are skipped; the schedule resumes at the
    /// next tick after launch. `Some(n)`: at launch each schedule finds its last recorded tick
    /// (the newest `sched-<name>-<time>` workflow in the system database) and starts the ticks
    /// missed since then, oldest first, at most `n` of them (at most
    /// [`DbosConfig::MAX_SCHEDULER_CATCH_UP`]); later missed ticks are skipped. A schedule that
    /// never ran has nothing to catch up on. Caught-up ticks get their own scheduled time and
    /// the launch time as actual time, and the same IDs as live ticks, so several processes
    /// catching up at once still run each tick once.
    pub scheduler_catch_up: Option<u32>,
    /// How long [`Runtime::shutdown`](crate::Runtime::shutdown) lets running workflow bodies go
    /// on to their next durable operation (a step body or a transaction under way finishes)
    /// before it cuts them off. Default: 10 s.
    ///
    /// Within this bound nothing a workflow started changes the database once shutdown has
    /// returned. A workflow cut off is logged, and resumes at the next launch like after a
    /// crash; a statement it had already sent may still commit after shutdown returns.
    /// `Duration::ZERO` cuts every running workflow off at once, as a crash would.
    pub shutdown_timeout: std::time::Duration,
    /// Postgres: create the database when it does not exist (the default). A management tool
    /// sets it to `false`, so that a mistyped URL is an error rather than a new empty database.
    pub create_database: bool,
    /// The admin server's port (DBOS's is 3001), or `None` (the default) for no admin server.
    /// It serves DBOS's admin endpoints (health, recovery, workflow list, get, steps, cancel,
    /// resume, fork, garbage collection) on a launched runtime. Needs the `admin` feature.
    pub admin_port: Option<u16>,
    /// The address the admin server binds: `127.0.0.1` unless set.
    pub admin_address: std::net::IpAddr,
    /// A bearer token every admin request must carry (`Authorization: Bearer <token>`), else
    /// 401. [`DbosConfig::from_env`] reads it from `DBOS_ADMIN_TOKEN`.
    pub admin_token: Option<Secret>,
    /// Postgres: how long a process may go without renewing its liveness record before the
    /// live processes of the application consider it dead, and one of them takes over its
    /// unfinished workflows (they resume from their last checkpoint). Default: 30 s. The
    /// record is renewed every fifth of this; a process that was only paused and comes back
    /// finds its workflows fenced off (see the README's queue section).
    pub liveness_timeout: std::time::Duration,
    /// Whether [`crate::DBOS::patch`] may be used: code changes ship under one application
    /// version, and patches let in-flight workflows keep their old path (DBOS's
    /// `enable_patching`). Default: off.
    pub enable_patching: bool,
    /// A workflow whose `recv`, `DBOS::sleep` or child's `get_result` has waited this long
    /// leaves memory: its execution drops the body and ends without an outcome (the row stays
    /// `PENDING`), and the workflow is loaded again, replaying its records, when its message
    /// comes, the child ends or its wait ends. It then holds a few hundred bytes instead of its whole future (about 5 KiB), so
    /// a process can keep millions of workflows waiting for days. Default: 60 s; `None` keeps
    /// every waiting workflow in memory. A wait inside a `DBOS::join` or `DBOS::select` never
    /// unloads. Loading again costs a read of the row and of its records, so waits shorter
    /// than this keep the fastest wake-up.
    pub unload_waiting_after: Option<std::time::Duration>,
}

/// A secret string: shown as `<redacted>` by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl DbosConfig {
    /// A configuration for `name` on the embedded default: a SQLite file `<name>.sqlite` in the
    /// working directory, created when missing.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        DbosConfig {
            database_url: format!("sqlite://{}.sqlite", file_stem(&name)),
            name,
            system_database_url: None,
            executor_id: std::env::var("DBOS__VMID").unwrap_or_else(|_| "local".to_owned()),
            application_version: std::env::var("DBOS__APPVERSION")
                .unwrap_or_else(|_| "0.0.0".to_owned()),
            max_recovery_attempts: 100,
            system_schema: "dbos".to_owned(),
            sqlite_synchronous_full: false,
            max_connections: 16,
            scheduler_catch_up: None,
            shutdown_timeout: std::time::Duration::from_secs(10),
            create_database: true,
            admin_port: None,
            admin_address: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            admin_token: None,
            liveness_timeout: std::time::Duration::from_secs(30),
            enable_patching: false,
            unload_waiting_after: Some(std::time::Duration::from_secs(60)),
        }
    }

    /// The largest [`DbosConfig::scheduler_catch_up`]: bounds the burst of work at launch.
    pub const MAX_SCHEDULER_CATCH_UP: u32 = 10_000;

    /// Catches up on at most `max_ticks` missed ticks per schedule at launch (see
    /// [`DbosConfig::scheduler_catch_up`]).
    pub fn with_scheduler_catch_up(mut self, max_ticks: u32) -> Self {
        self.scheduler_catch_up = Some(max_ticks);
        self
    }

    /// Sets [`DbosConfig::liveness_timeout`] (at least 100 ms).
    pub fn with_liveness_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.liveness_timeout = timeout;
        self
    }

    /// Sets [`DbosConfig::unload_waiting_after`] (`None`: never unload a waiting workflow).
    pub fn with_unload_waiting_after(mut self, after: Option<std::time::Duration>) -> Self {
        self.unload_waiting_after = after;
        self
    }

    /// Sets [`DbosConfig::shutdown_timeout`].
    pub fn with_shutdown_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Like [`DbosConfig::new`], then reads `DBOS_DATABASE_URL`, `DBOS_SYSTEM_DATABASE_URL`,
    /// `DBOS__VMID` (executor), `DBOS__APPVERSION`, `DBOS_ADMIN_PORT` (a port, or `off`) and
    /// `DBOS_ADMIN_TOKEN` from the environment when set.
    pub fn from_env(name: impl Into<String>) -> Self {
        let mut cfg = Self::new(name);
        if let Some(url) = env_nonempty("DBOS_DATABASE_URL") {
            cfg.database_url = url;
        }
        if let Some(url) = env_nonempty("DBOS_SYSTEM_DATABASE_URL") {
            cfg.system_database_url = Some(url);
        }
        match env_nonempty("DBOS_ADMIN_PORT").as_deref() {
            None => {}
            Some("off") => cfg.admin_port = None,
            Some(port) => match port.parse() {
                Ok(p) => cfg.admin_port = Some(p),
                Err(_) => {
                    tracing::warn!("DBOS_ADMIN_PORT={port} is not a port number; no admin server")
                }
            },
        }
        if let Some(token) = env_nonempty("DBOS_ADMIN_TOKEN") {
            cfg.admin_token = Some(Secret(token));
        }
        cfg
    }

    /// Serves the admin server on `port` (see [`DbosConfig::admin_port`]).
    pub fn with_admin_server(mut self, port: u16) -> Self {
        self.admin_port = Some(port);
        self
    }

    /// Requires `token` on every admin request (see [`DbosConfig::admin_token`]).
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(Secret(token.into()));
        self
    }

    /// Turns patching on ([`DbosConfig::enable_patching`]). The application version stays
    /// what it is: ours defaults to a fixed `0.0.0` (DBOS Python's default changes with every
    /// build, which is why it pins `PATCHING_ENABLED` when patching is on), so a new build
    /// recovers the workflows older ones left in flight as long as the version is not changed.
    pub fn with_patching(mut self) -> Self {
        self.enable_patching = true;
        self
    }

    /// Sets the application version (use `env!("CARGO_PKG_VERSION")` of your crate).
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.application_version = version.into();
        self
    }

    /// Sets the executor ID.
    pub fn with_executor_id(mut self, id: impl Into<String>) -> Self {
        self.executor_id = id.into();
        self
    }

    /// Sets the database URL.
    pub fn with_database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = url.into();
        self
    }

    /// Sets a separate system database URL.
    pub fn with_system_database_url(mut self, url: impl Into<String>) -> Self {
        self.system_database_url = Some(url.into());
        self
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.name.trim().is_empty() {
            return Err(Error::Config("the application name is empty".into()));
        }
        if self.executor_id.trim().is_empty() {
            return Err(Error::Config("the executor id is empty".into()));
        }
        if self.liveness_timeout < std::time::Duration::from_millis(100) {
            return Err(Error::Config(format!(
                "liveness_timeout is {:?}; it must be at least 100 ms",
                self.liveness_timeout
            )));
        }
        if self.max_recovery_attempts < 0 {
            return Err(Error::Config("max_recovery_attempts must be ≥ 0".into()));
        }
        if let Some(n) = self.scheduler_catch_up {
            if n > Self::MAX_SCHEDULER_CATCH_UP {
                return Err(Error::Config(format!(
                    "scheduler_catch_up is {n}; at most {} missed ticks per schedule can be caught up",
                    Self::MAX_SCHEDULER_CATCH_UP
                )));
            }
        }
        DatabaseUrl::parse(&self.database_url)?;
        if let Some(url) = &self.system_database_url {
            DatabaseUrl::parse(url)?;
        }
        if !self
            .system_schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || self.system_schema.is_empty()
        {
            return Err(Error::Config(format!(
                "system schema {:?} must be a plain identifier",
                self.system_schema
            )));
        }
        Ok(())
    }
}

/// The URL with any password replaced by `***`, for error messages.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{userinfo}@{host}")
            }
        }
        None => url.to_owned(),
    }
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A database URL, classified by backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DatabaseUrl {
    Sqlite(String),
    Postgres(String),
}

impl DatabaseUrl {
    pub(crate) fn parse(url: &str) -> Result<DatabaseUrl, Error> {
        let trimmed = url.trim();
        if trimmed.starts_with("sqlite:") {
            let rest = trimmed
                .trim_start_matches("sqlite:")
                .trim_start_matches("//");
            if rest.is_empty() {
                return Err(Error::Config(format!(
                    "database URL {url:?} names no SQLite file (use sqlite://app.sqlite or sqlite::memory:)"
                )));
            }
            Ok(DatabaseUrl::Sqlite(trimmed.to_owned()))
        } else if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            trimmed
                .parse::<sqlx::postgres::PgConnectOptions>()
                .map_err(|e| {
                    Error::Config(format!("malformed Postgres URL {:?}: {e}", redact_url(url)))
                })?;
            Ok(DatabaseUrl::Postgres(trimmed.to_owned()))
        } else {
            Err(Error::Config(format!(
                "database URL {url:?} is neither sqlite:// nor postgres://"
            )))
        }
    }
}

/// The executor ID a launched runtime uses: the configured one, except when it is the default
/// `local` (and `DBOS__VMID` is unset):
/// - on Postgres, `<host>-<pid>-<random>`, unique per process (liveness records tell which
///   are gone);
/// - on a SQLite file, the lowest free *slot*: `local`, `local-2`, ..., each held by an
///   exclusive lock on `<file>.executors/slot-<n>.lock` for as long as the runtime runs (the
///   returned file). Two processes on one file never share an ID, and a restart takes the
///   slot (and so the work) of a process that is gone.
pub(crate) fn resolve_executor_id(cfg: &mut DbosConfig) -> Option<std::fs::File> {
    if cfg.executor_id != "local" || std::env::var_os("DBOS__VMID").is_some() {
        return None;
    }
    let sys = cfg
        .system_database_url
        .as_deref()
        .unwrap_or(&cfg.database_url);
    match DatabaseUrl::parse(sys) {
        Ok(DatabaseUrl::Postgres(_)) => {
            let random = uuid::Uuid::new_v4().simple().to_string();
            cfg.executor_id = format!("{}-{}-{}", hostname(), std::process::id(), &random[..8]);
            None
        }
        Ok(DatabaseUrl::Sqlite(url)) => {
            let dir = sqlite_slot_dir(&url)?;
            // Beside the database file, never creating its directory: a database in a
            // directory that does not exist fails to open, with a clear error, as before.
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(_) => return None,
            }
            for n in 1..=MAX_SQLITE_SLOTS {
                if let Some(file) = lock_slot(&dir, n) {
                    cfg.executor_id = sqlite_slot_id(n);
                    return Some(file);
                }
            }
            tracing::warn!(
                "every executor slot of {} is taken; using a one-off executor ID",
                dir.display()
            );
            let random = uuid::Uuid::new_v4().simple().to_string();
            cfg.executor_id = format!("local-{}-{}", std::process::id(), &random[..8]);
            None
        }
        Err(_) => None,
    }
}

/// Processes that can share one SQLite file with slot IDs.
pub(crate) const MAX_SQLITE_SLOTS: u32 = 64;

/// The directory of a SQLite file's executor slots; `None` for an in-memory database.
pub(crate) fn sqlite_slot_dir(url: &str) -> Option<std::path::PathBuf> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() {
        return None;
    }
    Some(std::path::PathBuf::from(format!("{path}.executors")))
}

/// Slot `n`'s executor ID.
pub(crate) fn sqlite_slot_id(n: u32) -> String {
    if n == 1 {
        "local".to_owned()
    } else {
        format!("local-{n}")
    }
}

/// Takes slot `n`'s lock, if no live process holds it.
pub(crate) fn lock_slot(dir: &std::path::Path, n: u32) -> Option<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("slot-{n}.lock")))
        .ok()?;
    file.try_lock().ok()?;
    Some(file)
}

/// This machine's name (for telling which liveness records' pids can be checked here).
pub(crate) fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_database_is_a_sqlite_file_named_after_the_app() {
        let cfg = DbosConfig::new("widget store");
        assert_eq!(cfg.database_url, "sqlite://widget_store.sqlite");
        cfg.validate().unwrap();
    }

    #[test]
    fn scheduler_catch_up_is_off_by_default_and_bounded() {
        let cfg = DbosConfig::new("app");
        assert_eq!(cfg.scheduler_catch_up, None);
        cfg.clone()
            .with_scheduler_catch_up(DbosConfig::MAX_SCHEDULER_CATCH_UP)
            .validate()
            .unwrap();
        let err = cfg
            .with_scheduler_catch_up(DbosConfig::MAX_SCHEDULER_CATCH_UP + 1)
            .validate()
            .unwrap_err();
        assert!(
            matches!(err, Error::Config(_)) && err.to_string().contains("scheduler_catch_up"),
            "{err}"
        );
    }

    #[test]
    fn malformed_urls_are_config_errors_naming_the_url() {
        for url in ["mysql://x", "", "sqlite://", "postgres://u@h:notaport/db"] {
            let err = DatabaseUrl::parse(url).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{url}: {err}");
            if !url.is_empty() {
                assert!(err.to_string().contains(url), "{err}");
            }
        }
        let err = DatabaseUrl::parse("postgres://u:secret@h:notaport/db")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret") && err.contains("u:***@h"), "{err}");
        assert!(matches!(
            DatabaseUrl::parse("postgres://postgres@127.0.0.1:5432/x"),
            Ok(DatabaseUrl::Postgres(_))
        ));
    }
}
