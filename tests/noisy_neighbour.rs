//! Tenant capacity isolation against the real server binary on PostgreSQL
//! with authentication on: each attack of issue 28 runs while a victim
//! caller on another portal makes a call and an export with a one-second
//! deadline, which must be served. Attackers speak raw HTTP/2 (the `h2`
//! crate) where they must misbehave in ways a gRPC client never would:
//! bodies that never arrive, response windows never opened.
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use association_service::auth::token_hash;
use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{
    AssociationInput, CreateAssociationsRequest, ExportAssociationsRequest, FeedStartPoint,
    ListDefinitionsRequest, WatchChangesRequest,
};
use bytes::Bytes;
use common::ServerProcess;
use prost::Message;
use tokio_stream::StreamExt;
use tonic::Code;

const ATTACKER_PORTAL: i64 = 1;
const VICTIM_PORTAL: i64 = 2;
/// The caller's share of concurrent calls the test's server runs with.
const CALLER_SHARE: usize = 16;
/// The stream cap per caller (the stream pool holds 8).
const STREAMS_PER_CALLER: usize = 2;

fn token(name: &str, portal: i64, roles: &str) -> String {
    format!(
        "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nportals = [{portal}]\nroles = [{roles}]\n",
        token_hash(&common::token_for(name))
    )
}

/// The tokens file: an attacker on portal 1 (read and write), a victim on
/// portal 2, and a token the revocation attack removes.
fn tokens(with_revocable: bool) -> String {
    let mut text = token("attacker", ATTACKER_PORTAL, "\"read\", \"write\"");
    text.push_str(&token("reader", ATTACKER_PORTAL, "\"read\""));
    text.push_str(&token(
        "victim",
        VICTIM_PORTAL,
        "\"read\", \"write\", \"admin\"",
    ));
    if with_revocable {
        text.push_str(&token("revocable", VICTIM_PORTAL, "\"read\""));
    }
    text
}

struct Setup {
    server: ServerProcess,
    store_url: String,
    tokens_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn start() -> Setup {
    start_on(common::fresh_postgres_database().await, None).await
}

/// The server on `store_url` (a SQLite file's folder is kept as `dir`).
async fn start_on(store_url: String, dir: Option<tempfile::TempDir>) -> Setup {
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let tokens_file = dir.path().join("tokens.toml");
    std::fs::write(&tokens_file, tokens(true)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
max_concurrent_calls = 64
max_concurrent_calls_per_caller = {CALLER_SHARE}
max_concurrent_calls_per_portal = 32
request_body_timeout_ms = 2000
idle_timeout_ms = 1000
calls_per_second_per_portal = 0

[store]
max_connections = 8

[read]
chunk_size = 100
stall_timeout_ms = 1000
max_streams_per_caller = {STREAMS_PER_CALLER}
max_streams_per_portal = 4
cursor_secret = "a cursor secret for the noisy neighbour test"

[auth]
tokens_file = "{}"
reload_interval_ms = 300
"#,
            tokens_file.display()
        ),
    )
    .unwrap();
    let config_text = config.display().to_string();
    let server = ServerProcess::start(&store_url, &[("ASSOC_CONFIG", config_text.as_str())]).await;
    Setup {
        server,
        store_url,
        tokens_file,
        _dir: dir,
    }
}

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .parse()
        .expect("an address")
}

/// Fills both portals: 20,000 associations (40,000 rows) in the
/// attacker's, 50 in the victim's.
async fn fill(server: &ServerProcess) {
    let mut write = AssociationWriteClient::new(server.channel().await);
    for (portal, name, batches, size) in [
        (ATTACKER_PORTAL, "attacker", 10, 2_000),
        (VICTIM_PORTAL, "victim", 1, 50),
    ] {
        for batch in 0..batches {
            let inputs = (0..size)
                .map(|i| AssociationInput {
                    from_id: 1 + (batch * size + i) / 20,
                    to_id: 1 + (batch * size + i) % 20 + 1_000_000,
                    types: vec![],
                })
                .collect();
            let request = CreateAssociationsRequest {
                portal_id: portal,
                from_object_type: "contacts".into(),
                to_object_type: "companies".into(),
                inputs,
            };
            let answer = write
                .create_associations(common::with_token(request, name))
                .await
                .expect("fill");
            assert!(answer.into_inner().errors.is_empty());
        }
    }
}

