//! Testing one's own workflows: crash them at every checkpoint.
//!
//! [`EveryCheckpoint`] runs a workflow once to count its checkpoints, then once per cut on a
//! fresh database: it stops the workflow right after checkpoint 1 commits (and, for a step,
//! also right before its record is written, with its body already run), recovers it as a
//! freshly started process would, lets it finish, and runs the test's check; then the same for
//! checkpoint 2, 3, ... to the last. The first cut whose check fails is reported by number and
//! operation name. At a cut the runtime refuses every further write, exactly what a process
//! killed at that instant leaves behind; code of the workflow body that runs after the cut
//! without writing (a side effect outside any step) does run, as it would again on recovery.
//!
//! ```no_run
//! # use dbos_runtime::prelude::*;
//! # use dbos_runtime::testing::EveryCheckpoint;
//! # #[workflow] async fn checkout(order: u32) -> Result<(), Error> { Ok(()) }
//! # async fn t() {
//! let report = EveryCheckpoint::new("shop")
//!     .check(|| checkout(7), |rt, result| async move {
//!         result.map_err(|e| e.to_string())?;
//!         // ... read the application's tables through `rt` and compare ...
//!         Ok(())
//!     })
//!     .await
//!     .expect("every cut recovers to a correct state");
//! println!("{} checkpoints, {} cuts", report.checkpoints.len(), report.cuts);
//! # }
//! ```

use crate::config::DbosConfig;
use crate::cut::{At, Plan};
use crate::error::{Error, WorkflowError};
use crate::runtime::Runtime;
use crate::workflow::WorkflowCall;
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

type Hook = Arc<
    dyn Fn(Runtime, String) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// Runs a workflow crashed at each of its checkpoints in turn; see the module docs.
#[derive(Clone)]
pub struct EveryCheckpoint {
    app: String,
    postgres: Option<String>,
    setup: Option<Hook>,
    drive: Option<Hook>,
    timeout: Duration,
}

/// One place a workflow was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The checkpoint's number, from 1, in the order the workflow commits them.
    pub checkpoint: usize,
    /// The operation recorded there (a step's name, `DBOS.recv`, ...).
    pub operation: String,
    /// `true`: before the step's record was written (its body had run); `false`: right after
    /// the checkpoint committed.
    pub before: bool,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let when = if self.before {
            "just before"
        } else {
            "just after"
        };
        write!(
            f,
            "{when} checkpoint {} ({})",
            self.checkpoint, self.operation
        )
    }
}

/// What a passing run covered.
#[derive(Debug, Clone)]
pub struct Report {
    /// The workflow's checkpoints, in order (operation names).
    pub checkpoints: Vec<String>,
    /// How many cuts were made and checked (after each checkpoint, and before each step's).
    pub cuts: usize,
    /// Cuts planned at a checkpoint that run never reached: it committed fewer checkpoints
    /// than the first run (one that depends on timing, such as a `recv`'s deadline, was not
    /// needed). Its outcome was still checked.
    pub skipped: usize,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The check failed after the workflow was crashed at `cut` and recovered.
    #[error("crashed {cut}, recovered: {why}")]
    Broken {
        /// Where the workflow was stopped.
        cut: Cut,
        /// What the check said.
        why: String,
    },
    /// The check failed on the uninterrupted run.
    #[error("without a crash: {0}")]
    Uncut(String),
    /// The harness itself could not run (a database, a launch, a timeout).
    #[error("the crash test could not run: {0}")]
    Harness(String),
}

