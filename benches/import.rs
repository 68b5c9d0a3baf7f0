//! I1, the bulk import: `association-service import` of a CSV file of
//! `I1_ROWS` associations (1,000,000 by default; 10,000,000 for issue 31's
//! row) into an empty portal of the release server on PostgreSQL at
//! production durability, the file sent a tenth at a time (ten runs of
//! the command, each timed), beside PostgreSQL's own `COPY … FROM STDIN`
//! of the rows the import left in the same three tables (associations,
//! counters, feed) into a fresh migrated database. `I1_ROUNDS` rounds
//! (default 3), each import then its baseline; the ratio is the median of
//! the rounds' ratios, with the spread; "last ÷ first" is the time of the
//! file's last tenth over its first.
//!
//! Run: `cargo bench --bench import` (`I1_ROWS=100000` for a quick pass).
#[path = "../tests/common/mod.rs"]
mod common;

use common::{env_u64, median};

use std::time::{Duration, Instant};

use common::ServerProcess;
use sqlx::PgPool;
use tokio_stream::StreamExt;

const PORTAL: i64 = 4_001;
const TENTHS: usize = 10;
/// The tables the import writes, copied by the baseline.
const TABLES: [&str; 3] = ["associations", "association_counts", "association_changes"];
const LABELS: [&str; 3] = ["Billing contact", "Decision maker", "Former employee"];

/// The file's tenths: contacts with five companies each, ids written as
/// strings, one row in five labeled (three labels).
fn write_tenths(dir: &std::path::Path, rows: u64) -> Vec<std::path::PathBuf> {
    let per_tenth = rows / TENTHS as u64;
    (0..TENTHS as u64)
        .map(|tenth| {
            let path = dir.join(format!("tenth-{tenth}.csv"));
            let mut text =
                String::from("from_object_type,from_object_id,to_object_type,to_object_id,label\n");
            for n in tenth * per_tenth..(tenth + 1) * per_tenth {
                let label = match n % 5 {
                    0 => LABELS[(n / 5 % 3) as usize],
                    _ => "",
                };
                text.push_str(&format!(
                    "contacts,\"{}\",companies,\"{}\",{label}\n",
                    n / 5 + 1,
                    n + 1
                ));
            }
            std::fs::write(&path, text).expect("write a tenth of the file");
            path
        })
        .collect()
}

/// Runs `import` of one file; its wall time.
async fn import(server: &ServerProcess, file: &std::path::Path) -> Duration {
    let started = Instant::now();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_association-service"))
        .args(["import", file.to_str().expect("a UTF-8 path")])
        .args(["--portal", &PORTAL.to_string(), "--create-labels"])
        .args(["--server", &server.grpc])
        .output()
        .await
        .expect("run import");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    took
}

/// One round: the import's tenths (their times) and rows stored, then the
/// baseline's `COPY` of the same rows (its time).
async fn round(admin: &str, tenths: &[std::path::PathBuf]) -> (Vec<Duration>, i64, Duration) {
    let url = common::fresh_database_on(admin).await;
    let server =
        ServerProcess::start(&url, &[("ASSOC__SERVER__CALLS_PER_SECOND_PER_PORTAL", "0")]).await;
    let mut times = Vec::new();
    for file in tenths {
        times.push(import(&server, file).await);
    }
    drop(server);
    let source = pool(&url).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM associations")
        .fetch_one(&source)
        .await
        .expect("count");
    let mut copied = Vec::new();
    for table in TABLES {
        let mut conn = source.acquire().await.expect("a connection");
        let mut out = conn
            .copy_out_raw(&format!("COPY {table} TO STDOUT"))
            .await
            .expect("copy out");
        let mut bytes = Vec::new();
        while let Some(chunk) = out.next().await {
            bytes.extend_from_slice(&chunk.expect("a chunk"));
        }
        copied.push(bytes);
    }
    // The same schema, empty: a server migrates it and leaves.
    let target_url = common::fresh_database_on(admin).await;
    drop(ServerProcess::start(&target_url, &[]).await);
    let target = pool(&target_url).await;
    let started = Instant::now();
    let mut tx = target.begin().await.expect("begin");
    for (table, bytes) in TABLES.iter().zip(&copied) {
        let mut copy = tx
            .copy_in_raw(&format!("COPY {table} FROM STDIN"))
            .await
            .expect("copy in");
        copy.send(bytes.as_slice()).await.expect("send");
        copy.finish().await.expect("finish");
    }
    tx.commit().await.expect("commit");
    (times, stored, started.elapsed())
}

async fn pool(url: &str) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect")
}

fn spread(values: &[f64]) -> (f64, f64) {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    (low, high)
}

#[tokio::main]
async fn main() {
    let rows = env_u64("I1_ROWS", 1_000_000);
    let rounds = env_u64("I1_ROUNDS", 3) as usize;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tenths = write_tenths(dir.path(), rows);
    let admin = common::durable_postgres_admin_url();
    let (mut service, mut baseline, mut ratios, mut growth) = (vec![], vec![], vec![], vec![]);
    for n in 1..=rounds {
        let (times, stored, copy) = round(&admin, &tenths).await;
        let total: Duration = times.iter().sum();
        let rate = rows as f64 / total.as_secs_f64();
        let raw = rows as f64 / copy.as_secs_f64();
        let last_over_first = times[TENTHS - 1].as_secs_f64() / times[0].as_secs_f64();
        println!(
            "round {n}: import {rate:.0} rows/s ({:.1} s; tenths {:?} s), {stored} rows stored; \
             COPY of them {raw:.0} file rows/s ({:.1} s); last tenth ÷ first {last_over_first:.2}",
            total.as_secs_f64(),
            times
                .iter()
                .map(|t| (t.as_secs_f64() * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
            copy.as_secs_f64()
        );
        service.push(rate);
        baseline.push(raw);
        ratios.push(rate / raw);
        growth.push(last_over_first);
    }
    let ((rl, rh), (gl, gh)) = (spread(&ratios), spread(&growth));
    println!();
    println!("| I1 import of {rows} rows, {rounds} rounds | service | COPY of the stored rows | ratio | target | last tenth ÷ first |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| postgres | {:.0} rows/s | {:.0} rows/s | {:.2}× ({rl:.2}–{rh:.2}) | ≥ 0.5 {} | {:.2} ({gl:.2}–{gh:.2}) |",
        median(service),
        median(baseline),
        median(ratios.clone()),
        if median(ratios) >= 0.5 { "✔" } else { "✘" },
        median(growth)
    );
}
