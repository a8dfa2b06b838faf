//! The replay check: does today's code take the path recorded workflows took?
//!
//! [`Runtime::check_replay`] runs the bodies of recorded workflows with this binary's code
//! against their checkpoints, in a mode where every operation replays its record and nothing
//! runs or is written: no step, transaction, send, sleep or child. It reports each workflow
//! whose code now takes another path, with the first operation that differs. Run it from the
//! new build against the production database before deploying: `dbos workflow replay --
//! ./target/release/app` does it through the environment variable [`REPLAY_CHECK_ENV`], which
//! makes [`Runtime::launch`] run the check, print it and exit instead of launching.

use crate::context::{self, Current, ReplayStop, WfCtx};
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::serialization::Inputs;
use crate::sysdb::WorkflowFilter;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable that turns a launch into a replay check: a JSON filter
/// (`{"statuses": ["PENDING"], "workflow_ids": [...], "names": [...]}`; `{}` is every
/// `PENDING` workflow).
pub const REPLAY_CHECK_ENV: &str = "DBOS__REPLAY_CHECK";

/// How long one workflow's replay may take.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the replay check found for one workflow.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum ReplayVerdict {
    /// Today's code replayed every operation it reached under the recorded name, up to the end
    /// of the records (or the end of the body).
    Consistent {
        /// Recorded operations replayed.
        operations: usize,
    },
    /// At `function_id` the code began `current` where `recorded` was recorded.
    Diverged {
        /// The position.
        function_id: i32,
        /// The operation recorded there.
        recorded: String,
        /// The operation today's code began there.
        current: String,
    },
    /// The body finished without reaching the operation recorded at `function_id`.
    Unreached {
        /// The first recorded position it did not reach.
        function_id: i32,
        /// The operation recorded there.
        recorded: String,
    },
    /// The body could not be replayed: not registered here, inputs that do not decode, a
    /// panic, or no end within 10 s.
    NotRun {
        /// Why.
        why: String,
    },
}

/// One workflow's replay check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplayReport {
    /// The workflow.
    pub workflow_id: String,
    /// Its registered name.
    pub name: String,
    /// What the check found.
    pub verdict: ReplayVerdict,
}

impl ReplayReport {
    /// Whether today's code takes the recorded path.
    pub fn is_consistent(&self) -> bool {
        matches!(self.verdict, ReplayVerdict::Consistent { .. })
    }
}

impl Runtime {
    /// Replays the workflows `filter` selects (every `PENDING` one when it selects no
    /// status) with this binary's code against their records, running and writing nothing;
    /// see the module docs. Oldest first.
    ///
    /// # Errors
    /// Database errors while listing or loading records; a workflow that cannot be replayed
    /// is a [`ReplayVerdict::NotRun`] in its report, not an error.
    pub async fn check_replay(&self, filter: &WorkflowFilter) -> Result<Vec<ReplayReport>> {
        let mut filter = filter.clone();
        if filter.statuses.is_empty() {
            filter.statuses.push("PENDING".to_owned());
        }
        filter.load_input = true;
        let mut reports = Vec::new();
        for info in self.list_workflows(&filter).await? {
            let name = info.name.clone().unwrap_or_default();
            let verdict = self.replay_one(&info).await?;
            reports.push(ReplayReport {
                workflow_id: info.workflow_id.clone(),
                name,
                verdict,
            });
        }
        Ok(reports)
    }

