//! The archive's fast path equals its full flow (issue 29): from the same
//! random snapshot, one database archives the same pairs with one call of
//! `association_archive` and the other with the Rust flow
//! (`archive_in_transaction`); the rows removed, the rows and counters left
//! and the change feed, entries in their order, must be equal. Seeded
//! (`DIFF_SEED=n` replays a run, its seed printed first); on PostgreSQL and
//! on Citus. A create the fast path hands to the full flow is counted by its
//! reason.
mod common;

use association_service::service::{AssociationInput, AssociationService};
use association_service::store::{PostgresStore, RetryPolicy, StoreOptions, TypeFilter};
use sqlx::{Connection, PgConnection};
use std::sync::Arc;
use std::time::Duration;

/// Rounds per run, each on a portal of its own.
const ROUNDS: i64 = 40;

/// Pairs of object types the rounds draw from: deals and quotes are where
/// text order ("0-14" < "0-3") and numeric order (3 < 14) disagree.
const PAIRS: [(&str, &str); 4] = [
    ("deals", "quotes"),
    ("quotes", "deals"),
    ("contacts", "companies"),
    ("deals", "contacts"),
];

/// One database: the service that writes its snapshots, the store whose
/// archive paths are compared, and a connection to read it back.
struct Side {
    svc: Arc<AssociationService>,
    store: PostgresStore,
    conn: PgConnection,
    _test_store: common::TestStore,
}

async fn side(backend: &str) -> Side {
    let test_store = common::fresh_store(backend).await;
    let opened = common::open(&test_store).await;
    let options = StoreOptions {
        max_connections: 4,
        retry: RetryPolicy::default(),
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(30),
        create_if_missing: true,
        route_to_workers: false,
    };
    let store = PostgresStore::connect(&test_store.url, &options)
        .await
        .expect("connect");
    let conn = PgConnection::connect(&test_store.url).await.unwrap();
    Side {
        svc: Arc::new(AssociationService::new(
            opened,
            common::settings(10_000, 50),
        )),
        store,
        conn,
        _test_store: test_store,
    }
}

/// What a portal holds: its rows, its counters and its feed in order.
type State = (Vec<String>, Vec<String>, Vec<String>);

async fn state(conn: &mut PgConnection, portal: i64) -> State {
    let mut read = Vec::new();
    for query in [
        "SELECT concat_ws(' ', from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
         FROM associations WHERE portal_id = $1 ORDER BY 1",
        "SELECT concat_ws(' ', object_type, object_id, category, type_id, count)
         FROM association_counts WHERE portal_id = $1 ORDER BY 1",
        "SELECT concat_ws(' ', kind, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
         FROM association_changes WHERE portal_id = $1 ORDER BY id",
    ] {
        read.push(
            sqlx::query_scalar::<_, String>(query)
                .bind(portal)
                .fetch_all(&mut *conn)
                .await
                .unwrap(),
        );
    }
    let feed = read.pop().unwrap();
    let counts = read.pop().unwrap();
    (read.pop().unwrap(), counts, feed)
}

/// The tests take turns: the fallback counter is the process's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn the_archive_paths_agree(backend: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (mut rng, seed) = common::Rng::from_env("DIFF_SEED");
    eprintln!("DIFF_SEED={seed}");
    let (mut fast, mut flow) = (side(backend).await, side(backend).await);
    let mut compared_rows = 0;
    for portal in 1..=ROUNDS {
        let (from, to) = PAIRS[rng.below(PAIRS.len() as u64) as usize];
        let pair = common::pair(portal, from, to);
        // The same snapshot on both sides.
        let mut held = Vec::new();
        for f in 1..=3 {
            for t in 1..=3 {
                if rng.below(2) == 0 {
                    held.push((f, t));
                }
            }
        }
        for side in [&fast, &flow] {
            if held.is_empty() {
                break;
            }
            let outcome = side.svc.create_default(pair, &held).await.unwrap();
            assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
        }
        // The same archive, one path on each side.
        let mut pairs = Vec::new();
        for f in 1..=3 {
            for t in 1..=3 {
                if rng.below(2) == 0 {
                    pairs.push((f, t));
                }
            }
        }
        let (from_type, to_type) = common::types(from, to);
        let one_call = fast
            .store
            .archive_in_one_call(portal, from_type, to_type, &pairs, &TypeFilter::All)
            .await
            .unwrap()
            .expect("the fast path applies with nobody else writing");
        let by_flow = flow
            .store
            .archive_by_flow(portal, from_type, to_type, &pairs, &TypeFilter::All)
            .await
            .unwrap();
        let context =
            format!("seed {seed}, portal {portal}: {from} -> {to}, archive {pairs:?} of {held:?}");
        assert_eq!(one_call, by_flow, "rows removed, {context}");
        compared_rows += one_call;
        let (a, b) = (
            state(&mut fast.conn, portal).await,
            state(&mut flow.conn, portal).await,
        );
        assert_eq!(a.0, b.0, "rows left, {context}");
        assert_eq!(a.1, b.1, "counters, {context}");
        assert_eq!(a.2, b.2, "the feed in order, {context}");
    }
    assert!(compared_rows > 0, "some rounds removed rows");

    // A create on a pair that holds something is presumed new (planned
    // without reading), finds it held under the locks, and falls back:
    // counted by its reason.
    let fallbacks = || {
        let text = association_service::telemetry::metrics::metrics().render(Default::default());
        text.lines()
            .find(|l| {
                l.starts_with(
                    "associations_fast_path_fallbacks_total{reason=\"create_presumption_failed\"}",
                )
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(|v| v.parse::<u64>().unwrap())
            .unwrap_or(0)
    };
    let before = fallbacks();
    let again = AssociationInput {
        from_id: 1,
        to_id: 1,
        types: vec![],
    };
    for _ in 0..2 {
        fast.svc
            .create(
                common::pair(ROUNDS + 1, "deals", "contacts"),
                std::slice::from_ref(&again),
            )
            .await
            .unwrap();
    }
    assert_eq!(fallbacks(), before + 1, "the second create fell back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_archive_paths_agree() {
    the_archive_paths_agree("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citus_the_archive_paths_agree() {
    the_archive_paths_agree("citus").await;
}
