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
    /// This process's executor ID: stable across restarts, distinct per process sharing a database.
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
        }
    }

    /// Like [`DbosConfig::new`], then reads `DBOS_DATABASE_URL`, `DBOS_SYSTEM_DATABASE_URL`,
    /// `DBOS__VMID` (executor) and `DBOS__APPVERSION` from the environment when set.
    pub fn from_env(name: impl Into<String>) -> Self {
        let mut cfg = Self::new(name);
        if let Some(url) = env_nonempty("DBOS_DATABASE_URL") {
            cfg.database_url = url;
        }
        if let Some(url) = env_nonempty("DBOS_SYSTEM_DATABASE_URL") {
            cfg.system_database_url = Some(url);
        }
        cfg
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
        if self.max_recovery_attempts < 0 {
            return Err(Error::Config("max_recovery_attempts must be ≥ 0".into()));
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

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
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
            let rest = trimmed.trim_start_matches("sqlite:").trim_start_matches("//");
            if rest.is_empty() {
                return Err(Error::Config(format!(
                    "database URL {url:?} names no SQLite file (use sqlite://app.sqlite or sqlite::memory:)"
                )));
            }
            Ok(DatabaseUrl::Sqlite(trimmed.to_owned()))
        } else if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            trimmed
                .parse::<sqlx::postgres::PgConnectOptions>()
                .map_err(|e| Error::Config(format!("malformed Postgres URL {url:?}: {e}")))?;
            Ok(DatabaseUrl::Postgres(trimmed.to_owned()))
        } else {
            Err(Error::Config(format!(
                "database URL {url:?} is neither sqlite:// nor postgres://"
            )))
        }
    }
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
    fn malformed_urls_are_config_errors_naming_the_url() {
        for url in ["mysql://x", "", "sqlite://", "postgres://u@h:notaport/db"] {
            let err = DatabaseUrl::parse(url).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{url}: {err}");
            if !url.is_empty() {
                assert!(err.to_string().contains(url), "{err}");
            }
        }
        assert!(matches!(
            DatabaseUrl::parse("postgres://postgres@127.0.0.1:5432/x"),
            Ok(DatabaseUrl::Postgres(_))
        ));
    }
}