    async fn replay_one(&self, info: &crate::WorkflowInfo) -> Result<ReplayVerdict> {
        let name = info.name.clone().unwrap_or_default();
        let Some(entry) = self.registry().get(&name) else {
            return Ok(ReplayVerdict::NotRun {
                why: format!("no workflow named {name:?} in this binary"),
            });
        };
        let call = match Inputs::parse(info.inputs.as_deref(), info.serialization.as_deref())
            .and_then(entry.resume)
        {
            Ok(call) => call,
            Err(e) => {
                return Ok(ReplayVerdict::NotRun {
                    why: format!("its inputs do not decode: {e}"),
                })
            }
        };
        let recorded = self.db().load_steps(&info.workflow_id).await?;
        let ctx = Arc::new(WfCtx::replay_check(info.workflow_id.clone(), recorded));
        let current = Current::workflow(self.clone(), ctx.clone());
        let body = tokio::spawn(context::scope(current, call.body));
        let abort = body.abort_handle();
        let ended = tokio::time::timeout(REPLAY_TIMEOUT, body).await;
        let why = match ended {
            Err(_) => {
                abort.abort();
                Some(format!("it did not end within {REPLAY_TIMEOUT:?}"))
            }
            Ok(Err(e)) if e.is_panic() => Some("it panicked".to_owned()),
            Ok(Err(e)) => Some(format!("it did not run: {e}")),
            Ok(Ok(_)) => None,
        };
        Ok(match (ctx.replay_stopped(), why) {
            (
                Some(ReplayStop::Diverged {
                    function_id,
                    recorded,
                    current,
                }),
                _,
            ) => ReplayVerdict::Diverged {
                function_id,
                recorded,
                current,
            },
            (Some(ReplayStop::EndOfRecords { at, name }), _) => {
                match ctx.unvisited().into_iter().find(|(n, _)| *n > at) {
                    // Records follow the place the code now begins something new: a recovery
                    // would run it there and then meet those records under other positions.
                    Some((later, recorded)) => ReplayVerdict::Diverged {
                        function_id: at,
                        recorded: format!("nothing (then {recorded} at {later})"),
                        current: name,
                    },
                    None => ReplayVerdict::Consistent {
                        operations: ctx.visited_count(),
                    },
                }
            }
            (None, Some(why)) => ReplayVerdict::NotRun { why },
            (None, None) => match ctx.unvisited().into_iter().next() {
                Some((function_id, recorded)) => ReplayVerdict::Unreached {
                    function_id,
                    recorded,
                },
                None => ReplayVerdict::Consistent {
                    operations: ctx.visited_count(),
                },
            },
        })
    }
}

/// The filter [`REPLAY_CHECK_ENV`] holds.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EnvFilter {
    #[serde(default)]
    statuses: Vec<String>,
    #[serde(default)]
    workflow_ids: Vec<String>,
    #[serde(default)]
    names: Vec<String>,
}

/// Parses the filter in [`REPLAY_CHECK_ENV`].
pub(crate) fn env_filter(text: &str) -> Result<WorkflowFilter> {
    let f: EnvFilter = if text.trim().is_empty() {
        EnvFilter::default()
    } else {
        serde_json::from_str(text)
            .map_err(|e| Error::Config(format!("{REPLAY_CHECK_ENV} is not a filter: {e}")))?
    };
    Ok(WorkflowFilter {
        statuses: f.statuses,
        workflow_ids: f.workflow_ids,
        names: f.names,
        newest_first: false,
        ..WorkflowFilter::default()
    })
}

/// A launch with [`REPLAY_CHECK_ENV`] set: connects as a client, runs the check, prints one
/// JSON report per line on stdout, and exits: 0 when every workflow replays consistently, 1
/// when one does not, 2 when the check could not run.
pub(crate) async fn run_from_env(cfg: crate::DbosConfig, spec: &str) -> ! {
    let outcome = async {
        let filter = env_filter(spec)?;
        let rt = Runtime::connect(cfg).await?;
        let reports = rt.check_replay(&filter).await;
        rt.shutdown().await;
        reports
    }
    .await;
    match outcome {
        Ok(reports) => {
            let mut diverged = 0;
            for r in &reports {
                if !r.is_consistent() {
                    diverged += 1;
                }
                match serde_json::to_string(r) {
                    Ok(line) => println!("{line}"),
                    Err(e) => eprintln!("replay check: {e}"),
                }
            }
            // The last line says the check ran (an app that exits before its launch prints
            // none), and what it found.
            println!(
                "{}",
                serde_json::json!({"replay_check": "done", "checked": reports.len(), "diverged": diverged})
            );
            std::process::exit(if diverged == 0 { 0 } else { 1 })
        }
        Err(e) => {
            eprintln!("replay check could not run: {e}");
            std::process::exit(2)
        }
    }
}
