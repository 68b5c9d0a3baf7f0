//! The limit-insight benchmark: a portal of about 10,000,000 association rows
//! over 1,100,000 records on PostgreSQL at production durability (fsync and
//! synchronous_commit on), written straight into the tables; then
//! `GetLimitUsage` of the pair (latency, beside the same question asked of
//! PostgreSQL in one statement) and `ListRecordsNearLimit` streaming the
//! 100,000 contacts at or near their limit (rows/s, beside `COPY` of the
//! same rows in the same order). Prints the table and writes it into
//! docs/benchmarks.md between its markers.
//!
//! Run: `cargo bench --bench limit_usage` (`BENCH_DATABASE_URL` for an
//! existing server instead of a throwaway one).
#[path = "../tests/common/mod.rs"]
mod common;

use common::median;

use std::time::{Duration, Instant};

use association_service::proto::admin_config_client::AdminConfigClient;
use association_service::proto::{
    AssociationCategory, CreateLimitsRequest, GetLimitUsageRequest, LimitInput,
    ListRecordsNearLimitRequest,
};
use common::ServerProcess;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio_stream::StreamExt;

const PORTAL: i64 = 1;
/// The admin limit of contact -> company (unlabeled, 279).
const LIMIT: i32 = 10;
const CONTACTS: i64 = 1_000_000;
const COMPANIES: i64 = 100_000;
/// Contacts 1..=AT_LIMIT hold LIMIT companies; up to NEAR hold 8 or 9 (at
/// least 80 % of the limit); the rest hold 5.
const AT_LIMIT: i64 = 20_000;
const NEAR: i64 = 100_000;
const USAGE_CALLS: usize = 200;
const STREAM_RUNS: usize = 5;

/// The portal's rows, both directions, and their counters.
const LOAD: &str = "
SET synchronous_commit = off;
INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
SELECT 1, '0-1', c, '0-2', (c * 7 + k * 1009) % COMPANIES + 1, 1, 279
FROM generate_series(1, CONTACTS) c,
     LATERAL generate_series(1, CASE WHEN c <= AT_LIMIT THEN LIMIT WHEN c <= NEAR THEN 8 + c % 2 ELSE 5 END) k;
INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
SELECT 1, '0-2', to_object_id, '0-1', from_object_id, 1, 280 FROM associations;
INSERT INTO association_counts (portal_id, object_type, object_id, category, type_id, count)
SELECT portal_id, from_object_type, from_object_id, category, type_id, count(*)
FROM associations GROUP BY 1, 2, 3, 4, 5;";

/// The usage question in one statement: records at and near the limit,
/// the largest count, and five samples of each group.
const RAW_USAGE: &str = "
WITH scan AS (
    SELECT object_id, count FROM association_counts
    WHERE portal_id = 1 AND category = 1 AND type_id = 279 AND object_type = '0-1' AND count >= 8)
SELECT (SELECT count(*) FROM scan WHERE count >= 10), (SELECT count(*) FROM scan WHERE count < 10),
       (SELECT max(count) FROM association_counts
        WHERE portal_id = 1 AND category = 1 AND type_id = 279 AND object_type = '0-1'),
       ARRAY(SELECT object_id FROM scan WHERE count >= 10 ORDER BY count DESC, object_id DESC LIMIT 5),
       ARRAY(SELECT object_id FROM scan WHERE count < 10 ORDER BY count DESC, object_id DESC LIMIT 5)";

/// The streamed rows, as PostgreSQL copies them out.
const RAW_NEAR: &str = "COPY (SELECT object_id, count FROM association_counts
    WHERE portal_id = 1 AND category = 1 AND type_id = 279 AND object_type = '0-1' AND count >= 8
    ORDER BY count DESC, object_id DESC) TO STDOUT";

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
}

async fn raw_usage(pool: &PgPool) -> Vec<Duration> {
    let mut times = Vec::new();
    for _ in 0..USAGE_CALLS {
        let started = Instant::now();
        let (at, near): (i64, i64) = sqlx::query_as(&format!(
            "SELECT at, near FROM ({RAW_USAGE}) AS u(at, near, largest, at_samples, near_samples)"
        ))
        .fetch_one(pool)
        .await
        .expect("raw usage");
        times.push(started.elapsed());
        assert_eq!((at, near), (AT_LIMIT, NEAR - AT_LIMIT));
    }
    times.sort();
    times
}

