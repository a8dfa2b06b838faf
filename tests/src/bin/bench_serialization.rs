//! Serialization benchmark (issue 15, part 4): portable JSON against bincode, for a small value
//! and for a large one (about 100 KB), first through `Format::encode`/`decode` (the runtime's
//! own code path, base64 included), then end to end: workflows whose argument and output are
//! that value, on SQLite, with the bytes the rows hold.
//!
//! `cargo run --release -p dbos-tests --bin bench_serialization -- [workflows per case]`

use dbos_runtime::prelude::*;
use dbos_runtime::{Format, Runtime};
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reading {
    sensor: u32,
    at_ms: i64,
    value: f64,
    ok: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Report {
    site: String,
    readings: Vec<Reading>,
    notes: Vec<String>,
}

fn report(readings: usize) -> Report {
    Report {
        site: "plant-7".into(),
        readings: (0..readings)
            .map(|i| Reading {
                sensor: (i % 97) as u32,
                at_ms: 1_700_000_000_000 + i as i64 * 250,
                value: (i as f64).sin() * 1000.0,
                ok: i % 13 != 0,
            })
            .collect(),
        notes: (0..readings / 50).map(|i| format!("note {i}")).collect(),
    }
}

#[workflow]
async fn echo_json(r: Report) -> Result<Report, Error> {
    Ok(r)
}

#[workflow(serialization = "bincode")]
async fn echo_bincode(r: Report) -> Result<Report, Error> {
    Ok(r)
}

fn codec(label: &str, value: &Report, rounds: u32) -> Result<(), dbos_runtime::Error> {
    for format in [Format::Json, Format::Bincode] {
        let text = format.encode(value)?;
        let start = Instant::now();
        for _ in 0..rounds {
            let text = format.encode(value)?;
            let back: Report = format.decode(&text)?;
            std::hint::black_box(back);
        }
        let per = start.elapsed().as_secs_f64() / f64::from(rounds) * 1e6;
        println!(
            "codec {label:<6} {:<8} stored {:>8} bytes  encode+decode {per:>9.1} µs",
            format.tag(),
            text.len()
        );
    }
    Ok(())
}

async fn end_to_end(label: &str, value: &Report, n: u32) -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("dbos-bench-ser-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for format in [Format::Json, Format::Bincode] {
        let path = dir.join(format!("{label}-{}.sqlite", format.tag()));
        let _ = std::fs::remove_file(&path);
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let rt = Runtime::launch(DbosConfig::new("bench-ser").with_database_url(&url)).await?;
        let run = |v: Report| async {
            match format {
                Format::Bincode => rt.scope(echo_bincode(v).into_future()).await,
                _ => rt.scope(echo_json(v).into_future()).await,
            }
        };
        run(value.clone()).await?;
        let start = Instant::now();
        for _ in 0..n {
            let back = run(value.clone()).await?;
            if back.readings.len() != value.readings.len() {
                return Err("the echoed report lost readings".into());
            }
        }
        let per = start.elapsed().as_secs_f64() / f64::from(n) * 1e3;
        let pool = sqlx::SqlitePool::connect(&url).await?;
        let stored: i64 = sqlx::query_scalar(
            "SELECT CAST(AVG(LENGTH(inputs) + LENGTH(output)) AS INTEGER) FROM workflow_status",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        rt.shutdown().await;
        println!(
            "workflow {label:<6} {:<8} stored {stored:>8} bytes/row (inputs+output)  {per:>7.2} ms/workflow",
            format.tag()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

use std::future::IntoFuture;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let small = report(2);
    let large = report(1500);
    println!(
        "small: {} readings; large: {} readings ({} bytes as JSON)",
        small.readings.len(),
        large.readings.len(),
        Format::Json.encode(&large)?.len()
    );
    codec("small", &small, 20_000)?;
    codec("large", &large, 200)?;
    end_to_end("small", &small, n).await?;
    end_to_end("large", &large, n).await?;
    Ok(())
}
