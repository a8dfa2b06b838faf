//! `dbos workflow replay -- APP` (issue 14, part 3): the CLI runs a build of the application in
//! replay-check mode against a database where a workflow is in flight. The same build passes;
//! a build whose workflow runs its two steps in the other order is named, with the step, and
//! the CLI exits 1. Nothing is written. On SQLite and Postgres.

use dbos_tests::{both_backends, TestDb};
use std::path::PathBuf;
use std::process::Command;

/// `replay_app`, the example next to the `dbos` binary, brought up to date first (a run that
/// selects only this test does not build examples; a no-op when it is current).
fn app() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let dbos = PathBuf::from(env!("CARGO_BIN_EXE_dbos"));
    let dir = dbos.parent().expect("the binary's directory");
    let exe = dir.join("examples").join("replay_app");
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "dbos-cli", "--example", "replay_app"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the replay_app example failed");
    });
    assert!(exe.exists(), "{} is not built", exe.display());
    exe
}

fn replay(db: &TestDb, code: &str) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dbos"))
        .args(["workflow", "replay", "--"])
        .arg(app())
        .env("DB_URL", &db.url)
        .env("CODE", code)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run dbos workflow replay");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

both_backends! {
    async fn replay_names_a_workflow_the_new_build_would_run_differently(db: TestDb) {
        let recorded = Command::new(app())
            .env("DB_URL", &db.url)
            .env("MODE", "record")
            .env("CODE", "1")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run the app");
        assert!(recorded.status.success(), "{}", String::from_utf8_lossy(&recorded.stderr));
        let x = db.inspect().await;
        let rows = format!("SELECT COUNT(*) FROM {}operation_outputs WHERE workflow_uuid = 'rp-1'", db.sys());
        let before = x.scalar(&rows).await;

        let (code, out) = replay(&db, "1");
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("ok        rp-1 (replay_app::order)"), "{out}");
        assert!(out.contains("1 workflows checked, 0 would not replay"), "{out}");

        let (code, out) = replay(&db, "2");
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains("DIVERGED  rp-1 (replay_app::order): at step 1 the code now runs replay_app::charge where replay_app::reserve was recorded"),
            "{out}"
        );
        assert_eq!(x.scalar(&rows).await, before, "the check wrote records");
        // An app that exits before it launches is not a pass.
        let early = Command::new(env!("CARGO_BIN_EXE_dbos"))
            .args(["workflow", "replay", "--"])
            .arg(app())
            .env("DB_URL", &db.url)
            .env("MODE", "exit-early")
            .output()
            .expect("run dbos workflow replay");
        assert_eq!(early.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&early.stderr).contains("did not run the replay check"));
        let status = x.rows(&format!("SELECT status FROM {}workflow_status WHERE workflow_uuid = 'rp-1'", db.sys())).await;
        assert_eq!(status[0][0].as_deref(), Some("PENDING"));
    }
}

#[test]
fn replay_needs_an_application() {
    let out = Command::new(env!("CARGO_BIN_EXE_dbos"))
        .args(["workflow", "replay"])
        .output()
        .expect("run dbos");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("which application?"));
}