/// The victim's call and whole export, each within one second.
async fn victim_is_served(server: &ServerProcess, during: &str) {
    let started = Instant::now();
    let mut read = AssociationReadClient::new(server.channel().await);
    let mut request = common::with_token(
        ListDefinitionsRequest {
            portal_id: VICTIM_PORTAL,
            from_object_type: "contacts".into(),
            to_object_type: "companies".into(),
        },
        "victim",
    );
    request.set_timeout(Duration::from_secs(1));
    read.list_definitions(request)
        .await
        .unwrap_or_else(|s| panic!("during {during}: the victim's call failed: {s:?}"));
    let mut request = common::with_token(
        ExportAssociationsRequest {
            portal_id: VICTIM_PORTAL,
            ..Default::default()
        },
        "victim",
    );
    request.set_timeout(Duration::from_secs(1));
    let mut stream = read
        .export_associations(request)
        .await
        .unwrap_or_else(|s| panic!("during {during}: the victim's export failed: {s:?}"))
        .into_inner();
    let mut rows = 0;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.unwrap_or_else(|s| panic!("during {during}: the victim's export broke: {s:?}"));
        rows += chunk.rows.len();
    }
    // 50 associations both ways, and each of the 3 contacts' first company
    // also as its primary, both ways.
    assert_eq!(rows, 106, "during {during}: the victim's whole export");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "during {during}: the victim waited {took:?}"
    );
    eprintln!("during {during}: victim served in {took:?}");
}

/// A raw HTTP/2 connection (its driver runs in a task that ends when the
/// server closes it).
async fn h2_connect(
    addr: SocketAddr,
    window: u32,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(window)
        .initial_connection_window_size(window.max(65_535))
        .handshake(tcp)
        .await
        .expect("an HTTP/2 handshake");
    (send, tokio::spawn(connection))
}

fn grpc_request(path: &str, token: Option<&str>) -> http::Request<()> {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(name) = token {
        request = request.header(
            "authorization",
            format!("Bearer {}", common::token_for(name)),
        );
    }
    request.body(()).unwrap()
}

/// A gRPC message frame.
fn frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    Bytes::from(framed)
}

/// The gRPC status of an answer (headers of a trailers-only answer, or
/// its trailers).
async fn grpc_status(response: h2::client::ResponseFuture) -> Option<i32> {
    let response = response.await.ok()?;
    let code = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    if let Some(code) = code(response.headers()) {
        return Some(code);
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.ok()?;
        let _ = body.flow_control().release_capacity(data.len());
    }
    code(&body.trailers().await.ok()??)
}

