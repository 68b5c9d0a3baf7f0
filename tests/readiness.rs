//! Readiness follows the database (PostgreSQL): while it refuses
//! connections, gRPC health's overall status turns `NOT_SERVING` and
//! `/readyz` answers 503, while `liveness` and `/healthz` stay up; once it
//! accepts them again the service is ready again by itself. The test
//! follows gRPC health's `Watch` stream, which tells each change.
mod common;

use common::TestServer;
use sqlx::Connection;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Reads `watch` until it reports `wanted` (bounded by a deadline).
async fn until(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
    wanted: ServingStatus,
) {
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let answer = watch.message().await.expect("health").expect("not the end");
            if answer.status() == wanted {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("health never reported {wanted:?}"));
}

/// The HTTP status of a probe endpoint.
async fn probe(server: &TestServer, path: &str) -> u16 {
    common::http(server.http_addr, "GET", path, None)
        .await
        .status
}

/// Lets `database` accept new connections, or not.
async fn allow_connections(admin: &mut sqlx::PgConnection, database: &str, allow: bool) {
    sqlx::query(&format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS {allow}"
    ))
    .execute(admin)
    .await
    .expect("ALTER DATABASE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database() {
    let server = TestServer::start("postgres", |s| s.server.health_check_interval_ms = 50).await;
    let url = server.store.url.clone();
    let (base, database) = url.rsplit_once('/').expect("a database name");
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .expect("admin");
    let mut health = HealthClient::new(server.channel().await);
    let watch = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    let mut overall = health.watch(watch("")).await.expect("watch").into_inner();
    until(&mut overall, ServingStatus::Serving).await;
    assert_eq!(probe(&server, "/readyz").await, 200);

    // The database goes away: it accepts no connections, and loses its own.
    allow_connections(&mut admin, database, false).await;
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(database)
        .execute(&mut admin)
        .await
        .unwrap();
    until(&mut overall, ServingStatus::NotServing).await;
    assert_eq!(probe(&server, "/readyz").await, 503);
    assert_eq!(probe(&server, "/healthz").await, 200);
    let live = health
        .check(watch("liveness"))
        .await
        .expect("liveness")
        .into_inner();
    assert_eq!(
        live.status(),
        ServingStatus::Serving,
        "the process still lives"
    );

    // It comes back: the service is ready again without a restart.
    allow_connections(&mut admin, database, true).await;
    until(&mut overall, ServingStatus::Serving).await;
    assert_eq!(probe(&server, "/readyz").await, 200);
    server.stop().await;
}
