//! The test harness itself (issue 33): a throwaway PostgreSQL whose port is
//! taken between choosing and binding it starts on another, for both ways
//! the suite starts one (the shared throwaway server and a test's own
//! cluster), so a port collision never fails a test.
mod common;

use sqlx::Connection;

/// Starts a server with the first port it tries taken (held by a listener
/// here): the port taken, and what `start` returned.
async fn with_a_taken_port<T: Send + 'static>(
    start: impl FnOnce() -> T + Send + 'static,
) -> (u16, T) {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to hold");
    let taken = held.local_addr().unwrap().port();
    common::try_port_first(taken);
    let started = tokio::task::spawn_blocking(start).await.unwrap();
    assert_eq!(common::ports_first_left(), 0, "the taken port was tried");
    drop(held);
    (taken, started)
}

async fn serves(port: u16) {
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("it serves");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
}

#[tokio::test]
async fn a_throwaway_postgres_whose_port_is_taken_starts_on_another() {
    let (taken, url) = with_a_taken_port(common::durable_postgres_admin_url).await;
    let port = common::url_port(&url);
    assert_ne!(port, taken);
    serves(port).await;

    // A test's own cluster (pg_ctl) likewise; stopped when dropped.
    let (taken, cluster) = with_a_taken_port(common::PrivatePostgres::start).await;
    assert_ne!(cluster.port(), taken);
    serves(cluster.port()).await;
}