/// Calls of anyone (no token) to the open health check whose bodies never
/// arrive, 11 connections of 100: the peer's share is held until the body
/// timeout ends them, every other call is refused at once, and the victim
/// is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noisy_neighbours_leave_other_tenants_served() {
    let setup = start().await;
    let server = &setup.server;
    fill(server).await;
    let grpc = addr(&server.grpc);
    victim_is_served(server, "no attack").await;

    // 1. Bodies that never arrive, from anyone.
    let started = Instant::now();
    let mut pending = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..11 {
        let (mut send, driver) = h2_connect(grpc, 65_535).await;
        for _ in 0..100 {
            send = send
                .ready()
                .await
                .expect("a stream place on the connection");
            let (response, body) = send
                .send_request(grpc_request("/grpc.health.v1.Health/Check", None), false)
                .expect("send the headers");
            pending.push((response, body));
        }
        connections.push((send, driver));
    }
    victim_is_served(server, "1,100 calls whose bodies never arrive").await;
    let mut codes = std::collections::BTreeMap::new();
    for (response, body) in pending {
        let code = grpc_status(response).await;
        *codes.entry(code).or_insert(0) += 1;
        drop(body);
    }
    let took = started.elapsed();
    eprintln!("stalled bodies: {codes:?} after {took:?}");
    assert_eq!(
        codes.get(&Some(Code::InvalidArgument as i32)).copied(),
        Some(CALLER_SHARE),
        "the peer's share was held until the body timeout: {codes:?}"
    );
    assert_eq!(
        codes.get(&Some(Code::ResourceExhausted as i32)).copied(),
        Some(1_100 - CALLER_SHARE),
        "every other call was refused: {codes:?}"
    );
    assert!(took < Duration::from_secs(10), "ended in {took:?}");
    drop(connections);

    // 2. Exports a read-only token never reads.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let (send, driver, response, sent) = unread_export(grpc, "reader").await;
        match response.headers().get("grpc-status") {
            Some(code) => {
                assert_eq!(code, &(Code::ResourceExhausted as i32).to_string());
                refused += 1;
            }
            None => {
                sent.expect("an open stream took its request");
                held.push((send, driver, response))
            }
        }
    }
    assert_eq!(
        (held.len(), refused),
        (STREAMS_PER_CALLER, 20 - STREAMS_PER_CALLER)
    );
    victim_is_served(server, "20 unread exports").await;
    // Past the stall time the unread exports end, and give their database
    // connections back: the server counts each stall once it has dropped
    // the export's scan.
    wait_for_stalls(server, STREAMS_PER_CALLER as u64).await;
    assert_eq!(export_backends(&setup.store_url).await, 0);
    victim_is_served(server, "20 unread exports, stalled").await;
    for (_, _, response) in held {
        assert_ends_stalled(response).await;
    }

    // 3. Made-up method names of a real service: one `unknown` series.
    let (mut send, _driver) = h2_connect(grpc, 65_535).await;
    let mut answers = Vec::new();
    for i in 0..10_000 {
        send = send.ready().await.unwrap();
        let path = format!("/associations.v1.AssociationRead/MadeUp{i}");
        let (response, _) = send.send_request(grpc_request(&path, None), true).unwrap();
        answers.push(response);
        if answers.len() == 50 {
            for answer in answers.drain(..) {
                let _ = answer.await;
            }
        }
    }
    for answer in answers {
        let _ = answer.await;
    }
    let metrics = common::http(addr(&server.rest), "GET", "/metrics", None).await;
    assert_eq!(metrics.status, 200);
    eprintln!(
        "/metrics after 10,000 made-up paths: {} bytes",
        metrics.body.len()
    );
    assert!(
        metrics.body.len() < 300_000,
        "/metrics grew to {} bytes",
        metrics.body.len()
    );
    assert!(
        !metrics.body.contains("MadeUp"),
        "a made-up path became a label"
    );

    // 4. Idle connections are closed.
    let mut idle = Vec::new();
    for _ in 0..190 {
        idle.push(h2_connect(grpc, 65_535).await);
    }
    victim_is_served(server, "190 idle connections").await;
    let closed_by = Instant::now() + Duration::from_secs(10);
    for (send, driver) in idle {
        let left = closed_by.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, driver)
            .await
            .expect("an idle connection is closed")
            .unwrap()
            .ok();
        drop(send);
    }

    // 5. Slow REST bodies count against their caller only.
    let rest = addr(&server.rest);
    let mut slow = Vec::new();
    for _ in 0..CALLER_SHARE + 4 {
        slow.push(stalled_rest_request(rest, "attacker").await);
    }
    victim_is_served(server, "slow REST bodies").await;
    let answer = common::http_as(
        rest,
        "GET",
        "/crm/v3/associations/contacts/companies/types",
        None,
        Some(&common::token_for("victim")),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut statuses = std::collections::BTreeMap::new();
    for stream in slow {
        let answer = tokio::time::timeout(Duration::from_secs(10), common::http_over(stream, b""))
            .await
            .expect("a slow body is answered")
            .expect("an answer");
        *statuses.entry(answer.status).or_insert(0) += 1;
    }
    assert_eq!(
        statuses,
        std::collections::BTreeMap::from([(400, CALLER_SHARE), (429, 4)]),
        "the caller's share held until the body timeout, the rest refused"
    );

    // 6. A revoked token's open stream ends.
    let mut read = AssociationReadClient::new(server.channel().await);
    let mut feed = read
        .watch_changes(common::with_token(
            WatchChangesRequest {
                portal_id: VICTIM_PORTAL,
                cursor: String::new(),
                start: FeedStartPoint::Now as i32,
                stop_at_head: false,
            },
            "revocable",
        ))
        .await
        .expect("a feed")
        .into_inner();
    write_atomically(&setup.tokens_file, &tokens(false));
    let revoked = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match feed.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Some(status),
                None => return None,
            }
        }
    })
    .await
    .expect("the revoked token's stream ends");
    let status = ended.expect("it ends with a status");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    eprintln!("revoked stream ended after {:?}", revoked.elapsed());
}

