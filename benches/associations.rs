//! The benchmark harness: runs the real server (release build, as a child
//! process) on PostgreSQL and on SQLite, drives it over gRPC, and measures
//! each scenario beside raw PostgreSQL doing the same rows in the same run
//! (multi-row INSERTs for writes, `COPY … TO STDOUT` for reads). Prints the
//! results and writes them into docs/benchmarks.md.
//!
//! The headline runs PostgreSQL at production durability (fsync and
//! synchronous_commit on); the write scenarios run again with both off as a
//! second table. One create's and one batch's statements are costed with
//! pg_stat_statements (nested statements included).
//!
//! Run: `cargo bench --bench associations` (`BENCH_SCALE=small` for a quick
//! pass, `BENCH_ONLY=writes` for the durable writes alone, `BENCH_ONLY=reads`
//! for the reads alone; `BENCH_DATABASE_URL`
//! / `DATABASE_URL` to use existing PostgreSQL
//! servers for the durable / fsync-off runs instead of throwaways;
//! `BENCH_ONLY=citus` for W1, W2, R1 and R3 on a throwaway Citus cluster, a
//! coordinator and two workers, beside the single PostgreSQL, both durable,
//! in `CITUS_ROUNDS` interleaved rounds, default 3).
#[path = "../tests/common/mod.rs"]
mod common;

use common::median;

use std::process::Stdio;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use association_service::proto::admin_config_client::AdminConfigClient;
use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{
    AssociationCategory, AssociationColumns, AssociationInput, BatchListAssociationsRequest,
    ChunkLayout, CreateAssociationsRequest, CreateLimitsRequest, ExportAssociationsRequest,
    LimitInput, ListAssociationsRequest,
};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const DEAL: &str = "0-3";
const CONTACT: &str = "0-1";

/// How much work each scenario does.
struct Scale {
    name: &'static str,
    w1_ops: i64,
    w2_batches_per_client: i64,
    w3_limit: i32,
    r1_rows: i64,
    r2_records: i64,
    r2_per_record: i64,
}

const FULL: Scale = Scale {
    name: "full",
    w1_ops: 4_000,
    w2_batches_per_client: 100,
    w3_limit: 1_000,
    r1_rows: 1_000_000,
    r2_records: 1_000,
    r2_per_record: 200,
};
const SMALL: Scale = Scale {
    name: "small",
    w1_ops: 800,
    w2_batches_per_client: 10,
    w3_limit: 200,
    r1_rows: 50_000,
    r2_records: 100,
    r2_per_record: 50,
};

const W1_CLIENTS: i64 = 16;
const W2_CLIENTS: i64 = 4;
const W3_CLIENTS: usize = 64;
const SEED_BATCH: i64 = 2_000;

/// Portals used by the scenarios.
const W1_PORTAL: i64 = 1_001;
const W2_PORTAL: i64 = 1_002;
const W3_PORTAL: i64 = 1_003;
const R1_PORTAL: i64 = 1_004;
const R2_PORTAL: i64 = 1_005;
/// R0: one record with `R0_ROWS` associations, read whole by small calls.
const R0_PORTAL: i64 = 1_006;
const R0_ROWS: i64 = 500;
const R0_CALLS: usize = 300;
/// R4: REST v4 batch reads of `Scale::r2_records` records × `R4_PER_RECORD`
/// (the gateway serves this portal).
const R4_PORTAL: i64 = 1_007;
const R4_PER_RECORD: i64 = 100;
const R4_CALLS: usize = 10;
/// W4's one shared portal; with one portal per client, W4_PORTAL + 1 + client.
const W4_PORTAL: i64 = 2_000;
/// Where each side warms its connections up before W1.
const WARMUP_PORTAL: i64 = 3_000;
const WARMUP_PER_CLIENT: i64 = 10;

/// One measured scenario on one backend.
struct Row {
    scenario: &'static str,
    backend: &'static str,
    service: f64,
    baseline: f64,
    unit: &'static str,
    detail: String,
    target: Option<f64>,
    /// Each interleaved round's ratio (none: service ÷ baseline).
    ratios: Vec<f64>,
}

/// The server binary running as a child process.
struct Server {
    child: tokio::process::Child,
    endpoint: String,
    /// The REST gateway.
    http: std::net::SocketAddr,
}

impl Server {
    async fn start(store_url: &str) -> Server {
        Server::start_with(store_url, &[]).await
    }

