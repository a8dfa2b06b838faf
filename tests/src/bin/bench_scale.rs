//! Scale: the same operations on an empty system database and on one that holds N finished
//! workflows (default 1,000,000, each with one step row, half of them once on a queue), side by
//! side: launch to serving, a workflow started and awaited, an enqueued workflow dispatched and
//! awaited, and three listings (the newest 20, the newest 20 errors, an ID prefix).
//!
//! `cargo run --release -p dbos-tests --bin bench_scale -- [N] [sqlite|postgres|both]`
//! (Postgres: `DBOS_TEST_POSTGRES_URL`, database `bench_scale`, dropped first). The rows are
//! written with one SQL statement per table, then `ANALYZE`d, as a long-running database's
//! statistics would be.

use dbos_runtime::prelude::*;
use dbos_runtime::{Runtime, WorkflowFilter};
use dbos_tests::{Backend, TestDb};
use std::future::IntoFuture;
use std::time::Instant;

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[queue]
static SCALE: Queue = Queue::new("scale");

#[step]
async fn noop(i: u32) -> Result<u32, Error> {
    Ok(i)
}

#[workflow]
async fn one_step(i: u32) -> Result<u32, Error> {
    noop(i).await
}

/// Median of `runs` timings of `op`, in milliseconds.
async fn median<F, Fut>(runs: usize, mut op: F) -> Res<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Res<()>>,
{
    let mut ms = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        op(i).await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(ms[ms.len() / 2])
}

fn cfg(url: &str) -> DbosConfig {
    DbosConfig::new("bench-scale")
        .with_database_url(url)
        .with_executor_id("scale")
        .with_version("scale-1")
}

/// The measured operations, in milliseconds (medians).
async fn measure(url: &str, round: &str) -> Res<Vec<(&'static str, f64)>> {
    let mut out = Vec::new();
    let launch = median(3, |_| async {
        let rt = Runtime::launch(cfg(url)).await?;
        rt.shutdown().await;
        Ok(())
    })
    .await?;
    out.push(("launch to serving", launch));
    let rt = Runtime::launch(cfg(url)).await?;
    let run = median(200, |i| {
        let rt = rt.clone();
        async move {
            let id = format!("{round}-run-{i}");
            rt.scope(one_step(i as u32).with_id(id.as_str()).into_future())
                .await?;
            Ok(())
        }
    })
    .await?;
    out.push(("workflow started and awaited", run));
    let queued = median(200, |i| {
        let rt = rt.clone();
        async move {
            let id = format!("{round}-queued-{i}");
            let h = rt
                .enqueue(&SCALE, one_step(i as u32).with_id(id.as_str()))
                .await?;
            rt.scope(h.get_result()).await?;
            Ok(())
        }
    })
    .await?;
    out.push(("enqueued, dispatched and awaited", queued));
    let lists: [(&'static str, WorkflowFilter); 3] = [
        (
            "list: newest 20",
            WorkflowFilter::new().newest_first().limit(20),
        ),
        (
            "list: newest 20 errors",
            WorkflowFilter::new()
                .status("ERROR")
                .newest_first()
                .limit(20),
        ),
        ("list: ID prefix, 20", {
            let mut f = WorkflowFilter::new().limit(20);
            f.id_prefix = Some(format!("{round}-run-1"));
            f
        }),
    ];
    for (label, filter) in lists {
        let ms = median(50, |_| {
            let (rt, filter) = (rt.clone(), filter.clone());
            async move {
                rt.list_workflows(&filter).await?;
                Ok(())
            }
        })
        .await?;
        out.push((label, ms));
    }
    rt.shutdown().await;
    Ok(out)
}

/// Writes `n` finished workflows (and a step row each) straight into the system tables.
async fn fill(url: &str, n: u64) -> Res<f64> {
    let t = Instant::now();
    let now_ms = 1_700_000_000_000_i64;
    let status_cols = "workflow_uuid, status, name, executor_id, application_version, \
        application_name, created_at, updated_at, completed_at, started_at_epoch_ms, output, \
        serialization, inputs, queue_name";
    let status_vals = format!(
        "'old-' || i, CASE WHEN i % 50 = 0 THEN 'ERROR' ELSE 'SUCCESS' END, 'one_step', 'old', \
         'scale-0', 'bench-scale', {now_ms} + i, {now_ms} + i, {now_ms} + i + 5, {now_ms} + i + 1, \
         '1', 'portable_json', '{{\"namedArgs\":{{}},\"positionalArgs\":[1]}}', \
         CASE WHEN i % 2 = 0 THEN 'scale' END"
    );
    let step_cols = "workflow_uuid, function_id, function_name, output, serialization, \
        started_at_epoch_ms, completed_at_epoch_ms";
    let step_vals =
        format!("'old-' || i, 1, 'noop', '1', 'portable_json', {now_ms} + i, {now_ms} + i + 1");
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::raw_sql(&format!(
            "INSERT INTO dbos.workflow_status ({status_cols}) \
             SELECT {status_vals} FROM generate_series(1, {n}) AS i; \
             INSERT INTO dbos.operation_outputs ({step_cols}) \
             SELECT {step_vals} FROM generate_series(1, {n}) AS i;"
        ))
        .execute(&pool)
        .await?;
        for table in ["workflow_status", "operation_outputs"] {
            sqlx::raw_sql(&format!("VACUUM ANALYZE dbos.{table}"))
                .execute(&pool)
                .await?;
        }
        pool.close().await;
    } else {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(url).await?;
        let series = format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})"
        );
        sqlx::raw_sql(&format!(
            "INSERT INTO workflow_status ({status_cols}) {series} SELECT {status_vals} FROM s; \
             INSERT INTO operation_outputs ({step_cols}) {series} SELECT {step_vals} FROM s; \
             ANALYZE;"
        ))
        .execute(&mut c)
        .await?;
        c.close().await?;
    }
    Ok(t.elapsed().as_secs_f64())
}

async fn run(url: &str, n: u64) -> Res<()> {
    let empty = measure(url, "empty").await?;
    let filled_in = fill(url, n).await?;
    let full = measure(url, "full").await?;
    let backend = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    println!("{backend}: {n} finished workflows written in {filled_in:.1} s");
    println!(
        "{:<36} {:>10} {:>14} {:>7}",
        "median", "empty ms", "with rows ms", "ratio"
    );
    for ((label, a), (_, b)) in empty.iter().zip(&full) {
        println!("{label:<36} {a:>10.2} {b:>14.2} {:>7.2}", b / a);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let which = args.get(2).cloned().unwrap_or_else(|| "both".into());
    for (backend, label) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
        if which != "both" && which != label {
            continue;
        }
        let db = TestDb::fresh(backend, "bench_scale").await;
        let result = run(&db.url, n).await;
        if let Some(dir) = &db.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        result?;
    }
    Ok(())
}
