//! Readiness follows the database (PostgreSQL): while it refuses
//! connections, gRPC health's overall status turns `NOT_SERVING` and
//! `/readyz` answers 503, while `liveness` and `/healthz` stay up, and calls
//! fail within 2 s with `UNAVAILABLE` (REST 503 with `Retry-After`); once it
//! accepts them again the service is ready and writes again by itself. The test
//! follows gRPC health's `Watch` stream, which tells each change.
mod common;

use std::time::{Duration, Instant};

use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{AssociationInput, CreateAssociationsRequest};
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
    let server = TestServer::start("postgres", |s| {
        s.server.health_check_interval_ms = 50;
        s.store.max_connections = 2;
    })
    .await;
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

    // Calls fail fast with UNAVAILABLE (REST 503 with Retry-After), well
    // within a client's usual deadline: first on the pool's dead
    // connections, then (the pool of 2 emptied) waiting for new ones.
    let mut writer = AssociationWriteClient::new(server.channel().await);
    for attempt in 0..4 {
        let started = Instant::now();
        let refused = writer
            .create_associations(create_one(1, 2))
            .await
            .expect_err("no database");
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        let grpc_took = started.elapsed();
        let started = Instant::now();
        let answer = common::http(
            server.http_addr,
            "GET",
            "/crm/v4/objects/contacts/1/associations/companies",
            None,
        )
        .await;
        let rest_took = started.elapsed();
        assert_eq!(answer.status, 503, "attempt {attempt}: {}", answer.body);
        assert!(answer.body.contains("STORE_UNAVAILABLE"), "{}", answer.body);
        let retry_after = answer
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
            .map(|(_, value)| value.as_str());
        assert_eq!(retry_after, Some("1"), "{:?}", answer.headers);
        for took in [grpc_took, rest_took] {
            assert!(
                took < Duration::from_secs(2),
                "attempt {attempt} failed after {took:?}"
            );
        }
    }

    // It comes back: the service is ready again without a restart.
    allow_connections(&mut admin, database, true).await;
    until(&mut overall, ServingStatus::Serving).await;
    assert_eq!(probe(&server, "/readyz").await, 200);
    writer
        .create_associations(create_one(1, 2))
        .await
        .expect("calls succeed again without a restart");
    server.stop().await;
}

fn create_one(from_id: i64, to_id: i64) -> CreateAssociationsRequest {
    CreateAssociationsRequest {
        portal_id: 1,
        from_object_type: "contacts".into(),
        to_object_type: "companies".into(),
        inputs: vec![AssociationInput {
            from_id,
            to_id,
            types: vec![],
        }],
    }
}

/// A TCP proxy in front of PostgreSQL that the test can take away (its
/// connections cut and its port refusing new ones, as when the database
/// host is down) and bring back on the same port.
struct Proxy {
    addr: std::net::SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = tokio::sync::watch::channel(true);
        let watch = up.clone();
        tokio::spawn(async move {
            let mut listener = Some(listener);
            let mut state = watch.subscribe();
            loop {
                match listener.as_ref() {
                    Some(open) => tokio::select! {
                        accepted = open.accept() => {
                            let Ok((client, _)) = accepted else { continue };
                            let mut cut = watch.subscribe();
                            let target = target.clone();
                            tokio::spawn(async move {
                                let Ok(server) = tokio::net::TcpStream::connect(&target).await else { return };
                                let (mut client, mut server) = (client, server);
                                tokio::select! {
                                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                    _ = cut.wait_for(|up| !up) => {}
                                }
                            });
                        }
                        _ = state.changed() => {
                            if !*state.borrow() {
                                listener = None;
                            }
                        }
                    },
                    None => {
                        if state.changed().await.is_err() {
                            return;
                        }
                        if *state.borrow() {
                            listener =
                                Some(tokio::net::TcpListener::bind(addr).await.expect("rebind"));
                        }
                    }
                }
            }
        });
        Proxy { addr, up }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// With the database host gone (connections cut, new ones refused), every
/// call fails within store.acquire_timeout_ms (1 s by default) with
/// UNAVAILABLE, not after the pool's old 30 s; once it is back, calls
/// succeed again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_while_the_database_host_is_gone() {
    let store = common::fresh_store("postgres").await;
    let (scheme_and_user, rest) = store.url.split_once('@').expect("user@host");
    let (host, database) = rest.split_once('/').expect("host/database");
    let proxy = Proxy::start(host.to_string()).await;
    let proxied = format!("{scheme_and_user}@{}/{database}", proxy.addr);
    let server = common::TestServer::start_on(store, |s| {
        s.store.url = proxied;
        s.store.max_connections = 2;
    })
    .await;
    let mut writer = AssociationWriteClient::new(server.channel().await);
    writer
        .create_associations(create_one(1, 2))
        .await
        .expect("through the proxy");

    proxy.set_up(false);
    for attempt in 0..4 {
        let started = Instant::now();
        let refused = writer
            .create_associations(create_one(1, 3))
            .await
            .expect_err("no database");
        let took = started.elapsed();
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        assert!(
            took < Duration::from_secs(2),
            "attempt {attempt} failed after {took:?}"
        );
    }

    proxy.set_up(true);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match writer.create_associations(create_one(1, 3)).await {
            Ok(_) => break,
            Err(status)
                if status.code() == tonic::Code::Unavailable && Instant::now() < deadline =>
            {
                // The pool reconnects on the next call; each refusal is fast.
                continue;
            }
            Err(status) => panic!("the service did not recover: {status:?}"),
        }
    }
    server.stop().await;
}