    /// A server with these settings (environment variables) besides the
    /// benchmark's own.
    async fn start_with(store_url: &str, settings: &[(&str, &str)]) -> Server {
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (port, http_port) = (free_port(), free_port());
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_association-service"))
            .arg("serve")
            .env("ASSOC__STORE__URL", store_url)
            .env("ASSOC__SERVER__GRPC_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "ASSOC__GATEWAY__HTTP_ADDR",
                format!("127.0.0.1:{http_port}"),
            )
            .env("ASSOC__GATEWAY__DEFAULT_PORTAL", R4_PORTAL.to_string())
            .env("ASSOC__LIMITS__PLATFORM_CEILING", "2000000")
            .env("ASSOC__STORE__MAX_CONNECTIONS", "32")
            // Throughput is measured, not the per-portal call-rate policy.
            .env("ASSOC__SERVER__CALLS_PER_SECOND_PER_PORTAL", "0")
            .env("ASSOC__LOG__FILTER", "warn")
            .envs(settings.iter().copied())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Channel::from_shared(endpoint.clone())
            .unwrap()
            .connect()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let http = ([127, 0, 0, 1], http_port).into();
        Server {
            child,
            endpoint,
            http,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Resets the kernel's peak-RSS mark for the server.
    fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    /// The server's peak resident memory since the last reset, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    /// The server's resident memory now, in MiB.
    fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    fn status_mib(&self, field: &str) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }

    async fn writer(&self) -> AssociationWriteClient<Channel> {
        AssociationWriteClient::connect(self.endpoint.clone())
            .await
            .expect("connect")
    }

    async fn reader(&self) -> AssociationReadClient<Channel> {
        AssociationReadClient::connect(self.endpoint.clone())
            .await
            .expect("connect")
    }
}

fn request(portal: i64, inputs: Vec<AssociationInput>) -> CreateAssociationsRequest {
    CreateAssociationsRequest {
        portal_id: portal,
        from_object_type: DEAL.into(),
        to_object_type: CONTACT.into(),
        inputs,
    }
}

fn input(from_id: i64, to_id: i64) -> AssociationInput {
    AssociationInput {
        from_id,
        to_id,
        types: vec![],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1_000.0
}

/// (ops per second, p50 ms, p99 ms) of a set of timed operations.
fn summarize(elapsed: Duration, mut latencies: Vec<Duration>) -> (f64, f64, f64) {
    latencies.sort();
    (
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

// ------------------------------------------------------------ scenarios

/// Where W1-style single creates go: the contacts and the portals.
#[derive(Clone, Copy)]
struct CreateLoad {
    /// Every create joins a new contact (otherwise client `c`'s `n`-th
    /// create joins contact `n + 1`, which the other clients also write).
    distinct_contacts: bool,
    /// Portal of client 0; with `portal_per_client`, client `c` uses `portal + c`.
    portal: i64,
    portal_per_client: bool,
}

/// W1: 16 clients creating single associations; client `c`'s op `n` joins
/// deal `c·10⁶ + n + 1` to contact `n + 1`, so clients meet on the same
/// contacts at the same moment. Returns (assoc/s, p50 ms, p99 ms).
async fn w1_service(server: &Server, scale: &Scale, load: CreateLoad) -> (f64, f64, f64) {
    let per_client = scale.w1_ops / W1_CLIENTS;
    let start = Instant::now();
    let mut clients = JoinSet::new();
    for client in 0..W1_CLIENTS {
        let mut writer = server.writer().await;
        let portal = load.portal + if load.portal_per_client { client } else { 0 };
        clients.spawn(async move {
            let mut latencies = Vec::new();
            for op in 0..per_client {
                let began = Instant::now();
                let contact = if load.distinct_contacts {
                    50_000_000 + client * 1_000_000 + op + 1
                } else {
                    op + 1
                };
                let response = writer
                    .create_associations(request(
                        portal,
                        vec![input(client * 1_000_000 + op + 1, contact)],
                    ))
                    .await;
                assert!(response.expect("create").into_inner().errors.is_empty());
                latencies.push(began.elapsed());
            }
            latencies
        });
    }
    let latencies = clients.join_all().await.concat();
    summarize(start.elapsed(), latencies)
}

/// Opens and warms every connection (and the server's per-connection plans)
/// with W1-style creates on a portal of their own, unmeasured.
async fn warm_up_service(server: &Server) {
    let mut clients = JoinSet::new();
    for client in 0..W1_CLIENTS {
        let mut writer = server.writer().await;
        clients.spawn(async move {
            for op in 0..WARMUP_PER_CLIENT {
                let inputs = vec![input(client * 1_000_000 + op + 1, op + 1)];
                let response = writer.create_associations(request(WARMUP_PORTAL, inputs));
                assert!(response
                    .await
                    .expect("create")
                    .into_inner()
                    .errors
                    .is_empty());
            }
        });
    }
    clients.join_all().await;
}

/// The baseline's warm-up: the same inserts, raw.
async fn warm_up_raw(pool: &PgPool) {
    let mut clients = JoinSet::new();
    for client in 0..W1_CLIENTS {
        let pool = pool.clone();
        clients.spawn(async move {
            for op in 0..WARMUP_PER_CLIENT {
                raw_insert(
                    &pool,
                    WARMUP_PORTAL,
                    &[(client * 1_000_000 + op + 1, op + 1)],
                )
                .await;
            }
        });
    }
    clients.join_all().await;
}

const W1_LOAD: CreateLoad = CreateLoad {
    distinct_contacts: false,
    portal: W1_PORTAL,
    portal_per_client: false,
};

/// W1's load with every client on one portal, or each on its own (offset
/// `round` keeps runs apart); associations per second.
async fn w4_service(server: &Server, scale: &Scale, one_portal: bool, round: i64) -> f64 {
    let load = CreateLoad {
        distinct_contacts: false,
        portal: W4_PORTAL + round * 100 + if one_portal { 0 } else { 1 },
        portal_per_client: !one_portal,
    };
    w1_service(server, scale, load).await.0
}

/// W4 on one portal ÷ on sixteen, interleaved twice so drift in the machine
/// weighs on both sides alike: (one-portal rate, many-portal rate).
async fn w4_pair(server: &Server, scale: &Scale) -> (f64, f64) {
    let (mut one, mut many) = (0.0, 0.0);
    for round in 0..2 {
        one += w4_service(server, scale, true, round * 2).await / 2.0;
        many += w4_service(server, scale, false, round * 2 + 1).await / 2.0;
    }
    (one, many)
}

/// Starts counting statements (PostgreSQL only).
async fn reset_statement_stats(pool: &PgPool) {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(pool)
        .await
        .expect("pg_stat_statements (the durable throwaway loads it)");
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(pool)
        .await
        .expect("reset statement stats");
}

/// The statements the service ran since the reset, per `unit` (`count` of
/// them were run), costliest first; nested statements (inside the write
/// functions) are listed beside the call that ran them.
async fn statement_costs(pool: &PgPool, unit: &str, count: i64) -> String {
    let rows: Vec<(i64, f64, f64, String)> = sqlx::query_as(
        "SELECT s.calls, s.total_exec_time, s.mean_exec_time,
                left(regexp_replace(s.query, '\\s+', ' ', 'g'), 110)
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = current_database() AND s.calls >= $1
           AND s.query NOT LIKE '%pg_stat_statements%'
         ORDER BY s.total_exec_time DESC LIMIT 12",
    )
    .bind((count / 100).max(2))
    .fetch_all(pool)
    .await
    .expect("read pg_stat_statements");
    let mut out =
        format!("| statement | calls per {unit} | mean ms | total ms |\n|---|---|---|---|\n");
    for (calls, total, mean, query) in rows {
        out.push_str(&format!(
            "| `{}` | {:.2} | {:.3} | {:.0} |\n",
            query.replace('|', "\\|"),
            calls as f64 / count as f64,
            mean,
            total
        ));
    }
    out
}

async fn w2_service(server: &Server, scale: &Scale) -> f64 {
    let start = Instant::now();
    let mut clients = JoinSet::new();
    for client in 0..W2_CLIENTS {
        let mut writer = server.writer().await;
        let batches = scale.w2_batches_per_client;
        clients.spawn(async move {
            for batch in 0..batches {
                let deal = client * 1_000_000 + batch + 1;
                let inputs = (1..=100).map(|c| input(deal, c)).collect();
                let response = writer
                    .create_associations(request(W2_PORTAL, inputs))
                    .await
                    .expect("create");
                assert!(response.into_inner().errors.is_empty());
            }
        });
    }
    clients.join_all().await;
    (W2_CLIENTS * scale.w2_batches_per_client * 100) as f64 / start.elapsed().as_secs_f64()
}

/// 64 clients add associations to deal 1 until each is refused; returns
/// (successes per second, successes, attempts).
async fn w3_service(server: &Server, scale: &Scale) -> (f64, usize, usize) {
    let mut admin = AdminConfigClient::connect(server.endpoint.clone())
        .await
        .unwrap();
    let limit = LimitInput {
        category: AssociationCategory::HubspotDefined as i32,
        type_id: 3,
        max_to_object_ids: scale.w3_limit,
    };
    let response = admin
        .create_limits(CreateLimitsRequest {
            portal_id: W3_PORTAL,
            from_object_type: DEAL.into(),
            to_object_type: CONTACT.into(),
            inputs: vec![limit],
        })
        .await
        .unwrap();
    assert!(response.into_inner().errors.is_empty());
    let next = Arc::new(AtomicI64::new(1));
    let (created, attempts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let start = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..W3_CLIENTS {
        let mut writer = server.writer().await;
        let (next, created, attempts) = (
            Arc::clone(&next),
            Arc::clone(&created),
            Arc::clone(&attempts),
        );
        clients.spawn(async move {
            loop {
                let contact = next.fetch_add(1, Ordering::SeqCst);
                attempts.fetch_add(1, Ordering::SeqCst);
                let response = writer
                    .create_associations(request(W3_PORTAL, vec![input(1, contact)]))
                    .await
                    .expect("create");
                if response.into_inner().errors.is_empty() {
                    created.fetch_add(1, Ordering::SeqCst);
                } else {
                    return;
                }
            }
        });
    }
    clients.join_all().await;
    let elapsed = start.elapsed();
    let created = created.load(Ordering::SeqCst);
    (
        created as f64 / elapsed.as_secs_f64(),
        created,
        attempts.load(Ordering::SeqCst),
    )
}

/// Loads `(deal, contacts)` through the service in batches; returns rows per second.
async fn seed(
    server: &Server,
    portal: i64,
    deals: std::ops::RangeInclusive<i64>,
    per_deal: i64,
) -> f64 {
    let mut writer = server.writer().await;
    let all: Vec<(i64, i64)> = deals
        .flat_map(|d| (1..=per_deal).map(move |c| (d, c)))
        .collect();
    let start = Instant::now();
    for batch in all.chunks(SEED_BATCH as usize) {
        let inputs = batch.iter().map(|&(d, c)| input(d, c)).collect();
        let response = writer
            .create_associations(request(portal, inputs))
            .await
            .expect("seed");
        assert!(response.into_inner().errors.is_empty(), "seeding failed");
    }
    all.len() as f64 / start.elapsed().as_secs_f64()
}

/// Calls per second, p50 and p99 (ms) of one latency sample set.
fn latency(mut times: Vec<Duration>) -> (f64, f64, f64) {
    times.sort();
    let total: f64 = times.iter().map(Duration::as_secs_f64).sum();
    (
        times.len() as f64 / total,
        percentile(&times, 0.50),
        percentile(&times, 0.99),
    )
}

/// Rows a column chunk holds.
fn column_rows(columns: Option<AssociationColumns>) -> i64 {
    columns.map_or(0, |c| c.type_indexes.len() as i64)
}

/// R0: `ListAssociations` of a record with 500 associations, one call at a
/// time on one connection, in `layout`.
async fn r0_service(server: &Server, layout: ChunkLayout) -> (f64, f64, f64) {
    let mut reader = server.reader().await;
    let request = ListAssociationsRequest {
        portal_id: R0_PORTAL,
        object_type: DEAL.into(),
        object_id: 1,
        to_object_type: CONTACT.into(),
        cursor: String::new(),
        layout: layout as i32,
    };
    let mut times = Vec::with_capacity(R0_CALLS);
    for call in 0..R0_CALLS + 20 {
        let start = Instant::now();
        let mut stream = reader
            .list_associations(request.clone())
            .await
            .expect("list")
            .into_inner();
        let mut count = 0i64;
        while let Some(chunk) = stream.message().await.expect("chunk") {
            count += chunk.results.len() as i64 + column_rows(chunk.columns);
        }
        assert_eq!(count, R0_ROWS, "R0 read every association");
        // The first 20 calls warm the connection up.
        if call >= 20 {
            times.push(start.elapsed());
        }
    }
    latency(times)
}

/// R1: rows/s, the server's peak RSS during the run and its RSS as the run
/// began (MiB).
async fn r1_service(server: &Server, rows: i64) -> (f64, f64, f64) {
    let mut reader = server.reader().await;
    server.reset_peak_rss();
    let resident = server.rss_mib();
    let start = Instant::now();
    let request = ListAssociationsRequest {
        portal_id: R1_PORTAL,
        object_type: DEAL.into(),
        object_id: 1,
        to_object_type: CONTACT.into(),
        cursor: String::new(),
        layout: ChunkLayout::Columns as i32,
    };
    let mut stream = reader
        .list_associations(request)
        .await
        .expect("list")
        .into_inner();
    let mut count = 0i64;
    while let Some(chunk) = stream.message().await.expect("chunk") {
        count += column_rows(chunk.columns);
    }
    let elapsed = start.elapsed();
    assert_eq!(count, rows, "R1 streamed every association");
    (
        count as f64 / elapsed.as_secs_f64(),
        server.peak_rss_mib(),
        resident,
    )
}

async fn r2_service(server: &Server, scale: &Scale) -> f64 {
    let mut reader = server.reader().await;
    let ids: Vec<i64> = (1..=scale.r2_records).collect();
    let start = Instant::now();
    let request = BatchListAssociationsRequest {
        portal_id: R2_PORTAL,
        object_type: DEAL.into(),
        object_ids: ids,
        to_object_type: CONTACT.into(),
        cursor: String::new(),
        layout: ChunkLayout::Columns as i32,
    };
    let mut stream = reader
        .batch_list_associations(request)
        .await
        .expect("batch")
        .into_inner();
    let mut count = 0i64;
    while let Some(chunk) = stream.message().await.expect("chunk") {
        count += column_rows(chunk.columns);
    }
    assert_eq!(count, scale.r2_records * scale.r2_per_record);
    count as f64 / start.elapsed().as_secs_f64()
}

async fn r3_service(server: &Server, rows: i64) -> f64 {
    let mut reader = server.reader().await;
    let start = Instant::now();
    let request = ExportAssociationsRequest {
        portal_id: R1_PORTAL,
        from_object_type: DEAL.into(),
        to_object_type: String::new(),
        cursor: String::new(),
        layout: ChunkLayout::Columns as i32,
    };
    let mut stream = reader
        .export_associations(request)
        .await
        .expect("export")
        .into_inner();
    let mut count = 0i64;
    while let Some(chunk) = stream.message().await.expect("chunk") {
        count += column_rows(chunk.columns);
    }
    assert_eq!(count, rows);
    count as f64 / start.elapsed().as_secs_f64()
}

/// R4: `calls` REST v4 batch reads of every R4 record, one call at a time,
/// after `warm` untimed ones: each call's time.
async fn r4_calls(server: &Server, scale: &Scale, warm: usize, calls: usize) -> Vec<Duration> {
    let inputs: Vec<String> = (1..=scale.r2_records)
        .map(|id| format!(r#"{{"id":"{id}"}}"#))
        .collect();
    let body = format!(r#"{{"inputs":[{}]}}"#, inputs.join(","));
    let path = "/crm/v4/associations/deals/contacts/batch/read";
    let mut times = Vec::with_capacity(calls);
    for call in 0..warm + calls {
        let start = Instant::now();
        let answer = common::http(server.http, "POST", path, Some(&body)).await;
        assert_eq!(answer.status, 200, "R4 batch read: {}", answer.body);
        let rows: usize = if call == 0 {
            // The first answer is parsed whole; the measured ones are only
            // counted, as `COPY`'s rows are (parsing is the client's cost).
            let parsed: serde_json::Value = serde_json::from_str(&answer.body).expect("R4 JSON");
            parsed["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|r| r["to"].as_array().map_or(0, Vec::len))
                .sum()
        } else {
            answer.body.matches("\"toObjectId\"").count()
        };
        assert_eq!(
            rows as i64,
            scale.r2_records * R4_PER_RECORD,
            "R4 read every row"
        );
        let took = start.elapsed();
        if took > Duration::from_secs(1) {
            eprintln!(
                "  R4 call {call} took {} ms; a probe call now: {}",
                took.as_millis(),
                r4_probe(server, &body).await
            );
        }
        if call >= warm {
            times.push(took);
        }
    }
    times
}

/// One R4 call timed in its parts: connect, first byte, last byte (ms).
async fn r4_probe(server: &Server, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let start = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("connect");
    let connected = start.elapsed();
    let request = format!(
        "POST /crm/v4/associations/deals/contacts/batch/read HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut buf = vec![0u8; 1 << 16];
    let mut first = None;
    let mut bytes = 0;
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        first.get_or_insert(start.elapsed());
        bytes += n;
    }
    format!(
        "connected {:?}, first byte {:?}, last {:?}, {bytes} bytes",
        connected,
        first.unwrap_or_default(),
        start.elapsed()
    )
}

// ------------------------------------------------------------ raw PostgreSQL

const RAW_TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_raw (LIKE associations INCLUDING ALL)";

/// Inserts `rows` (deal, contact) pairs as both directed rows, in one statement.
async fn raw_insert(pool: &PgPool, portal: i64, rows: &[(i64, i64)]) {
    let deals: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let contacts: Vec<i64> = rows.iter().map(|r| r.1).collect();
    sqlx::query(
        "INSERT INTO bench_raw (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
         SELECT $1, '0-3', d, '0-1', c, 1, 3 FROM unnest($2::bigint[], $3::bigint[]) AS r(d, c)
         UNION ALL
         SELECT $1, '0-1', c, '0-3', d, 1, 4 FROM unnest($2::bigint[], $3::bigint[]) AS r(d, c)",
    )
    .bind(portal)
    .bind(&deals)
    .bind(&contacts)
    .execute(pool)
    .await
    .expect("raw insert");
}

async fn w1_raw(pool: &PgPool, scale: &Scale) -> (f64, f64, f64) {
    let per_client = scale.w1_ops / W1_CLIENTS;
    let start = Instant::now();
    let mut clients = JoinSet::new();
    for client in 0..W1_CLIENTS {
        let pool = pool.clone();
        clients.spawn(async move {
            let mut latencies = Vec::new();
            for op in 0..per_client {
                let began = Instant::now();
                raw_insert(&pool, W1_PORTAL, &[(client * 1_000_000 + op + 1, op + 1)]).await;
                latencies.push(began.elapsed());
            }
            latencies
        });
    }
    let latencies = clients.join_all().await.concat();
    summarize(start.elapsed(), latencies)
}

async fn w2_raw(pool: &PgPool, scale: &Scale) -> f64 {
    let start = Instant::now();
    let mut clients = JoinSet::new();
    for client in 0..W2_CLIENTS {
        let pool = pool.clone();
        let batches = scale.w2_batches_per_client;
        clients.spawn(async move {
            for batch in 0..batches {
                let deal = client * 1_000_000 + batch + 1;
                let rows: Vec<(i64, i64)> = (1..=100).map(|c| (deal, c)).collect();
                raw_insert(&pool, W2_PORTAL, &rows).await;
            }
        });
    }
    clients.join_all().await;
    (W2_CLIENTS * scale.w2_batches_per_client * 100) as f64 / start.elapsed().as_secs_f64()
}

async fn w3_raw(pool: &PgPool, scale: &Scale) -> f64 {
    let next = Arc::new(AtomicI64::new(1));
    let limit = i64::from(scale.w3_limit);
    let start = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..W3_CLIENTS {
        let (pool, next) = (pool.clone(), Arc::clone(&next));
        clients.spawn(async move {
            loop {
                let contact = next.fetch_add(1, Ordering::SeqCst);
                if contact > limit {
                    return;
                }
                raw_insert(&pool, W3_PORTAL, &[(1, contact)]).await;
            }
        });
    }
    clients.join_all().await;
    limit as f64 / start.elapsed().as_secs_f64()
}

/// Interleaved rounds of each read scenario and its baseline; the medians
/// count, and the rounds' ratios give the spread.
const READ_RUNS: usize = 5;

/// Rows per second of `COPY (query) TO STDOUT`, and the rows it produced.
async fn copy_once(pool: &PgPool, query: &str) -> (f64, i64) {
    let mut conn = pool.acquire().await.expect("connection");
    let start = Instant::now();
    let mut stream = conn
        .copy_out_raw(&format!("COPY ({query}) TO STDOUT"))
        .await
        .expect("copy");
    let mut rows = 0i64;
    while let Some(bytes) = stream.next().await {
        rows += bytes
            .expect("copy data")
            .iter()
            .filter(|b| **b == b'\n')
            .count() as i64;
    }
    (rows as f64 / start.elapsed().as_secs_f64(), rows)
}

/// R0's baseline: the same 500 rows by one prepared query at a time.
async fn r0_raw(pool: &PgPool) -> (f64, f64, f64) {
    let mut conn = pool.acquire().await.expect("connection");
    let mut times = Vec::with_capacity(R0_CALLS);
    for call in 0..R0_CALLS + 20 {
        let start = Instant::now();
        let rows = sqlx::query(
            "SELECT to_object_type, to_object_id, category, type_id FROM associations
             WHERE portal_id = $1 AND from_object_type = $2 AND from_object_id = 1
               AND to_object_type = $3 ORDER BY to_object_type, to_object_id, category, type_id",
        )
        .bind(R0_PORTAL)
        .bind(DEAL)
        .bind(CONTACT)
        .fetch_all(&mut *conn)
        .await
        .expect("R0 rows");
        assert_eq!(rows.len() as i64, R0_ROWS);
        if call >= 20 {
            times.push(start.elapsed());
        }
    }
    latency(times)
}

/// The read baselines' queries over the PostgreSQL store's own rows (R1,
/// R2, R3, R4), each with the rows it reads.
fn read_queries(scale: &Scale) -> [(String, i64); 4] {
    [
        (
            format!(
                "SELECT to_object_type, to_object_id, category, type_id FROM associations
                 WHERE portal_id = {R1_PORTAL} AND from_object_type = '{DEAL}' AND from_object_id = 1
                   AND to_object_type = '{CONTACT}' ORDER BY to_object_type, to_object_id, category, type_id"
            ),
            scale.r1_rows,
        ),
        (
            format!(
                "SELECT from_object_id, to_object_type, to_object_id, category, type_id FROM associations
                 WHERE portal_id = {R2_PORTAL} AND from_object_type = '{DEAL}' AND from_object_id BETWEEN 1 AND {}
                   AND to_object_type = '{CONTACT}'
                 ORDER BY from_object_id, to_object_type, to_object_id, category, type_id",
                scale.r2_records
            ),
            scale.r2_records * scale.r2_per_record,
        ),
        (
            format!(
                "SELECT from_object_type, from_object_id, to_object_type, to_object_id, category, type_id FROM associations
                 WHERE portal_id = {R1_PORTAL} AND from_object_type = '{DEAL}'
                 ORDER BY from_object_type, from_object_id, to_object_type, to_object_id, category, type_id"
            ),
            scale.r1_rows,
        ),
        (
            format!(
                "SELECT from_object_id, to_object_id, category, type_id FROM associations
                 WHERE portal_id = {R4_PORTAL} AND from_object_type = '{DEAL}' AND from_object_id BETWEEN 1 AND {}
                   AND to_object_type = '{CONTACT}'
                 ORDER BY from_object_id, to_object_type, to_object_id, category, type_id",
                scale.r2_records
            ),
            scale.r2_records * R4_PER_RECORD,
        ),
    ]
}

/// Where a read scenario's baseline reads the same rows as the service.
#[derive(Clone, Copy)]
enum Baseline<'a> {
    /// `COPY (query) TO STDOUT` on the PostgreSQL store's database.
    Copy(&'a PgPool),
    /// SQLite alone (rusqlite, in this process) on the SQLite store's
    /// file: the query stepped to its end, every column of every row read.
    Sqlite(&'a std::path::Path),
}

impl Baseline<'_> {
    /// One read of a baseline query: rows/s.
    async fn read(self, (query, rows): &(String, i64)) -> f64 {
        let (rate, n) = match self {
            Baseline::Copy(pool) => copy_once(pool, query).await,
            Baseline::Sqlite(path) => {
                let (path, query) = (path.to_path_buf(), query.clone());
                tokio::task::spawn_blocking(move || sqlite_once(&path, &query))
                    .await
                    .expect("the SQLite baseline ran")
            }
        };
        assert_eq!(n, *rows, "the baseline read every row");
        rate
    }
}

/// SQLite stepping `query` on the file at `path`, reading each column as
/// the service does (text borrowed, integers as such): rows/s and rows.
fn sqlite_once(path: &std::path::Path, query: &str) -> (f64, i64) {
    use rusqlite::types::ValueRef;
    // As the service opens its stream connections: no mutex per call.
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags).expect("open the SQLite file");
    let start = Instant::now();
    let mut statement = conn.prepare(query).expect("baseline query");
    let columns = statement.column_count();
    let mut rows = statement.query([]).expect("baseline rows");
    let (mut n, mut seen) = (0i64, 0usize);
    while let Some(row) = rows.next().expect("a baseline row") {
        for at in 0..columns {
            seen += match row.get_ref(at).expect("a column") {
                ValueRef::Text(text) => text.len(),
                ValueRef::Integer(value) => value as usize & 1,
                _ => 0,
            };
        }
        n += 1;
    }
    std::hint::black_box(seen);
    (n as f64 / start.elapsed().as_secs_f64(), n)
}

/// One read scenario's interleaved rounds: in each, the service's rate,
/// then the baseline's over the same rows.
#[derive(Clone, Debug, Default)]
struct Rounds {
    service: Vec<f64>,
    baseline: Vec<f64>,
}

impl Rounds {
    fn push(&mut self, service: f64, baseline: f64) {
        self.service.push(service);
        self.baseline.push(baseline);
    }

    fn service(&self) -> f64 {
        median(self.service.clone())
    }

    fn baseline(&self) -> f64 {
        median(self.baseline.clone())
    }

    /// Each round's service ÷ baseline.
    fn ratios(&self) -> Vec<f64> {
        let pairs = self.service.iter().zip(&self.baseline);
        pairs.map(|(s, b)| s / b).collect()
    }
}

// ------------------------------------------------------------ the run

struct Measured {
    w1: (f64, f64, f64),
    /// W1 with every client on its own records.
    w1_distinct: (f64, f64, f64),
    /// W4: (one portal, sixteen portals) assoc/s.
    w4: (f64, f64),
    /// pg_stat_statements for W1, when counted.
    statements: Option<String>,
    /// pg_stat_statements for W2, when counted.
    batch_statements: Option<String>,
    w2: f64,
    w3: (f64, usize, usize),
    seed: f64,
    /// R0 in columns: calls/s, p50 ms, p99 ms.
    r0: (f64, f64, f64),
    /// R0 in the row layout.
    r0_rows: (f64, f64, f64),
    /// R1: rows/s, peak RSS, RSS as it began (MiB).
    r1: (f64, f64, f64),
    /// R4: rows/s, p50 ms, p99 ms.
    r4: (f64, f64, f64),
    /// R1–R4's interleaved rounds beside their baselines.
    reads: [Rounds; 4],
}

/// Measurements with no write scenario run (for `BENCH_ONLY=reads`).
fn run_writes_skipped() -> Measured {
    Measured {
        w1: (0.0, 0.0, 0.0),
        w1_distinct: (0.0, 0.0, 0.0),
        w4: (0.0, 0.0),
        statements: None,
        batch_statements: None,
        w2: 0.0,
        w3: (0.0, 0, 0),
        seed: 0.0,
        r0: (0.0, 0.0, 0.0),
        r0_rows: (0.0, 0.0, 0.0),
        r1: (0.0, 0.0, 0.0),
        r4: (0.0, 0.0, 0.0),
        reads: Default::default(),
    }
}

/// The write scenarios; with `stats`, W1's statements are costed.
async fn run_writes(server: &Server, scale: &Scale, stats: Option<&PgPool>) -> Measured {
    warm_up_service(server).await;
    if let Some(pool) = stats {
        reset_statement_stats(pool).await;
    }
    eprintln!("  W1 single creates, {W1_CLIENTS} clients");
    let w1 = w1_service(server, scale, W1_LOAD).await;
    let statements = match stats {
        Some(pool) => Some(statement_costs(pool, "create", scale.w1_ops).await),
        None => None,
    };
    eprintln!("  W1 on distinct records");
    let w1_distinct = w1_service(
        server,
        scale,
        CreateLoad {
            distinct_contacts: true,
            ..W1_LOAD
        },
    )
    .await;
    eprintln!("  W2 batches of 100, {W2_CLIENTS} clients");
    if let Some(pool) = stats {
        reset_statement_stats(pool).await;
    }
    let w2 = w2_service(server, scale).await;
    let batch_statements = match stats {
        Some(pool) => {
            let batches = W2_CLIENTS * scale.w2_batches_per_client;
            Some(statement_costs(pool, "batch", batches).await)
        }
        None => None,
    };
    eprintln!(
        "  W3 {W3_CLIENTS} clients racing to a limit of {}",
        scale.w3_limit
    );
    let w3 = w3_service(server, scale).await;
    assert_eq!(w3.1, scale.w3_limit as usize, "the limit held");
    eprintln!("  W4 {W1_CLIENTS} clients on one portal, then on {W1_CLIENTS}");
    let w4 = w4_pair(server, scale).await;
    Measured {
        w1,
        w1_distinct,
        w4,
        statements,
        batch_statements,
        w2,
        w3,
        seed: 0.0,
        r0: (0.0, 0.0, 0.0),
        r0_rows: (0.0, 0.0, 0.0),
        r1: (0.0, 0.0, 0.0),
        r4: (0.0, 0.0, 0.0),
        reads: Default::default(),
    }
}

async fn run_service(
    server: &Server,
    scale: &Scale,
    stats: Option<&PgPool>,
    base: Baseline<'_>,
) -> Measured {
    let writes = run_writes(server, scale, stats).await;
    run_reads(server, scale, writes, base).await
}

/// The read scenarios (R0–R4) after seeding their rows: R1–R4 in
/// `READ_RUNS` rounds, each scenario beside its baseline over the same
/// rows (`COPY` on PostgreSQL, SQLite itself on the SQLite store's file)
/// right after it, so the machine's drift moves both.
async fn run_reads(
    server: &Server,
    scale: &Scale,
    writes: Measured,
    base: Baseline<'_>,
) -> Measured {
    eprintln!(
        "  seeding {} + {} associations",
        scale.r1_rows,
        scale.r2_records * scale.r2_per_record
    );
    let seed_rate = seed(server, R1_PORTAL, 1..=1, scale.r1_rows).await;
    seed(server, R2_PORTAL, 1..=scale.r2_records, scale.r2_per_record).await;
    seed(server, R0_PORTAL, 1..=1, R0_ROWS).await;
    seed(server, R4_PORTAL, 1..=scale.r2_records, R4_PER_RECORD).await;
    eprintln!("  R0/R1/R2/R3/R4 reads, {READ_RUNS} interleaved rounds");
    let r0 = r0_service(server, ChunkLayout::Columns).await;
    let r0_rows = r0_service(server, ChunkLayout::Rows).await;
    let queries = read_queries(scale);
    let mut reads: [Rounds; 4] = Default::default();
    let (mut peak_rss, mut resident) = (0.0f64, f64::MAX);
    let mut r4_times = Vec::new();
    let r4_calls_per_round = R4_CALLS.div_ceil(READ_RUNS);
    let r4_rows = (scale.r2_records * R4_PER_RECORD) as f64;
    for round in 0..READ_RUNS {
        let r1 = r1_service(server, scale.r1_rows).await;
        (peak_rss, resident) = (peak_rss.max(r1.1), resident.min(r1.2));
        reads[0].push(r1.0, base.read(&queries[0]).await);
        let r2 = r2_service(server, scale).await;
        reads[1].push(r2, base.read(&queries[1]).await);
        let r3 = r3_service(server, scale.r1_rows).await;
        reads[2].push(r3, base.read(&queries[2]).await);
        // The first round's first two calls warm the pools up.
        let warm = if round == 0 { 2 } else { 0 };
        let times = r4_calls(server, scale, warm, r4_calls_per_round).await;
        let rate = r4_rows * latency(times.clone()).0;
        reads[3].push(rate, base.read(&queries[3]).await);
        r4_times.extend(times);
    }
    let (_, r4_p50, r4_p99) = latency(r4_times);
    Measured {
        seed: seed_rate,
        r0,
        r0_rows,
        r1: (reads[0].service(), peak_rss, resident),
        r4: (reads[3].service(), r4_p50, r4_p99),
        reads,
        ..writes
    }
}

/// The write rows of a run (W1–W4).
fn write_rows(backend: &'static str, m: &Measured, raw: &Measured) -> Vec<Row> {
    vec![
        Row {
            scenario: "W1 single creates, 16 clients",
            backend,
            service: m.w1.0,
            baseline: raw.w1.0,
            unit: "assoc/s",
            detail: format!(
                "p50 {:.2} ms / p99 {:.2} ms (raw {:.2} / {:.2})",
                m.w1.1, m.w1.2, raw.w1.1, raw.w1.2
            ),
            target: Some(0.5),
            ratios: Vec::new(),
        },
        Row {
            scenario: "W1 on distinct records (no shared counter)",
            backend,
            service: m.w1_distinct.0,
            baseline: raw.w1.0,
            unit: "assoc/s",
            detail: format!(
                "p50 {:.2} ms / p99 {:.2} ms (raw W1 {:.2} / {:.2})",
                m.w1_distinct.1, m.w1_distinct.2, raw.w1.1, raw.w1.2
            ),
            target: None,
            ratios: Vec::new(),
        },
        Row {
            scenario: "W2 batches of 100, 4 clients",
            backend,
            service: m.w2,
            baseline: raw.w2,
            unit: "assoc/s",
            detail: String::new(),
            target: Some(0.5),
            ratios: Vec::new(),
        },
        Row {
            scenario: "W3 64 clients racing to one record's limit",
            backend,
            service: m.w3.0,
            baseline: raw.w3.0,
            unit: "assoc/s",
            detail: format!("limit held: {} created of {} attempts", m.w3.1, m.w3.2),
            target: Some(0.3),
            ratios: Vec::new(),
        },
        Row {
            scenario: "W4 16 clients on one portal ÷ on 16 portals",
            backend,
            service: m.w4.0,
            baseline: m.w4.1,
            unit: "assoc/s",
            detail: "service on one portal beside the service on sixteen".into(),
            target: Some(0.9),
            ratios: Vec::new(),
        },
    ]
}

fn rows_for(backend: &'static str, m: &Measured, raw: &Measured) -> Vec<Row> {
    let mut rows = write_rows(backend, m, raw);
    rows.extend([
        Row {
            scenario: "Bulk load, batches of 2,000 into one record",
            backend,
            service: m.seed,
            baseline: raw.w2,
            unit: "assoc/s",
            detail: "baseline: W2's raw rate".into(),
            target: None,
            ratios: Vec::new(),
        },
        Row {
            scenario: "R0 ListAssociations of 500, one call at a time",
            backend,
            service: m.r0.0,
            baseline: raw.r0.0,
            unit: "calls/s",
            detail: format!(
                "p50 {:.2} ms / p99 {:.2} ms (raw query {:.2} / {:.2}; target p50 ≤ 3 ms); row layout p50 {:.2} / p99 {:.2}",
                m.r0.1, m.r0.2, raw.r0.1, raw.r0.2, m.r0_rows.1, m.r0_rows.2
            ),
            target: None,
            ratios: Vec::new(),
        },
        Row {
            scenario: "R1 stream one record's associations",
            backend,
            service: m.reads[0].service(),
            baseline: m.reads[0].baseline(),
            unit: "rows/s",
            detail: format!(
                "server peak RSS {:.0} MiB (target ≤ 64), {:.0} MiB resident as R1 began",
                m.r1.1, m.r1.2
            ),
            target: Some(0.8),
            ratios: m.reads[0].ratios(),
        },
        Row {
            scenario: "R2 batch-stream records",
            backend,
            service: m.reads[1].service(),
            baseline: m.reads[1].baseline(),
            unit: "rows/s",
            detail: String::new(),
            target: None,
            ratios: m.reads[1].ratios(),
        },
        Row {
            scenario: "R3 export a portal",
            backend,
            service: m.reads[2].service(),
            baseline: m.reads[2].baseline(),
            unit: "rows/s",
            detail: String::new(),
            target: Some(0.8),
            ratios: m.reads[2].ratios(),
        },
        Row {
            scenario: "R4 REST v4 batch read, one call",
            backend,
            service: m.reads[3].service(),
            baseline: m.reads[3].baseline(),
            unit: "rows/s",
            detail: format!("p50 {:.1} ms / p99 {:.1} ms per call", m.r4.1, m.r4.2),
            target: Some(0.5),
            ratios: m.reads[3].ratios(),
        },
    ]);
    rows
}

fn render(rows: &[Row], scale: &Scale, pg_note: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Scale `{}`: W1 {} creates; W2 {} batches of 100; W3 limit {}; R1/R3 {} associations of one record; R2 {} records × {}.\n",
        scale.name,
        scale.w1_ops,
        W2_CLIENTS * scale.w2_batches_per_client,
        scale.w3_limit,
        scale.r1_rows,
        scale.r2_records,
        scale.r2_per_record
    ));
    out.push_str(&format!(
        "Machine: {} cores; {pg_note}. The baseline is raw PostgreSQL on the same rows, except for SQLite's R1–R4: SQLite itself (rusqlite, in the harness) reading the same rows from the store's file.\n\n| scenario | store | service | baseline | ratio | target | notes |\n|---|---|---|---|---|---|---|\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    ));
    for row in rows {
        let (ratio, spread) = match row.ratios.as_slice() {
            [] => (row.service / row.baseline, String::new()),
            ratios => {
                let lo = ratios.iter().copied().fold(f64::MAX, f64::min);
                let hi = ratios.iter().copied().fold(0.0, f64::max);
                let n = ratios.len();
                (
                    median(ratios.to_vec()),
                    format!(" ({lo:.2}–{hi:.2}, {n} rounds)"),
                )
            }
        };
        let target = match row.target {
            Some(t) if ratio >= t => format!("≥ {t} ✔"),
            Some(t) => format!("≥ {t} ✘"),
            None => "—".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {:.0} {} | {:.0} {} | {:.2}×{spread} | {} | {} |\n",
            row.scenario,
            row.backend,
            row.service,
            row.unit,
            row.baseline,
            row.unit,
            ratio,
            target,
            row.detail
        ));
    }
    out
}

const START: &str = "<!-- results:start -->";
const END: &str = "<!-- results:end -->";

fn write_doc(results: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.md");
    let existing = std::fs::read_to_string(path).unwrap_or_else(|_| {
        format!("# Benchmarks\n\nRerun: `cargo bench --bench associations`\n\n{START}\n{END}\n")
    });
    let (Some(a), Some(b)) = (existing.find(START), existing.find(END)) else {
        panic!("docs/benchmarks.md lacks the {START} / {END} markers");
    };
    let updated = format!("{}{START}\n{results}{}", &existing[..a], &existing[b..]);
    std::fs::write(path, updated).expect("write docs/benchmarks.md");
}

async fn pool(url: &str, size: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(size)
        .connect(url)
        .await
        .expect("connect to PostgreSQL")
}

/// The raw PostgreSQL write baselines (W1–W3) on `url`.
async fn raw_writes(url: &str, scale: &Scale) -> (PgPool, Measured) {
    let raw_pool = pool(url, 64).await;
    sqlx::query(RAW_TABLE)
        .execute(&raw_pool)
        .await
        .expect("baseline table");
    warm_up_raw(&raw_pool).await;
    let w1 = w1_raw(&raw_pool, scale).await;
    let w2 = w2_raw(&raw_pool, scale).await;
    let w3 = w3_raw(&raw_pool, scale).await;
    let raw = Measured {
        w1,
        w1_distinct: w1,
        w4: (0.0, 0.0),
        statements: None,
        batch_statements: None,
        w2,
        w3: (w3, 0, 0),
        seed: 0.0,
        r0: (0.0, 0.0, 0.0),
        r0_rows: (0.0, 0.0, 0.0),
        r1: (0.0, 0.0, 0.0),
        r4: (0.0, 0.0, 0.0),
        reads: Default::default(),
    };
    (raw_pool, raw)
}

/// W1, W2, R1 and R3 on a fresh database of the single PostgreSQL at
/// `single_admin` and on two of the durable Citus cluster (the service
/// calling the coordinator only, and routed to the workers with
/// `store.route_to_workers`), alternating, for `CITUS_ROUNDS` rounds: a
/// table of medians, with each Citus ÷ single ratio (the median of the
/// rounds' ratios, and their spread).
async fn citus_beside_single(single_admin: &str, scale: &Scale) -> String {
    let cluster = tokio::task::spawn_blocking(common::durable_citus_cluster)
        .await
        .expect("a durable Citus cluster");
    let rounds: usize = std::env::var("CITUS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let setups: [(&str, &[(&str, &str)]); 3] = [
        ("single", &[]),
        ("citus via coordinator", &[]),
        (
            "citus routed",
            &[("ASSOC__STORE__ROUTE_TO_WORKERS", "true")],
        ),
    ];
    // Per setup, per round: W1 assoc/s, W1 p99 ms, W2 assoc/s, R1 rows/s, R3 rows/s.
    let mut runs: [Vec<[f64; 5]>; 3] = Default::default();
    for round in 1..=rounds {
        for (at, (name, settings)) in setups.iter().enumerate() {
            let url = match at {
                0 => common::fresh_database_on(single_admin).await,
                _ => common::fresh_database_on_citus(cluster).await,
            };
            let server = Server::start_with(&url, settings).await;
            warm_up_service(&server).await;
            let w1 = w1_service(&server, scale, W1_LOAD).await;
            let w2 = w2_service(&server, scale).await;
            seed(&server, R1_PORTAL, 1..=1, scale.r1_rows).await;
            let r1 = r1_service(&server, scale.r1_rows).await;
            let r3 = r3_service(&server, scale.r1_rows).await;
            drop(server);
            eprintln!(
                "round {round}, {name}: W1 {:.0} assoc/s (p99 {:.2} ms), W2 {w2:.0} assoc/s, R1 {:.0} rows/s, R3 {r3:.0} rows/s",
                w1.0, w1.2, r1.0
            );
            runs[at].push([w1.0, w1.2, w2, r1.0, r3]);
        }
    }
    let names = [
        "W1 single creates (assoc/s)",
        "W1 p99 (ms)",
        "W2 batches of 100 (assoc/s)",
        "R1 one record's stream (rows/s)",
        "R3 export (rows/s)",
    ];
    let mut table = format!(
        "| scenario ({} scale, {rounds} rounds) | single PostgreSQL | Citus via coordinator | Citus routed | via coordinator ÷ single (spread) | routed ÷ single (spread) |\n|---|---|---|---|---|---|\n",
        scale.name
    );
    for (i, name) in names.iter().enumerate() {
        let of = |at: usize| runs[at].iter().map(|r| r[i]).collect::<Vec<f64>>();
        let ratio = |at: usize| {
            let ratios: Vec<f64> = (0..rounds)
                .map(|r| runs[at][r][i] / runs[0][r][i])
                .collect();
            let lo = ratios.iter().copied().fold(f64::MAX, f64::min);
            let hi = ratios.iter().copied().fold(0.0, f64::max);
            format!("{:.2}× ({lo:.2}–{hi:.2})", median(ratios))
        };
        table.push_str(&format!(
            "| {name} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
            median(of(0)),
            median(of(1)),
            median(of(2)),
            ratio(1),
            ratio(2)
        ));
    }
    table
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let scale = match std::env::var("BENCH_SCALE").as_deref() {
        Ok("small") => &SMALL,
        _ => &FULL,
    };

    // Headline: production durability.
    let durable_admin = tokio::task::spawn_blocking(common::durable_postgres_admin_url)
        .await
        .expect("durable PostgreSQL");
    let pg_url = common::fresh_database_on(&durable_admin).await;
    let stats_pool = pool(&pg_url, 2).await;
    eprintln!("postgres store (fsync and synchronous_commit on)");
    let pg_server = Server::start(&pg_url).await;
    if std::env::var("BENCH_ONLY").as_deref() == Ok("writes") {
        // A quick loop for the write path: durable writes beside their baselines, nothing written.
        let pg = run_writes(&pg_server, scale, Some(&stats_pool)).await;
        drop(pg_server);
        let (_, raw) = raw_writes(&pg_url, scale).await;
        println!(
            "{}",
            render(
                &write_rows("postgres", &pg, &raw),
                scale,
                "durable PostgreSQL"
            )
        );
        for statements in [&pg.statements, &pg.batch_statements].into_iter().flatten() {
            println!("{statements}");
        }
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("citus") {
        drop(pg_server);
        println!("{}", citus_beside_single(&durable_admin, scale).await);
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("reads") {
        // A quick loop for the read path: R0–R3 on both stores beside their
        // baselines, nothing written.
        let base = pool(&pg_url, 4).await;
        let pg = run_reads(
            &pg_server,
            scale,
            run_writes_skipped(),
            Baseline::Copy(&base),
        )
        .await;
        drop(pg_server);
        let mut raw = run_writes_skipped();
        raw.r0 = r0_raw(&base).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("bench.db");
        let sqlite_server = Server::start(&format!("sqlite://{}", file.display())).await;
        let lite = run_reads(
            &sqlite_server,
            scale,
            run_writes_skipped(),
            Baseline::Sqlite(&file),
        )
        .await;
        drop(sqlite_server);
        let mut rows = rows_for("postgres", &pg, &raw);
        rows.extend(rows_for("sqlite", &lite, &raw));
        rows.retain(|r| r.scenario.starts_with('R'));
        println!("{}", render(&rows, scale, "durable PostgreSQL"));
        return;
    }
    let base = pool(&pg_url, 4).await;
    let pg = run_service(&pg_server, scale, Some(&stats_pool), Baseline::Copy(&base)).await;
    drop(pg_server);
    eprintln!("raw PostgreSQL baselines");
    let (raw_pool, mut raw) = raw_writes(&pg_url, scale).await;
    raw.r0 = r0_raw(&raw_pool).await;

    eprintln!("sqlite store");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bench.db");
    let sqlite_server = Server::start(&format!("sqlite://{}", file.display())).await;
    let lite = run_service(&sqlite_server, scale, None, Baseline::Sqlite(&file)).await;
    drop(sqlite_server);

    // Second table: the writes with fsync and synchronous_commit off.
    let fast_url = common::fresh_postgres_database().await;
    eprintln!("postgres store (fsync off), writes");
    let fast_server = Server::start(&fast_url).await;
    let fast = run_writes(&fast_server, scale, None).await;
    drop(fast_server);
    let (_, fast_raw) = raw_writes(&fast_url, scale).await;

    let mut rows = rows_for("postgres", &pg, &raw);
    rows.extend(rows_for("sqlite", &lite, &raw));
    let mut results = String::from("### Production durability (the headline)\n\n");
    results.push_str(&render(
        &rows,
        scale,
        "throwaway PostgreSQL 15 with fsync and synchronous_commit on (its defaults), shared by the service and the baseline; SQLite in WAL mode with synchronous=NORMAL",
    ));
    results.push_str("\n### Writes with fsync and synchronous_commit off\n\n");
    results.push_str(&render(
        &write_rows("postgres", &fast, &fast_raw),
        scale,
        "throwaway PostgreSQL 15 with fsync, synchronous_commit and full_page_writes off",
    ));
    if let Some(statements) = &pg.statements {
        results.push_str(&format!(
            "\n### What one create costs (W1, production durability, pg_stat_statements)\n\n{statements}"
        ));
    }
    if let Some(statements) = &pg.batch_statements {
        results.push_str(&format!(
            "\n### What one batch of 100 costs (W2, production durability, pg_stat_statements)\n\n{statements}"
        ));
    }
    println!("{results}");
    if scale.name == "full" {
        write_doc(&results);
        eprintln!("wrote docs/benchmarks.md");
    }
}
