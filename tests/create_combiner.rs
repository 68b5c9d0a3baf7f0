//! Group commit of creates, on each backend: calls that arrive while a
//! create transaction of their pair runs go together as the next one, are
//! planned in arrival order, and are written even when their caller left.
mod common;

use association_service::domain::plan::CreateItem;
use association_service::domain::{DomainError, ObjectType, PairCatalog, TypeKey};
use association_service::service::combiner::CreateCombiner;
use sqlx::Connection;

const PORTAL: i64 = 31;
const CEILING: u32 = 20;
const CALLS: i64 = 32;

/// Holds the store's write lock until `release`, so the first create blocks.
enum Blocker {
    Postgres(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Blocker {
    async fn hold(url: &str) -> Blocker {
        if url.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            for sql in ["BEGIN", "LOCK TABLE association_counts IN EXCLUSIVE MODE"] {
                sqlx::query(sql).execute(&mut conn).await.expect(sql);
            }
            Blocker::Postgres(conn)
        } else {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .expect("take the write lock");
            Blocker::Sqlite(conn)
        }
    }

    async fn release(self) {
        match self {
            Blocker::Postgres(mut conn) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut conn)
                    .await
                    .expect("release");
            }
            Blocker::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut conn)
                    .await
                    .expect("release");
            }
        }
    }
}

async fn calls_queued_behind_a_running_create_share_one_transaction(backend: &str) {
    let test_store = common::fresh_store(backend).await;
    let store = common::open(&test_store).await;
    let combiner = std::sync::Arc::new(CreateCombiner::new(store.clone(), 2_000));
    let catalog = PairCatalog::new(ObjectType::DEAL, ObjectType::CONTACT, vec![]).expect("catalog");
    let (deal, contact) = (ObjectType::DEAL, ObjectType::CONTACT);
    let call = |n: i64| {
        let (combiner, catalog) = (combiner.clone(), catalog.clone());
        tokio::spawn(async move {
            let item = CreateItem {
                from_id: n + 1,
                to_id: 1,
                types: vec![],
            };
            combiner
                .create(PORTAL, &catalog, deal, contact, CEILING, vec![item])
                .await
        })
    };

    let blocker = Blocker::hold(&test_store.url).await;
    let mut calls = vec![call(0)];
    common::until("the first call is being written", || {
        combiner.transactions() == 1 && combiner.waiting(PORTAL, deal, contact) == 0
    })
    .await;
    for n in 1..CALLS {
        calls.push(call(n));
        common::until("the call is queued", || {
            combiner.waiting(PORTAL, deal, contact) == n as usize
        })
        .await;
    }
    // Its caller goes away; the queued write still happens.
    calls[5].abort();
    blocker.release().await;

    for (n, handle) in calls.into_iter().enumerate() {
        if n == 5 {
            assert!(handle.await.unwrap_err().is_cancelled());
            continue;
        }
        let outcome = handle.await.expect("call task").expect("create call");
        assert_eq!(outcome.len(), 1, "{backend}: call {n} gets its own outcome");
        if n < CEILING as usize {
            // Deal n+1 now holds contact 1 by deal_to_contact (3).
            let held = outcome[0].as_ref().map(|h| (h.types.clone(), h.added));
            assert_eq!(
                held,
                Ok((vec![TypeKey::hubspot(3)], true)),
                "{backend}: call {n}"
            );
        } else {
            // Contact 1 filled up in arrival order, call 5 included.
            assert!(
                matches!(outcome[0], Err(DomainError::LimitExceeded(_))),
                "{backend}: call {n} should meet the limit: {:?}",
                outcome[0]
            );
        }
    }
    assert_eq!(
        combiner.transactions(),
        2,
        "{backend}: the first call alone, then the 31 queued ones together"
    );
    assert_eq!(store.counter_drift(PORTAL).await.expect("drift"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_calls_queued_behind_a_running_create_share_one_transaction() {
    calls_queued_behind_a_running_create_share_one_transaction("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_calls_queued_behind_a_running_create_share_one_transaction() {
    calls_queued_behind_a_running_create_share_one_transaction("postgres").await;
}
