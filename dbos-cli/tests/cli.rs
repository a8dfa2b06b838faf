//! The `dbos` binary end to end, on SQLite and Postgres: each command's output against a
//! golden file in `tests/golden/` (times masked), and every mistake a one-line error with a
//! non-zero exit. `UPDATE_GOLDEN=1 cargo test -p dbos-cli` rewrites the golden files.

use dbos_runtime::prelude::*;
use dbos_runtime::Runtime;
use dbos_tests::{both_backends, within, TestDb};
use std::path::PathBuf;

#[step]
async fn add(x: i64, y: i64) -> Result<i64, Error> {
    Ok(x + y)
}

#[workflow(name = "cli_ok")]
async fn cli_ok(x: i64) -> Result<i64, Error> {
    let y = add(x, 1).await?;
    add(y, y).await
}

#[workflow(name = "cli_fail")]
async fn cli_fail() -> Result<(), Error> {
    Err(Error::InvalidArgument("this workflow always fails".into()))
}

#[workflow(name = "cli_wait")]
async fn cli_wait() -> Result<Option<String>, Error> {
    DBOS::recv("go", Duration::from_secs(60)).await
}

/// Runs `dbos` with `args` against `db`; returns (exit code, stdout, stderr).
async fn dbos(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dbos"))
        .arg("--sys-db-url")
        .arg(&db.url)
        .args(args)
        .env_remove("DBOS_SYSTEM_DATABASE_URL")
        .env_remove("DBOS_DATABASE_URL")
        .output()
        .await
        .expect("run dbos");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Masks what changes from run to run: step times and durations.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut line = line.to_owned();
        // RFC 3339 times of this run (the workflows' creation times are fixed by the test).
        while let Some(i) = line.find("T").and_then(|_| find_time(&line)) {
            line.replace_range(i..i + 24, "<time>                  ");
        }
        for key in [
            "\"created_at\": 17",
            "\"started_at_epoch_ms\": ",
            "\"completed_at_epoch_ms\": ",
            "\"updated_at\": ",
            "\"dequeued_at\": ",
            "\"completed_at\": ",
        ] {
            if let Some(i) = line.find(key) {
                let start = i + key.len();
                let end = line[start..]
                    .find([',', ' '])
                    .map_or(line.len(), |e| start + e);
                if line[start..end].chars().all(|c| c.is_ascii_digit()) && end > start {
                    line.replace_range(start..end, "<ms>");
                }
            }
        }
        if !text.starts_with(['[', '{']) {
            // Table columns: widths follow the masked values, so compare cells, not padding;
            // a step's duration in milliseconds is masked too.
            let cells: Vec<&str> = line
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            let masked: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let after_time = i > 0 && cells[i - 1].starts_with("<time>");
                    if after_time && c.chars().all(|ch| ch.is_ascii_digit()) {
                        "<ms>".to_owned()
                    } else {
                        (*c).to_owned()
                    }
                })
                .collect();
            line = masked.join("  ");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The byte offset of an RFC 3339 time with milliseconds not from 2023 (the fixed creation times).
