//! The fast paths equal the full flows (issue 29): from the same random
//! snapshot, one database archives the same pairs with one call of
//! `association_archive` and the other with the Rust flow
//! (`archive_in_transaction`), or creates the same items with one call of
//! `association_create_presumed` (its row-by-row form for a few rows, its
//! set-based form for more) and with `create_in_transaction`; the outcomes,
//! the rows and counters left and the change feed, entries in their order,
//! must be equal. Seeded (`DIFF_SEED=n` replays a run, its seed printed
//! first); on PostgreSQL and on Citus. A create the fast path hands to the
//! full flow is counted by its reason.
mod common;

use association_service::domain::plan::{CreateItem, WriteContext};
use association_service::domain::PairCatalog;
use association_service::service::{AssociationInput, AssociationService};
use association_service::store::{
    Definitions, PostgresStore, RetryPolicy, StoreOptions, TypeFilter,
};
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

/// What a portal holds: its rows, its counters and its feed in order. A
/// counter at zero counts as none (the full flow creates the counters it
/// locks, the one call only those it raises).
type State = (Vec<String>, Vec<String>, Vec<String>);

async fn state(conn: &mut PgConnection, portal: i64) -> State {
    let mut read = Vec::new();
    for query in [
        "SELECT concat_ws(' ', from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
         FROM associations WHERE portal_id = $1 ORDER BY 1",
        "SELECT concat_ws(' ', object_type, object_id, category, type_id, count)
         FROM association_counts WHERE portal_id = $1 AND count <> 0 ORDER BY 1",
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

/// Both sides hold the same rows (named `rows`), counters and feed.
async fn same_state(sides: [&mut Side; 2], portal: i64, rows: &str, context: &str) {
    let [fast, flow] = sides;
    let (a, b) = (
        state(&mut fast.conn, portal).await,
        state(&mut flow.conn, portal).await,
    );
    assert_eq!(a.0, b.0, "{rows}, {context}");
    assert_eq!(a.1, b.1, "counters, {context}");
    assert_eq!(a.2, b.2, "the feed in order, {context}");
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
        let held = half_of_square(&mut rng);
        same_snapshot([&fast, &flow], pair, &held).await;
        // The same archive, one path on each side.
        let pairs = half_of_square(&mut rng);
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
        same_state([&mut fast, &mut flow], portal, "rows left", &context).await;
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

/// About half of the pairs of records 1 to 3 on each side, drawn.
fn half_of_square(rng: &mut common::Rng) -> Vec<(i64, i64)> {
    let mut pairs = Vec::new();
    for f in 1..=3 {
        for t in 1..=3 {
            if rng.below(2) == 0 {
                pairs.push((f, t));
            }
        }
    }
    pairs
}

/// The same snapshot on both sides: `held` of `pair` made through the
/// service.
async fn same_snapshot(
    sides: [&Side; 2],
    pair: association_service::service::PortalPair,
    held: &[(i64, i64)],
) {
    for side in sides {
        if held.is_empty() {
            break;
        }
        let outcome = side.svc.create_default(pair, held).await.unwrap();
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    }
}

async fn the_create_paths_agree(backend: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (mut rng, seed) = common::Rng::from_env("DIFF_SEED");
    eprintln!("DIFF_SEED={seed}");
    let (mut fast, mut flow) = (side(backend).await, side(backend).await);
    // Rounds the one call applied, by its form: (row by row, set-based).
    let mut applied = (0, 0);
    let mut refused = (0, 0);
    for portal in 1..=ROUNDS {
        // Every pair meets every size and ceiling (rounds 8 to 39): a few
        // items (the row-by-row form) or more (set-based), under a ceiling
        // the held rows reach or under none.
        let index = portal as usize;
        let (from, to) = PAIRS[(index / 8) % PAIRS.len()];
        let ceiling = [1, 2, 3, 10_000][(index / 2) % 4];
        let pair = common::pair(portal, from, to);
        let held = half_of_square(&mut rng);
        same_snapshot([&fast, &flow], pair, &held).await;
        // Items of the default type from the held records to new ones: the
        // pairs are new, so only a limit (or a missing primary) stops the
        // one call. A few: one or two from held records. More: one from
        // each held record to a record of its own (six counters), and up
        // to three between new records.
        let item = |from_id, to_id| CreateItem {
            from_id,
            to_id,
            types: vec![],
        };
        let items: Vec<CreateItem> = match index % 2 {
            0 => (0..=rng.below(2))
                .map(|_| item(1 + rng.below(3) as i64, 4 + rng.below(4) as i64))
                .collect(),
            _ => (1..=3)
                .map(|f| item(f, 4 + f))
                .chain((0..rng.below(4)).map(|n| item(8 + n as i64, 11 + n as i64)))
                .collect(),
        };
        let (from_type, to_type) = common::types(from, to);
        let catalog = PairCatalog::new(
            from_type,
            to_type,
            fast.store
                .pair_definitions(portal, from_type, to_type)
                .await
                .unwrap(),
        )
        .unwrap();
        let ctx = WriteContext {
            portal_id: portal,
            from: from_type,
            to: to_type,
            catalog: &catalog,
            ceiling,
        };
        // Each new pair is two rows (the inverse) and two counters: two
        // items or fewer fit the row-by-row form of up to four.
        let one_call = match fast.store.create_in_one_call(&ctx, &items).await.unwrap() {
            Some(outcomes) => {
                if items.len() <= 2 {
                    applied.0 += 1;
                } else {
                    applied.1 += 1;
                }
                outcomes
            }
            None => fast.store.create_by_flow(&ctx, &items).await.unwrap(),
        };
        let by_flow = flow.store.create_by_flow(&ctx, &items).await.unwrap();
        let context = format!(
            "seed {seed}, portal {portal}: {from} -> {to}, create {:?} over {held:?}, ceiling {ceiling}",
            items.iter().map(|i| (i.from_id, i.to_id)).collect::<Vec<_>>()
        );
        assert_eq!(one_call, by_flow, "outcomes, {context}");
        // Refusals, by the form the one call would have taken.
        let errors = by_flow.iter().filter(|o| o.is_err()).count();
        if items.len() <= 2 {
            refused.0 += errors;
        } else {
            refused.1 += errors;
        }
        same_state([&mut fast, &mut flow], portal, "rows", &context).await;
    }
    assert!(
        applied.0 > 0 && applied.1 > 0,
        "the one call applied in both forms (row by row, set-based): {applied:?}"
    );
    assert!(
        refused.0 > 0 && refused.1 > 0,
        "a limit refused items of both forms: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_create_paths_agree() {
    the_create_paths_agree("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citus_the_create_paths_agree() {
    the_create_paths_agree("citus").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_archive_paths_agree() {
    the_archive_paths_agree("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citus_the_archive_paths_agree() {
    the_archive_paths_agree("citus").await;
}
