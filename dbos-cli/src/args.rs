//! The command line: parsed by hand into a [`Command`], so that every mistake is one line
//! naming it (and exit code 2).

use dbos_runtime::WorkflowFilter;

pub const USAGE: &str = "\
Usage: dbos [OPTIONS] <COMMAND>

Commands:
  workflow list [FILTERS]        list workflows, newest first (10 unless --limit)
  workflow get <ID>              one workflow: status, times, inputs, output or error
  workflow steps <ID>            its recorded steps, in order
  workflow cancel <ID>           cancel it: it stops before its next step, in any process
  workflow resume <ID>           put a CANCELLED, ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED
                                 workflow back on its queue; it continues from its last step
  workflow fork <ID> [-S STEP] [-f NEW_ID] [-v VERSION]
                                 a new workflow replaying steps before STEP (default 1)
  workflow queue list [FILTERS]  workflows waiting on or taken from a queue
  workflow replay [ID...] [-S STATUS] [-n NAME] -- APP [ARGS...]
                                 run APP (a new build that calls DBOS::launch) in replay-check
                                 mode: it replays the recorded workflows (PENDING unless
                                 filtered) with its code, runs and writes nothing, and names
                                 each one whose code now takes another path; exit 1 if any
  migrate                        create or migrate the system database

Options:
  -s, --sys-db-url URL   the system database (else $DBOS_SYSTEM_DATABASE_URL,
                         else $DBOS_DATABASE_URL)
  -D, --db-url URL       the application database (used as the system database
                         when no system database is given)
      --schema NAME      the system schema on Postgres (default dbos)
      --json             print JSON instead of tables
  -h, --help             print this help

Filters:
  -l, --limit N                 at most N rows (0: no limit)
  -o, --offset N                skip N rows
  -S, --status STATUS           PENDING, ENQUEUED, SUCCESS, ERROR, CANCELLED, ... (repeatable)
  -n, --name NAME               workflow name (repeatable)
  -q, --queue NAME              queue name (repeatable)
  -v, --application-version V   application version (repeatable)
  -e, --executor ID             executor (repeatable)
  -p, --prefix PREFIX           workflow IDs starting with PREFIX
  -t, --start-time TIME         created at or after TIME (RFC 3339)
  -E, --end-time TIME           created before TIME (RFC 3339)
      --oldest-first            oldest first
      --payloads                also print inputs and outputs
";

/// What to do.
#[derive(Debug, PartialEq)]
pub enum Command {
    Help,
    List {
        filter: Box<WorkflowFilter>,
        queued: bool,
    },
    Get(String),
    Steps(String),
    Cancel(String),
    Resume(String),
    Fork {
        id: String,
        step: i32,
        new_id: Option<String>,
        version: Option<String>,
    },
    Migrate,
    Replay {
        /// The filter, as the JSON `DBOS__REPLAY_CHECK` takes.
        filter: String,
        /// The application to run, and its arguments.
        app: Vec<String>,
    },
}

/// The parsed command line.
#[derive(Debug, PartialEq)]
pub struct Args {
    pub command: Command,
    pub sys_db_url: Option<String>,
    pub db_url: Option<String>,
    pub schema: Option<String>,
    pub json: bool,
}

