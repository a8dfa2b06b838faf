//! Streams (issue 16, part 1): `DBOS::write_stream`/`close_stream` from a workflow are recorded
//! operations (a resumed workflow never writes a value twice), and `DBOS::read_stream` yields
//! every value in order, live while the writer runs and all at once for a late reader, ending
//! at the close or when the writer stops; across processes, and after a SIGKILL of the writer.
//! On SQLite and Postgres.

use dbos_runtime::prelude::*;
use dbos_runtime::{Runtime, StreamExt};
use dbos_tests::{both_backends, eventually, probe, within, TestDb};
use std::future::IntoFuture;

#[path = "../src/stream_writer.rs"]
mod stream_writer;

/// The longest a wait may take: ten thousand recorded writes take about 20 s in a debug build.
const T: Duration = Duration::from_secs(100);

fn config(db: &TestDb) -> DbosConfig {
    db.config("stream-tests")
        .with_version("stream-1")
        .with_executor_id("stream-local")
        .with_shutdown_timeout(Duration::ZERO)
}

async fn launch(db: &TestDb) -> Runtime {
    within("launch", Runtime::launch(config(db)))
        .await
        .expect("launch")
}

/// Waits at gate `key`, writes `0..n` to `items`, and closes it.
#[workflow]
async fn producer(key: String, n: u32) -> Result<u32, Error> {
    probe::pass(&key).await;
    for i in 0..n {
        DBOS::write_stream("items", &i).await?;
    }
    DBOS::close_stream("items").await?;
    Ok(n)
}

/// Reads a whole stream of `u32`s.
async fn read_all(rt: &Runtime, id: &str, key: &str) -> Vec<u32> {
    let read = rt.read_stream::<u32>(id, key).collect::<Vec<_>>();
    let values: Vec<Result<u32, Error>> = tokio::time::timeout(T, read)
        .await
        .expect("read the stream in time");
    values.into_iter().map(|v| v.expect("a value")).collect()
}

