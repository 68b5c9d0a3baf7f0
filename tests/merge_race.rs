//! A merge that runs while another merges its survivor away waits for it
//! and merges into where that one went: merges resolve their ids under the
//! portal's merge lock, inside their transaction. The interleaving is made
//! on purpose: the counters are held by another connection, so the first
//! merge stops after taking the merge lock, and the second is started while
//! it waits.
mod common;

use std::time::{Duration, Instant};

use association_service::domain::ObjectType;
use common::{input, pair};
use sqlx::Connection;

const PORTAL: i64 = 41;

/// Sessions of the test database waiting for a lock.
async fn waiting(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(conn)
    .await
    .expect("pg_stat_activity")
}

/// Waits (a bounded poll of the server's own view, never a fixed sleep)
/// until `n` sessions wait for a lock.
async fn until_waiting(conn: &mut sqlx::PgConnection, n: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiting(conn).await < n {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merge_waits_for_the_merge_of_its_survivor_and_follows_it() {
    let (svc, store) = common::service("postgres", common::settings(50, 100)).await;
    let contact = ObjectType::CONTACT;
    let made = svc
        .create(
            pair(PORTAL, "contacts", "companies"),
            &[input(1, 10, &[]), input(2, 11, &[]), input(3, 12, &[])],
        )
        .await
        .unwrap();
    assert!(made.errors.is_empty(), "{:?}", made.errors);

    let mut holder = sqlx::PgConnection::connect(&store.url).await.unwrap();
    for sql in ["BEGIN", "LOCK TABLE association_counts IN EXCLUSIVE MODE"] {
        sqlx::query(sql).execute(&mut holder).await.expect(sql);
    }
    let mut watcher = sqlx::PgConnection::connect(&store.url).await.unwrap();
    // Contact 1 into 3: it takes the merge lock, then waits for counters.
    let first = tokio::spawn({
        let svc = svc.clone();
        async move { svc.merge(PORTAL, contact, 3, 1).await }
    });
    until_waiting(&mut watcher, 1, "the first merge waits for the counters").await;
    // Contact 2 into 1, which the first merge is moving away.
    let second = tokio::spawn({
        let svc = svc.clone();
        async move { svc.merge(PORTAL, contact, 1, 2).await }
    });
    until_waiting(&mut watcher, 2, "the second merge waits too").await;
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();

    let first = first.await.unwrap().expect("the first merge");
    let second = second.await.unwrap().expect("the second merge");
    assert_eq!((first.primary_id, second.primary_id), (3, 3));
    // Every id names contact 3, which holds every company.
    for id in [1, 2, 3] {
        assert_eq!(
            svc.record_by_id(PORTAL, contact, id).await.unwrap().id,
            3,
            "{id}"
        );
        let companies: Vec<i64> = common::read_types(&svc, PORTAL, "contacts", id, "companies")
            .await
            .into_iter()
            .map(|(company, _)| company)
            .collect();
        assert_eq!(companies, vec![10, 11, 12], "contact {id}");
    }
    assert_eq!(svc.counter_drift(PORTAL).await.unwrap(), 0);
    common::assert_sound(&svc.verify().await.unwrap(), "after both merges");
}