/// Parses `argv` (without the program name). `Err` is the one-line message.
pub fn parse(argv: &[String]) -> Result<Args, String> {
    // `replay`'s application command follows `--`, untouched.
    let (argv, app) = match argv.iter().position(|a| a == "--") {
        Some(i) => (&argv[..i], argv[i + 1..].to_vec()),
        None => (argv, Vec::new()),
    };
    let mut words: Vec<&str> = Vec::new();
    let mut sys_db_url = None;
    let mut db_url = None;
    let mut schema = None;
    let mut json = false;
    let mut help = false;
    let mut filter = WorkflowFilter::new().newest_first().limit(10);
    let mut limit_set = false;
    let mut step: Option<i32> = None;
    let mut new_id = None;
    let mut version = None;
    let mut i = 0;
    while i < argv.len() {
        let arg = argv[i].as_str();
        // `--flag=value` is the same as `--flag value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg, None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            i += 1;
            argv.get(i)
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag {
            "-h" | "--help" => help = true,
            "--json" => json = true,
            "-s" | "--sys-db-url" => sys_db_url = Some(value(flag)?),
            "-D" | "--db-url" => db_url = Some(value(flag)?),
            "--schema" => schema = Some(value(flag)?),
            "-l" | "--limit" => {
                let n: u32 = number(flag, &value(flag)?)?;
                filter.limit = (n > 0).then_some(n);
                limit_set = true;
            }
            "-o" | "--offset" => filter.offset = Some(number(flag, &value(flag)?)?),
            "-S" | "--status" | "--step" => {
                let v = value(flag)?;
                // In `fork`, -S is the step (as in DBOS's CLI); elsewhere a status.
                if words.get(1) == Some(&"fork") || flag == "--step" {
                    step = Some(number(flag, &v)?);
                } else {
                    filter.statuses.push(v.to_ascii_uppercase());
                }
            }
            "-n" | "--name" => filter.names.push(value(flag)?),
            "-q" | "--queue" | "--queue-name" => filter.queues.push(value(flag)?),
            "-v" | "--application-version" => {
                let v = value(flag)?;
                version = Some(v.clone());
                filter.app_versions.push(v);
            }
            "-e" | "--executor" => filter.executors.push(value(flag)?),
            "-p" | "--prefix" => filter.id_prefix = Some(value(flag)?),
            "-t" | "--start-time" => filter.created_after_ms = Some(time(flag, &value(flag)?)?),
            "-E" | "--end-time" => filter.created_before_ms = Some(time(flag, &value(flag)?)?),
            "-f" | "--forked-workflow-id" => new_id = Some(value(flag)?),
            "--oldest-first" => filter.newest_first = false,
            "--payloads" => {
                filter.load_input = true;
                filter.load_output = true;
            }
            _ if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option `{flag}` (see dbos --help)"));
            }
            _ => words.push(&argv[i]),
        }
        i += 1;
    }
    let id = |rest: &[&str]| -> Result<String, String> {
        match rest {
            [id] if !id.trim().is_empty() => Ok((*id).to_owned()),
            [] => Err("a workflow ID is needed".to_owned()),
            [_] => Err("the workflow ID is empty".to_owned()),
            [_, extra, ..] => Err(format!("unexpected argument `{extra}`")),
        }
    };
    if !app.is_empty() && words.get(1) != Some(&"replay") {
        return Err("`--` is only for `workflow replay`".to_owned());
    }
    let command = match words.as_slice() {
        _ if help => Command::Help,
        [] => Command::Help,
        ["workflow", "list"] => Command::List {
            filter: Box::new(filter),
            queued: false,
        },
        ["workflow", "queue", "list"] => {
            if !limit_set {
                filter.limit = None;
            }
            Command::List {
                filter: Box::new(filter),
                queued: true,
            }
        }
        ["workflow", "get", rest @ ..] => Command::Get(id(rest)?),
        ["workflow", "steps", rest @ ..] => Command::Steps(id(rest)?),
        ["workflow", "cancel", rest @ ..] => Command::Cancel(id(rest)?),
        ["workflow", "resume", rest @ ..] => Command::Resume(id(rest)?),
        ["workflow", "fork", rest @ ..] => Command::Fork {
            id: id(rest)?,
            step: step.unwrap_or(1),
            new_id,
            version,
        },
        ["migrate"] => Command::Migrate,
        ["workflow", "replay", ids @ ..] => {
            if app.is_empty() {
                return Err(
                    "which application? dbos workflow replay -- ./target/release/app".to_owned(),
                );
            }
            let filter = serde_json::json!({
                "statuses": filter.statuses,
                "names": filter.names,
                "workflow_ids": ids,
            });
            Command::Replay {
                filter: filter.to_string(),
                app,
            }
        }
        ["workflow"] | ["workflow", "queue"] => {
            return Err("which workflow command? (see dbos --help)".to_owned())
        }
        ["workflow", "list" | "queue", extra, ..] => {
            return Err(format!("unexpected argument `{extra}`"))
        }
        ["migrate", extra, ..] => return Err(format!("unexpected argument `{extra}`")),
        ["workflow", other, ..] => {
            return Err(format!(
                "unknown workflow command `{other}` (see dbos --help)"
            ))
        }
        [other, ..] => return Err(format!("unknown command `{other}` (see dbos --help)")),
    };
    Ok(Args {
        command,
        sys_db_url,
        db_url,
        schema,
        json,
    })
}

fn number<N: std::str::FromStr>(flag: &str, v: &str) -> Result<N, String> {
    v.parse()
        .map_err(|_| format!("{flag} takes a whole number, not `{v}`"))
}

fn time(flag: &str, v: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("{flag} takes an RFC 3339 time like 2026-11-30T12:00:00Z, not `{v}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Args, String> {
        let argv: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
        parse(&argv)
    }

    #[test]
    fn list_defaults_to_the_ten_newest_and_takes_filters_anywhere() {
        let a = parse_str("workflow list").unwrap();
        assert_eq!(
            a.command,
            Command::List {
                filter: Box::new(WorkflowFilter::new().newest_first().limit(10)),
                queued: false
            }
        );
        let a =
            parse_str("-S error workflow list --limit=0 -n a -n b --json -s sqlite://x").unwrap();
        let Command::List { filter, .. } = a.command else {
            panic!("not a list")
        };
        assert_eq!(filter.statuses, ["ERROR"]);
        assert_eq!(filter.names, ["a", "b"]);
        assert_eq!(filter.limit, None);
        assert!(a.json);
        assert_eq!(a.sys_db_url.as_deref(), Some("sqlite://x"));
    }

    #[test]
    fn fork_takes_its_step_with_dash_capital_s() {
        let a = parse_str("workflow fork wf-1 -S 3 -f wf-2").unwrap();
        assert_eq!(
            a.command,
            Command::Fork {
                id: "wf-1".into(),
                step: 3,
                new_id: Some("wf-2".into()),
                version: None
            }
        );
    }

    #[test]
    fn mistakes_are_one_line_each() {
        for (line, expected) in [
            ("workflow lst", "unknown workflow command `lst`"),
            ("workflow get", "a workflow ID is needed"),
            ("workflow get a b", "unexpected argument `b`"),
            (
                "workflow list --limit ten",
                "--limit takes a whole number, not `ten`",
            ),
            ("workflow list --bogus", "unknown option `--bogus`"),
            ("workflow list -t yesterday", "-t takes an RFC 3339 time"),
            ("workflow list -s", "-s needs a value"),
            ("frobnicate", "unknown command `frobnicate`"),
        ] {
            let err = parse_str(line).unwrap_err();
            assert!(err.starts_with(expected), "{line}: {err}");
            assert!(!err.contains('\n'), "{line}: {err}");
        }
    }
}