both_backends! {
    async fn ten_thousand_values_reach_a_live_and_a_late_reader_in_order(db: TestDb) {
        const N: u32 = 10_000;
        let key = format!("{}/10k", db.url);
        let rt = launch(&db).await;
        let h = rt.start_workflow(producer(key.clone(), N).with_id("p10k")).await.expect("start");
        // The live reader starts before the first value is written.
        let live = tokio::spawn({
            let rt = rt.clone();
            async move { read_all(&rt, "p10k", "items").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        probe::open(&key);
        let produced = tokio::time::timeout(T, h.get_result()).await.expect("the producer finishes in time");
        assert_eq!(produced.expect("produced"), N);
        let live = tokio::time::timeout(T, live).await.expect("the live reader ends").expect("live reader");
        assert_eq!(live, (0..N).collect::<Vec<_>>(), "the live reader saw every value once, in order");
        let late = read_all(&rt, "p10k", "items").await;
        assert_eq!(late.len(), N as usize);
        assert!(late.iter().copied().eq(0..N), "the late reader too");

        let x = db.inspect().await;
        let s = db.sys();
        let rows = x.scalar(&format!("SELECT COUNT(*) FROM {s}streams WHERE workflow_uuid = 'p10k' AND key = 'items'")).await;
        assert_eq!(rows, i64::from(N) + 1, "N values and the close");
        let markers = x.rows(&format!(
            "SELECT function_name, COUNT(*) FROM {s}operation_outputs WHERE workflow_uuid = 'p10k' GROUP BY function_name ORDER BY function_name"
        )).await;
        let markers: Vec<(String, String)> = markers.into_iter().map(|r| (r[0].clone().unwrap_or_default(), r[1].clone().unwrap_or_default())).collect();
        assert_eq!(markers, [("DBOS.closeStream".to_owned(), "1".to_owned()), ("DBOS.writeStream".to_owned(), N.to_string())]);
        rt.shutdown().await;
    }
}

/// Writes three values, is cut off at the gate, then writes two more and returns without
/// closing: a reader ends once it stops.
#[workflow]
async fn unclosed(key: String) -> Result<(), Error> {
    for i in 0..3_u32 {
        DBOS::write_stream("s", &i).await?;
    }
    probe::bump(&format!("{key}/gate"));
    probe::pass(&key).await;
    for i in 3..5_u32 {
        DBOS::write_stream("s", &i).await?;
    }
    Ok(())
}

both_backends! {
    async fn a_resumed_writer_never_writes_a_value_twice_and_an_unclosed_stream_ends_with_its_writer(db: TestDb) {
        let key = format!("{}/unclosed", db.url);
        let rt = launch(&db).await;
        rt.start_workflow(unclosed(key.clone()).with_id("unclosed")).await.expect("start");
        eventually(T, "three values written", || async { probe::count(&format!("{key}/gate")) == 1 }).await;
        rt.shutdown().await;

        probe::open(&key);
        let rt2 = launch(&db).await;
        let started = std::time::Instant::now();
        let values = read_all(&rt2, "unclosed", "s").await;
        assert_eq!(values, [0, 1, 2, 3, 4], "the recovered run replayed the first three writes and added two");
        assert!(started.elapsed() < Duration::from_secs(10), "the reader ended soon after the writer finished");
        let x = db.inspect().await;
        let offsets = x.rows(&format!(
            "SELECT \"offset\", value, function_id FROM {}streams WHERE workflow_uuid = 'unclosed' ORDER BY \"offset\"", db.sys()
        )).await;
        let got: Vec<(String, String, String)> = offsets.into_iter().map(|r| (r[0].clone().unwrap_or_default(), r[1].clone().unwrap_or_default(), r[2].clone().unwrap_or_default())).collect();
        let want: Vec<(String, String, String)> = (0..5).map(|i| (i.to_string(), i.to_string(), (i + 1).to_string())).collect();
        assert_eq!(got, want, "dense offsets, each value once, under the write's own function ID");
        rt2.shutdown().await;
    }
}

#[step]
async fn stepped_writes() -> Result<(), Error> {
    DBOS::write_stream("from-step", "a").await?;
    DBOS::write_stream("from-step", "b").await?;
    Ok(())
}

#[workflow]
async fn writes_from_a_step() -> Result<(), Error> {
    stepped_writes().await?;
    DBOS::close_stream("from-step").await
}

both_backends! {
    async fn writes_from_a_step_use_the_steps_position_and_bad_reads_are_typed_errors(db: TestDb) {
        let rt = launch(&db).await;
        within("from a step", rt.scope(writes_from_a_step().with_id("stepped").into_future())).await.expect("ran");
        let values: Vec<String> = within("read", rt.read_stream::<String>("stepped", "from-step").collect::<Vec<_>>())
            .await
            .into_iter()
            .map(|v| v.expect("a string"))
            .collect();
        assert_eq!(values, ["a", "b"]);
        let x = db.inspect().await;
        let ids = x.rows(&format!("SELECT function_id FROM {}streams WHERE workflow_uuid = 'stepped' ORDER BY \"offset\"", db.sys())).await;
        let ids: Vec<String> = ids.into_iter().map(|r| r[0].clone().unwrap_or_default()).collect();
        assert_eq!(ids, ["1", "1", "2"], "both writes under the step's position, the close at the next");

        // Outside a workflow: a typed error, nothing written.
        let outside = rt.scope(DBOS::write_stream("k", &1)).await;
        assert!(matches!(outside, Err(Error::NotInWorkflow(_))), "{outside:?}");
        // An unknown workflow: the stream's only item is the error.
        let unknown: Vec<Result<u32, Error>> = within("unknown", rt.read_stream::<u32>("no-such-workflow", "k").collect::<Vec<_>>()).await;
        assert!(matches!(unknown.as_slice(), [Err(Error::NonExistentWorkflow(_))]), "{unknown:?}");
        // A value that is not the reader's type: an error, then the end.
        let wrong: Vec<Result<u32, Error>> = within("wrong type", rt.read_stream::<u32>("stepped", "from-step").collect::<Vec<_>>()).await;
        assert_eq!(wrong.len(), 1, "{wrong:?}");
        assert!(matches!(wrong[0], Err(Error::Serialization { .. })), "{wrong:?}");
        rt.shutdown().await;
    }
}

both_backends! {
    async fn a_writer_sigkilled_mid_stream_finishes_it_without_losing_or_repeating_a_value(db: TestDb) {
        const N: u32 = 400;
        let id = format!("killed-writer-{:?}", db.backend);
        // The schema first, so the worker does not race a second creator.
        launch(&db).await.shutdown().await;
        let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_worker_streams"))
            .env("DB_URL", &db.url)
            .env("WORKFLOW_ID", &id)
            .env("N", N.to_string())
            .env("PAUSE_MS", "2")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the worker");
        // A reader in this process follows the worker's writes live.
        let reader = launch(&db).await;
        let x = db.inspect().await;
        let s = db.sys();
        eventually(T, "the worker started writing", || async {
            x.scalar(&format!("SELECT COUNT(*) FROM {s}workflow_status WHERE workflow_uuid = '{id}'")).await == 1
        })
        .await;
        let live = tokio::spawn({
            let reader = reader.clone();
            let id = id.clone();
            async move { read_all(&reader, &id, "numbers").await }
        });
        eventually(T, "a hundred values written", || async {
            x.scalar(&format!("SELECT COUNT(*) FROM {s}streams WHERE workflow_uuid = '{id}'")).await >= 100
        })
        .await;
        worker.start_kill().expect("SIGKILL");
        worker.wait().await.expect("reaped");
        let written = x.scalar(&format!("SELECT COUNT(*) FROM {s}streams WHERE workflow_uuid = '{id}'")).await;
        assert!(written < i64::from(N), "killed mid-stream ({written} of {N} written)");

        // The writer's executor comes back here and finishes the workflow.
        let config = db.config("stream-writer").with_version("stream-writer-1").with_executor_id("stream-writer");
        let rt = within("relaunch", Runtime::launch(config)).await.expect("relaunch");
        let out = within("recovered writer", rt.scope(async {
            DBOS::retrieve_workflow::<u32, Error>(&id).await.expect("retrieve").get_result().await
        })).await;
        assert_eq!(out.expect("recovered"), N);
        let live = within("the live reader", live).await.expect("reader");
        assert_eq!(live, (0..N).collect::<Vec<_>>(), "the reader saw each value once, across the kill");
        let late = read_all(&rt, &id, "numbers").await;
        assert!(late.iter().copied().eq(0..N), "no value lost or repeated in the table");
        let values = x.scalar(&format!(
            "SELECT COUNT(DISTINCT value) FROM {s}streams WHERE workflow_uuid = '{id}' AND key = 'numbers'"
        )).await;
        assert_eq!(values, i64::from(N) + 1, "N distinct values and one close");
        rt.shutdown().await;
        reader.shutdown().await;
    }
}

/// Writes 0 and 1, waits at the gate, and ends without closing.
#[workflow]
async fn gappy(key: String) -> Result<(), Error> {
    DBOS::write_stream("g", &0_u32).await?;
    DBOS::write_stream("g", &1_u32).await?;
    probe::pass(&key).await;
    Ok(())
}

both_backends! {
    async fn a_lasting_gap_in_the_offsets_is_skipped_not_a_dead_end(db: TestDb) {
        let key = format!("{}/gap", db.url);
        let rt = launch(&db).await;
        rt.start_workflow(gappy(key.clone()).with_id("gappy")).await.expect("start");
        let x = db.inspect().await;
        let s = db.sys();
        eventually(T, "two values written", || async {
            x.scalar(&format!("SELECT COUNT(*) FROM {s}streams WHERE workflow_uuid = 'gappy'")).await == 2
        })
        .await;
        // A row past a gap, as a partial fork copy or interleaved writers can leave.
        x.exec(&format!(
            "INSERT INTO {s}streams (workflow_uuid, key, value, \"offset\", function_id, serialization) \
             VALUES ('gappy', 'g', '5', 5, 0, 'portable_json')"
        ))
        .await;
        let reader = tokio::spawn({
            let rt = rt.clone();
            async move { read_all(&rt, "gappy", "g").await }
        });
        // While the writer still runs, the reader gets past the gap after a re-check.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        probe::open(&key);
        let values = tokio::time::timeout(T, reader).await.expect("the reader ends").expect("reader");
        assert_eq!(values, [0, 1, 5]);
        rt.shutdown().await;
    }
}

/// Eight writes to one key at once from the workflow body: they race for offsets.
#[workflow]
async fn racing_writes() -> Result<(), Error> {
    let w = |i: &'static u32| DBOS::write_stream("r", i);
    static V: [u32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
    let (a, b, c, d) = tokio::join!(w(&V[0]), w(&V[1]), w(&V[2]), w(&V[3]));
    let (e, f, g, h) = tokio::join!(w(&V[4]), w(&V[5]), w(&V[6]), w(&V[7]));
    for r in [a, b, c, d, e, f, g, h] {
        r?;
    }
    DBOS::close_stream("r").await
}

both_backends! {
    async fn concurrent_writes_to_one_key_get_dense_offsets_each_once(db: TestDb) {
        let rt = launch(&db).await;
        within("racing writes", rt.scope(racing_writes().with_id("racing").into_future()))
            .await
            .expect("every racing write lands (a lost offset race is retried)");
        let mut values = read_all(&rt, "racing", "r").await;
        values.sort_unstable();
        assert_eq!(values, (0..8).collect::<Vec<_>>());
        let x = db.inspect().await;
        let offsets = x
            .rows(&format!("SELECT \"offset\" FROM {}streams WHERE workflow_uuid = 'racing' ORDER BY \"offset\"", db.sys()))
            .await;
        let offsets: Vec<String> = offsets.into_iter().map(|r| r[0].clone().unwrap_or_default()).collect();
        assert_eq!(offsets, (0..9).map(|i| i.to_string()).collect::<Vec<_>>(), "dense offsets: 8 values and the close");
        rt.shutdown().await;
    }
}