/// An export of the attacker's portal on a connection whose window (1 KiB)
/// the client never opens; the answer's headers, and whether its request
/// went out (a refused stream may be reset before it does).
async fn unread_export(
    grpc: SocketAddr,
    token: &str,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
    http::Response<h2::RecvStream>,
    Result<(), h2::Error>,
) {
    let (mut send, driver) = h2_connect(grpc, 1_024).await;
    send = send.ready().await.unwrap();
    let (response, mut body) = send
        .send_request(
            grpc_request(
                "/associations.v1.AssociationRead/ExportAssociations",
                Some(token),
            ),
            false,
        )
        .unwrap();
    let sent = body.send_data(
        frame(&ExportAssociationsRequest {
            portal_id: ATTACKER_PORTAL,
            ..Default::default()
        }),
        true,
    );
    let response = response.await.expect("an answer's headers");
    (send, driver, response, sent)
}

/// Waits (at most 10 s) until the server has counted `at_least` stalled
/// streams, each counted once its scan is dropped.
async fn wait_for_stalls(server: &ServerProcess, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = common::http(addr(&server.rest), "GET", "/metrics", None).await;
        if stalls(&scrape.body) >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the unread exports never stalled"
        );
    }
}

/// Reads a stalled stream to its end: ABORTED (STREAM_STALLED).
async fn assert_ends_stalled(response: http::Response<h2::RecvStream>) {
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.expect("data");
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(
        trailers.get("grpc-status").unwrap(),
        &(Code::Aborted as i32).to_string(),
        "{trailers:?}"
    );
}

/// `PRAGMA wal_checkpoint(PASSIVE)` on the SQLite file: the frames in its
/// log and how many of them are now in the database file.
async fn checkpoint(url: &str) -> (i64, i64) {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (busy, log, moved): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(busy, 0, "a passive checkpoint is never busy");
    conn.close().await.unwrap();
    (log, moved)
}

/// On SQLite an unread export holds a read snapshot, which keeps the log
/// frames written after it from reaching the database file (the log only
/// grows); once the stream stalls and its scan is dropped, a checkpoint
/// moves every frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_stream_does_not_pin_the_sqlite_log() {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}/associations.db", dir.path().display());
    let setup = start_on(store_url.clone(), Some(dir)).await;
    let server = &setup.server;
    fill(server).await;
    let (_send, _driver, response, sent) = unread_export(addr(&server.grpc), "reader").await;
    assert!(
        response.headers().get("grpc-status").is_none(),
        "{response:?}"
    );
    sent.expect("the export took its request");
    victim_is_served(server, "an unread export on SQLite").await;
    // The victim writes while the export is held open.
    let mut write = AssociationWriteClient::new(server.channel().await);
    for batch in 0..20 {
        let request = CreateAssociationsRequest {
            portal_id: VICTIM_PORTAL,
            from_object_type: "deals".into(),
            to_object_type: "contacts".into(),
            inputs: (0..50)
                .map(|i| AssociationInput {
                    from_id: 1 + batch,
                    to_id: 1 + i,
                    types: vec![],
                })
                .collect(),
        };
        let answer = write
            .create_associations(common::with_token(request, "victim"))
            .await
            .expect("the victim's write");
        assert!(answer.into_inner().errors.is_empty());
    }
    let (log, moved) = checkpoint(&store_url).await;
    eprintln!("while the export is unread: {moved} of {log} log frames checkpointed");
    assert!(moved < log, "the unread export pinned the log");
    wait_for_stalls(server, 1).await;
    let stalled = Instant::now();
    loop {
        let (log, moved) = checkpoint(&store_url).await;
        if moved == log {
            eprintln!(
                "stalled: all {log} log frames checkpointed after {:?}",
                stalled.elapsed()
            );
            break;
        }
        assert!(
            stalled.elapsed() < Duration::from_secs(1),
            "{moved} of {log} frames checkpointed a second after the stall"
        );
    }
    assert_ends_stalled(response).await;
}

/// Streams the server ended because their clients did not read.
fn stalls(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("associations_overload_refusals_total{reason=\"stream_stalled\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// How many database sessions run an export's statement.
async fn export_backends(store_url: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(store_url).await.unwrap();
    let database = store_url.rsplit('/').next().unwrap().to_string();
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() AND state <> 'idle' AND query ILIKE '%associations%' AND query NOT ILIKE '%pg_stat_activity%'",
    )
    .bind(database)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

/// A REST write whose body stops arriving after its first bytes.
async fn stalled_rest_request(addr: SocketAddr, name: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /crm/v4/associations/contacts/companies/batch/read HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"inputs\"",
        common::token_for(name)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

fn write_atomically(path: &Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, path).unwrap();
}