async fn raw_copy_rate(pool: &PgPool) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..STREAM_RUNS {
        let mut conn = pool.acquire().await.expect("a connection");
        let started = Instant::now();
        let mut out = conn.copy_out_raw(RAW_NEAR).await.expect("copy");
        let mut lines = 0i64;
        while let Some(chunk) = out.next().await {
            lines += chunk
                .expect("copy data")
                .iter()
                .filter(|b| **b == b'\n')
                .count() as i64;
        }
        assert_eq!(lines, NEAR);
        rates.push(lines as f64 / started.elapsed().as_secs_f64());
    }
    median(rates)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let admin = tokio::task::spawn_blocking(common::durable_postgres_admin_url)
        .await
        .expect("durable PostgreSQL");
    let url = common::fresh_database_on(&admin).await;
    // The schema, then the rows straight into the tables.
    association_service::store::connect(&url, 2)
        .await
        .expect("the store")
        .migrate()
        .await
        .expect("migrate");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("connect");
    let started = Instant::now();
    let load = LOAD
        .replace("COMPANIES", &COMPANIES.to_string())
        .replace("CONTACTS", &CONTACTS.to_string())
        .replace("AT_LIMIT", &AT_LIMIT.to_string())
        .replace("NEAR", &NEAR.to_string())
        .replace("THEN LIMIT", &format!("THEN {LIMIT}"));
    sqlx::raw_sql(&load).execute(&pool).await.expect("load");
    // Outside the load's implicit transaction.
    sqlx::query("VACUUM ANALYZE")
        .execute(&pool)
        .await
        .expect("vacuum");
    let (rows, records): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM associations), (SELECT count(*) FROM association_counts)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    eprintln!(
        "loaded {rows} rows over {records} records in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let server = ServerProcess::start(
        &url,
        &[
            ("ASSOC__LOG__FILTER", "warn,association_service=info"),
            ("ASSOC__SERVER__CALLS_PER_SECOND_PER_PORTAL", "0"),
        ],
    )
    .await;
    let mut admin_client = AdminConfigClient::new(server.channel().await);
    let limit = LimitInput {
        category: AssociationCategory::HubspotDefined as i32,
        type_id: 279,
        max_to_object_ids: LIMIT,
    };
    admin_client
        .create_limits(CreateLimitsRequest {
            portal_id: PORTAL,
            from_object_type: "contacts".into(),
            to_object_type: "companies".into(),
            inputs: vec![limit],
        })
        .await
        .expect("the limit");

    // GetLimitUsage: one pair, both directions' types, default threshold.
    let request = GetLimitUsageRequest {
        portal_id: PORTAL,
        from_object_type: "contacts".into(),
        to_object_type: "companies".into(),
        ..Default::default()
    };
    let mut times = Vec::new();
    for _ in 0..USAGE_CALLS {
        let started = Instant::now();
        let answer = admin_client
            .get_limit_usage(request.clone())
            .await
            .expect("usage")
            .into_inner();
        times.push(started.elapsed());
        let unlabeled = answer
            .types
            .iter()
            .find(|t| t.definition.as_ref().is_some_and(|d| d.type_id == 279))
            .expect("the contact -> company type");
        assert_eq!(
            (unlabeled.records_at_limit, unlabeled.records_near_limit),
            (AT_LIMIT as u64, (NEAR - AT_LIMIT) as u64)
        );
    }
    times.sort();
    let raw = raw_usage(&pool).await;

    // ListRecordsNearLimit: every contact at or above 80 % of its limit.
    let mut rates = Vec::new();
    for _ in 0..STREAM_RUNS {
        let started = Instant::now();
        let mut stream = admin_client
            .list_records_near_limit(ListRecordsNearLimitRequest {
                portal_id: PORTAL,
                from_object_type: "contacts".into(),
                to_object_type: "companies".into(),
                category: AssociationCategory::HubspotDefined as i32,
                type_id: 279,
                ..Default::default()
            })
            .await
            .expect("near-limit stream")
            .into_inner();
        let mut streamed = 0i64;
        while let Some(chunk) = stream.message().await.expect("a chunk") {
            streamed += chunk.records.len() as i64;
        }
        assert_eq!(streamed, NEAR);
        rates.push(streamed as f64 / started.elapsed().as_secs_f64());
    }
    let service_rate = median(rates);
    let copy_rate = raw_copy_rate(&pool).await;
    drop(server);

    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    let (raw_p50, raw_p99) = (percentile(&raw, 0.5), percentile(&raw, 0.99));
    let table = format!(
        "Portal: {rows} association rows over {records} records; contact -> company limit {LIMIT}, \
         {AT_LIMIT} contacts at it and {} near it (from 80 %). Durable throwaway PostgreSQL 15, {} cores.\n\n\
         | scenario | service | raw PostgreSQL | ratio | target | notes |\n|---|---|---|---|---|---|\n\
         | U1 `GetLimitUsage` of the pair | p50 {p50:.2} ms / p99 {p99:.2} ms | p50 {raw_p50:.2} ms / p99 {raw_p99:.2} ms (one statement) | {:.2}× (p50) | p50 ≤ 50 ms {} | {USAGE_CALLS} calls; every type of both directions, 5 samples each |\n\
         | U2 `ListRecordsNearLimit`, 100,000 records | {service_rate:.0} records/s | {copy_rate:.0} rows/s (`COPY`) | {:.2}× | ≥ 0.8 {} | median of {STREAM_RUNS} streams |\n",
        NEAR - AT_LIMIT,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        raw_p50 / p50,
        if p50 <= 50.0 { "✔" } else { "✘" },
        service_rate / copy_rate,
        if service_rate / copy_rate >= 0.8 { "✔" } else { "✘" },
    );
    println!("{table}");
    write_doc(&table);
}

const START: &str = "<!-- usage:start -->";
const END: &str = "<!-- usage:end -->";

fn write_doc(table: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.md");
    let existing = std::fs::read_to_string(path).expect("docs/benchmarks.md");
    let (Some(a), Some(b)) = (existing.find(START), existing.find(END)) else {
        panic!("docs/benchmarks.md lacks the {START} / {END} markers");
    };
    let updated = format!("{}{START}\n{table}{}", &existing[..a], &existing[b..]);
    std::fs::write(path, updated).expect("write docs/benchmarks.md");
}