fn find_time(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    (0..b.len().saturating_sub(23)).find(|&i| {
        let s = &line[i..i + 24];
        s.as_bytes()[4] == b'-'
            && s.as_bytes()[10] == b'T'
            && s.ends_with('Z')
            && s.as_bytes()[19] == b'.'
            && s[..4].chars().all(|c| c.is_ascii_digit())
            && !s.starts_with("2023")
    })
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

async fn seed(db: &TestDb) {
    let rt = within(
        "launch",
        Runtime::launch(
            db.config("cli-app")
                .with_executor_id("cli")
                .with_version("1.0"),
        ),
    )
    .await
    .expect("launch");
    for (i, x) in [1, 2, 3].into_iter().enumerate() {
        let h = rt
            .start_workflow(cli_ok(x).with_id(format!("cli-ok-{i}")))
            .await
            .expect("start");
        within("ok", h.get_result()).await.expect("ok");
    }
    let h = rt
        .start_workflow(cli_fail().with_id("cli-fail"))
        .await
        .expect("start");
    assert!(within("fail", h.get_result()).await.is_err());
    rt.start_workflow(cli_wait().with_id("cli-wait"))
        .await
        .expect("start");
    rt.shutdown().await;
    // Fixed creation times, so the listing's order and times are the same on every run.
    let x = db.inspect().await;
    let s = db.sys();
    for (i, id) in ["cli-ok-0", "cli-ok-1", "cli-ok-2", "cli-fail", "cli-wait"]
        .iter()
        .enumerate()
    {
        x.exec(&format!(
            "UPDATE {s}workflow_status SET created_at = {} WHERE workflow_uuid = '{id}'",
            1_700_000_000_000_i64 + i as i64 * 60_000
        ))
        .await;
    }
}

both_backends! {
    async fn every_command_prints_what_the_golden_file_says(db: TestDb) {
        seed(&db).await;
        let cases: &[(&str, &[&str])] = &[
            ("list.txt", &["workflow", "list"]),
            ("list_errors_oldest_first.txt", &["workflow", "list", "-S", "error", "--oldest-first"]),
            ("list_payloads.txt", &["workflow", "list", "-n", "cli_ok", "--payloads", "-l", "2"]),
            ("get.txt", &["workflow", "get", "cli-fail"]),
            ("steps.txt", &["workflow", "steps", "cli-ok-1"]),
            ("steps.json", &["--json", "workflow", "steps", "cli-ok-1"]),
            ("cancel.txt", &["workflow", "cancel", "cli-wait"]),
            ("cancel_finished.txt", &["workflow", "cancel", "cli-ok-0"]),
            ("resume.txt", &["workflow", "resume", "cli-wait"]),
            ("resume_success.json", &["workflow", "resume", "cli-ok-0", "--json"]),
            ("queue_list.txt", &["workflow", "queue", "list"]),
            ("fork.txt", &["workflow", "fork", "cli-ok-2", "-S", "2", "-f", "cli-fork"]),
            ("get_fork.json", &["--json", "workflow", "get", "cli-fork"]),
        ];
        for (file, args) in cases {
            let (code, out, err) = dbos(&db, args).await;
            assert_eq!((code, err.as_str()), (0, ""), "dbos {args:?}");
            golden(file, &normalize(&out));
        }
        let x = db.inspect().await;
        let s = db.sys();
        let status = x.rows(&format!("SELECT status, queue_name FROM {s}workflow_status WHERE workflow_uuid = 'cli-wait'")).await;
        assert_eq!(status[0], vec![Some("ENQUEUED".to_owned()), Some("_dbos_internal_queue".to_owned())]);
        let copied = x.scalar(&format!("SELECT COUNT(*) FROM {s}operation_outputs WHERE workflow_uuid = 'cli-fork'")).await;
        assert_eq!(copied, 1, "the fork from step 2 copied step 1");

        // A database that does not exist is an error, not a new empty one.
        let missing = match db.backend {
            dbos_tests::Backend::Sqlite => db.url.replace("app.sqlite", "missing.sqlite"),
            dbos_tests::Backend::Postgres => format!("{}_missing", db.url),
        };
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dbos"))
            .args(["--sys-db-url", &missing, "workflow", "list"])
            .output()
            .await
            .expect("run dbos");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("does not exist") || err.contains("no SQLite database"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");

        // Mistakes: one line on stderr, a non-zero exit, nothing on stdout.
        for (args, code, message) in [
            (&["workflow", "get", "nope"][..], 1, "dbos: workflow `nope` does not exist"),
            (&["workflow", "steps", "nope"][..], 1, "dbos: workflow `nope` does not exist"),
            (&["workflow", "cancel", "nope"][..], 1, "dbos: workflow `nope` does not exist"),
            (&["workflow", "fork", "cli-ok-2", "-S", "9"][..], 1, "dbos: invalid argument: cannot fork workflow `cli-ok-2` from step 9"),
            (&["workflow", "list", "-S", "RUNNING"][..], 1, "dbos: invalid argument: unknown workflow status `RUNNING`"),
            (&["workflow", "list", "--limit", "-3"][..], 2, "dbos: --limit takes a whole number"),
            (&["workflow", "frob"][..], 2, "dbos: unknown workflow command `frob`"),
        ] {
            let (got, out, err) = dbos(&db, args).await;
            assert_eq!(got, code, "dbos {args:?}: {err}");
            assert!(err.starts_with(message), "dbos {args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "dbos {args:?}: {err}");
            assert!(out.is_empty(), "dbos {args:?}: {out}");
        }
    }
}