impl EveryCheckpoint {
    /// A test of workflows of application `app`, on a fresh SQLite file per run.
    pub fn new(app: &str) -> EveryCheckpoint {
        EveryCheckpoint {
            app: app.to_owned(),
            postgres: None,
            setup: None,
            drive: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// Runs on Postgres instead: a fresh database per run on the server at `server_url`
    /// (`postgres://user@host:port`), dropped afterwards.
    pub fn on_postgres(mut self, server_url: &str) -> EveryCheckpoint {
        self.postgres = Some(server_url.trim_end_matches('/').to_owned());
        self
    }

    /// Prepares each fresh database before the workflow starts (tables, seed rows).
    pub fn setup<F, Fut>(mut self, f: F) -> EveryCheckpoint
    where
        F: Fn(Runtime) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.setup = Some(Arc::new(move |rt, _| Box::pin(f(rt))));
        self
    }

    /// Plays the outside world while the workflow runs (and again while it recovers), given
    /// its ID: sends the messages it waits for, say. It must be safe to run twice (send with
    /// an idempotency key); it is dropped once the workflow ends.
    pub fn drive<F, Fut>(mut self, f: F) -> EveryCheckpoint
    where
        F: Fn(Runtime, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.drive = Some(Arc::new(move |rt, id| Box::pin(f(rt, id))));
        self
    }

    /// How long one run may take (default 60 s).
    pub fn with_timeout(mut self, timeout: Duration) -> EveryCheckpoint {
        self.timeout = timeout;
        self
    }

    /// Runs `call`'s workflow uncut, then cut at every checkpoint, checking each outcome with
    /// `check` (given a runtime on that run's database and the workflow's result).
    ///
    /// # Errors
    /// [`CheckError::Broken`] names the first cut whose check failed.
    pub async fn check<T, E, C, CF>(
        &self,
        call: impl Fn() -> WorkflowCall<T, E>,
        check: C,
    ) -> Result<Report, CheckError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
        C: Fn(Runtime, std::result::Result<T, E>) -> CF,
        CF: Future<Output = Result<(), String>>,
    {
        let counted = self.one(&call, &check, At::Nowhere).await?;
        let seen = match counted {
            Ran::Uncut(_, Err(why)) => return Err(CheckError::Uncut(why)),
            Ran::Uncut(seen, Ok(())) => seen,
            Ran::Cut(..) => return Err(CheckError::Harness("the uncut run was cut".into())),
        };
        let (mut cuts, mut skipped) = (0, 0);
        for (i, (_, step)) in seen.iter().enumerate() {
            let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let mut ats = Vec::new();
            if *step {
                ats.push(At::Before(n));
            }
            ats.push(At::After(n));
            for at in ats {
                match self.one(&call, &check, at).await? {
                    Ran::Cut(_, Ok(())) => cuts += 1,
                    Ran::Cut(operation, Err(why)) => {
                        let cut = Cut {
                            checkpoint: i + 1,
                            operation,
                            before: matches!(at, At::Before(_)),
                        };
                        return Err(CheckError::Broken { cut, why });
                    }
                    // This run committed fewer checkpoints (one that depends on timing, such
                    // as a recv's deadline, was not needed): nothing to cut here, but its
                    // outcome must still pass.
                    Ran::Uncut(_, Ok(())) => skipped += 1,
                    Ran::Uncut(_, Err(why)) => return Err(CheckError::Uncut(why)),
                }
            }
        }
        Ok(Report {
            checkpoints: seen.into_iter().map(|(name, _)| name).collect(),
            cuts,
            skipped,
        })
    }

    /// One run on a fresh database, cut at `at`.
    async fn one<T, E, C, CF>(
        &self,
        call: &impl Fn() -> WorkflowCall<T, E>,
        check: &C,
        at: At,
    ) -> Result<Ran, CheckError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
        C: Fn(Runtime, std::result::Result<T, E>) -> CF,
        CF: Future<Output = Result<(), String>>,
    {
        let db = Scratch::new(self.postgres.as_deref()).await?;
        let ran = self.one_on(&db.url, call, check, at).await;
        db.remove().await;
        ran
    }

    async fn one_on<T, E, C, CF>(
        &self,
        url: &str,
        call: &impl Fn() -> WorkflowCall<T, E>,
        check: &C,
        at: At,
    ) -> Result<Ran, CheckError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        E: WorkflowError,
        C: Fn(Runtime, std::result::Result<T, E>) -> CF,
        CF: Future<Output = Result<(), String>>,
    {
        let harness = |what: &str, e: Error| CheckError::Harness(format!("{what}: {e}"));
        let id = format!("cut-{}", uuid::Uuid::new_v4());
        let plan = Arc::new(Plan::new(id.clone(), at));
        let base = DbosConfig::new(self.app.clone())
            .with_database_url(url)
            .with_executor_id("every-checkpoint")
            .with_shutdown_timeout(Duration::from_millis(500));
        let rt = Runtime::launch(base.clone())
            .await
            .map_err(|e| harness("launch", e))?;
        rt.set_cut(plan.clone());
        if let Some(setup) = &self.setup {
            if let Err(why) = setup(rt.clone(), id.clone()).await {
                rt.shutdown().await;
                return Err(CheckError::Harness(format!("setup: {why}")));
            }
        }
        let handle = match rt.start_workflow(call().with_id(&id)).await {
            Ok(h) => h,
            Err(e) => {
                rt.shutdown().await;
                return Err(harness("start", e));
            }
        };
        let driving = self.spawn_drive(&rt, &id);
        let ended = tokio::time::timeout(self.timeout, async {
            tokio::select! {
                result = handle.get_result() => Some(result),
                () = plan.fired() => None,
            }
        })
        .await;
        let ended = match ended {
            Ok(ended) => ended,
            Err(_) => {
                abort(driving);
                rt.shutdown().await;
                return Err(CheckError::Harness(format!(
                    "the run did not end within {:?}",
                    self.timeout
                )));
            }
        };
        if let Some(result) = ended {
            // Not cut: the uncut run, or a cut past the end.
            abort(driving);
            let verdict = check(rt.clone(), result).await;
            rt.shutdown().await;
            return Ok(Ran::Uncut(plan.seen(), verdict));
        }
        abort(driving);
        rt.shutdown().await;
        let operation = match at {
            // The step whose record was about to be written: the next checkpoint's name is
            // not known yet; the last seen is the one before it.
            At::Before(_) => plan.pending_step().unwrap_or_else(|| "a step".to_owned()),
            _ => plan
                .seen()
                .last()
                .map(|(name, _)| name.clone())
                .unwrap_or_default(),
        };
        // Recovery, as a process started on the same database would do it.
        let rt = Runtime::launch(base)
            .await
            .map_err(|e| harness("relaunch", e))?;
        let driving = self.spawn_drive(&rt, &id);
        let result = tokio::time::timeout(self.timeout, async {
            let handle = rt.retrieve_workflow::<T, E>(&id).await?;
            Ok::<_, Error>(handle.get_result().await)
        })
        .await;
        abort(driving);
        let verdict = match result {
            Ok(Ok(result)) => check(rt.clone(), result).await,
            Ok(Err(e)) => Err(format!("the recovered workflow could not be read: {e}")),
            Err(_) => Err(format!(
                "the recovered workflow did not finish within {:?}",
                self.timeout
            )),
        };
        rt.shutdown().await;
        Ok(Ran::Cut(operation, verdict))
    }

    fn spawn_drive(&self, rt: &Runtime, id: &str) -> Option<tokio::task::JoinHandle<()>> {
        let drive = self.drive.clone()?;
        let (rt, id) = (rt.clone(), id.to_owned());
        Some(tokio::spawn(async move {
            let scoped = rt.clone();
            if let Err(why) = scoped.scope(drive(rt, id)).await {
                tracing::warn!("the test's drive failed: {why}");
            }
        }))
    }
}

fn abort(task: Option<tokio::task::JoinHandle<()>>) {
    if let Some(t) = task {
        t.abort();
    }
}

/// How one run ended.
enum Ran {
    /// The workflow finished without a cut: the checkpoints seen, and the check's verdict.
    Uncut(Vec<(String, bool)>, Result<(), String>),
    /// It was cut and recovered: the operation cut at, and the check's verdict.
    Cut(String, Result<(), String>),
}

/// A fresh database for one run.
struct Scratch {
    url: String,
    dir: Option<std::path::PathBuf>,
    server: Option<(String, String)>,
}

impl Scratch {
    async fn new(postgres: Option<&str>) -> Result<Scratch, CheckError> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        match postgres {
            None => {
                let dir = std::env::temp_dir().join(format!("dbos-every-checkpoint-{tag}"));
                std::fs::create_dir_all(&dir)
                    .map_err(|e| CheckError::Harness(format!("a scratch directory: {e}")))?;
                Ok(Scratch {
                    url: format!("sqlite://{}", dir.join("app.sqlite").display()),
                    dir: Some(dir),
                    server: None,
                })
            }
            Some(server) => {
                let name = format!("dbos_cut_{}", &tag[..16]);
                Ok(Scratch {
                    url: format!("{server}/{name}"),
                    dir: None,
                    server: Some((server.to_owned(), name)),
                })
            }
        }
    }

    async fn remove(self) {
        if let Some(dir) = self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((server, name)) = self.server {
            use sqlx::Connection;
            if let Ok(mut c) = sqlx::PgConnection::connect(&format!("{server}/postgres")).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut c)
                    .await;
                let _ = c.close().await;
            }
        }
    }
}
