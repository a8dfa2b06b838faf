//! `dbos`: operate the workflows in a DBOS system database (ours, or one DBOS's own SDKs
//! write), as DBOS's CLI does: list, get, steps, cancel, resume, fork, queue list, migrate.
//!
//! It opens the database as a client ([`Runtime::connect`]): it recovers, dispatches and runs
//! nothing. Every failure is one line on stderr and a non-zero exit (2 for a bad command
//! line, 1 for the rest).

mod args;
mod output;

use args::{Args, Command};
use dbos_runtime::{DbosConfig, Error, ForkOptions, Runtime, WorkflowFilter};
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dbos: {e}");
            return ExitCode::from(2);
        }
    };
    if args.command == Command::Help {
        print!("{}", args::USAGE);
        return ExitCode::SUCCESS;
    }
    if let Command::Replay { filter, app } = &args.command {
        return replay(filter, app, args.json);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dbos: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dbos: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `workflow replay`: runs the application with `DBOS__REPLAY_CHECK` set (its launch runs the
/// check, prints one JSON report per line and exits), then prints the reports and exits 1 when
/// one diverged.
fn replay(filter: &str, app: &[String], json: bool) -> ExitCode {
    let Some((program, rest)) = app.split_first() else {
        eprintln!("dbos: which application? dbos workflow replay -- ./target/release/app");
        return ExitCode::from(2);
    };
    let out = match std::process::Command::new(program)
        .args(rest)
        .env(dbos_runtime::REPLAY_CHECK_ENV, filter)
        .stderr(std::process::Stdio::inherit())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("dbos: cannot run {program}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reports: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v.get("workflow_id").is_some())
        .collect();
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("replay_check").is_some());
    let Some(summary) = summary else {
        eprintln!(
            "dbos: {program} did not run the replay check ({}); does it call DBOS::launch?",
            out.status
        );
        return ExitCode::from(2);
    };
    print!("{}", output::replay(json, &reports));
    if summary.get("diverged").and_then(|d| d.as_u64()) == Some(0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the command; returns what to print, or the one-line error.
async fn run(args: Args) -> Result<String, String> {
    let url = args
        .sys_db_url
        .clone()
        .or_else(|| env("DBOS_SYSTEM_DATABASE_URL"))
        .or_else(|| args.db_url.clone())
        .or_else(|| env("DBOS_DATABASE_URL"))
        .ok_or("no database: pass --sys-db-url URL or set DBOS_SYSTEM_DATABASE_URL".to_owned())?;
    if args.command != Command::Migrate {
        must_exist(&url)?;
    }
    let mut cfg = DbosConfig::new("dbos-cli").with_database_url(&url);
    // Only `migrate` creates a database; elsewhere a wrong URL is an error.
    cfg.create_database = args.command == Command::Migrate;
    if let Some(schema) = &args.schema {
        cfg.system_schema = schema.clone();
    }
    let rt = Runtime::connect(cfg).await.map_err(|e| chain(&e))?;
    let out = command(&rt, &args).await;
    rt.shutdown().await;
    out.map_err(|e| chain(&e))
}

async fn command(rt: &Runtime, args: &Args) -> Result<String, Error> {
    let json = args.json;
    Ok(match &args.command {
        Command::Help => String::new(),
        Command::Migrate => output::message(json, "migrated", "the system database is up to date"),
        Command::Replay { .. } => String::new(),
        Command::List { filter, queued } => {
            let rows = if *queued {
                rt.list_queued_workflows(filter).await?
            } else {
                rt.list_workflows(filter).await?
            };
            output::workflows(json, &rows, filter.load_input)
        }
        Command::Get(id) => {
            let filter = WorkflowFilter::new().workflow_id(id).with_payloads();
            let row = rt.list_workflows(&filter).await?.pop();
            let row = row.ok_or_else(|| Error::NonExistentWorkflow(id.clone()))?;
            output::workflow(json, &row)
        }
        Command::Steps(id) => output::steps(json, &rt.get_workflow_steps(id).await?),
        Command::Cancel(id) => {
            let changed = rt.cancel_workflow(id).await?;
            let text = if changed {
                format!("cancelled {id}")
            } else {
                format!("{id} had already finished; nothing changed")
            };
            output::changed(json, id, changed, &text)
        }
        Command::Resume(id) => {
            let changed = rt.resume_workflow(id).await?;
            let text = if changed {
                format!(
                    "resumed {id}: enqueued; a running application continues it from its last step"
                )
            } else {
                let status = rt
                    .get_status(id)
                    .await?
                    .map(|s| s.status)
                    .unwrap_or_default();
                format!("{id} is {status}; only CANCELLED, ERROR and MAX_RECOVERY_ATTEMPTS_EXCEEDED workflows resume")
            };
            output::changed(json, id, changed, &text)
        }
        Command::Fork {
            id,
            step,
            new_id,
            version,
        } => {
            let mut options = ForkOptions::new();
            if let Some(n) = new_id {
                options = options.workflow_id(n);
            }
            if let Some(v) = version {
                options = options.application_version(v);
            }
            let forked = rt.fork_workflow(id, *step, options).await?;
            output::forked(json, id, *step, &forked)
        }
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A SQLite database must exist (only `migrate` creates one): a typo in a path is an error,
/// not a new empty database.
fn must_exist(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Ok(());
    };
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" || std::path::Path::new(path).exists() {
        return Ok(());
    }
    Err(format!(
        "no SQLite database at {path} (run `dbos migrate` to create one)"
    ))
}

/// An error and its causes on one line.
fn chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text.replace('\n', " ")
}
