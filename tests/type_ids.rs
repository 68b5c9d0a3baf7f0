//! HubSpot's type ids: the built-in table against the migration that moved
//! stored data onto it (the two must list the same types), and that upgrade
//! on each store: ids the previous version allocated leave HubSpot's
//! numeric space, pairs HubSpot defines types for since take its ids, labels
//! keep theirs, and counters, limits and the feed follow.
mod common;

use association_service::domain::builtin::{
    builtin_definitions, ALLOCATED_UNLABELED_BASE, ONE_WAY,
};
use association_service::domain::limits::{LimitChange, LimitMode};
use association_service::domain::{ObjectType, TypeRole};
use association_service::service::AssociationService;
use common::{hs, input, pair};
use std::sync::Arc;

const POSTGRES_MIGRATION: &str =
    include_str!("../migrations/postgres/20261206000011_allocated_ids_outside_hubspot.sql");
const SQLITE_MIGRATION: &str =
    include_str!("../migrations/sqlite/20261206000007_allocated_ids_outside_hubspot.sql");
const POSTGRES_ONE_WAY: &str =
    include_str!("../migrations/postgres/20261206000016_one_way_hubspot_types.sql");
const SQLITE_ONE_WAY: &str =
    include_str!("../migrations/sqlite/20261206000011_one_way_hubspot_types.sql");
const PORTAL: i64 = 101;

/// The (from, to, type id) rows the migration maps allocated types onto.
fn migration_rows() -> Vec<(ObjectType, ObjectType, i32)> {
    rows_of(POSTGRES_MIGRATION)
}

/// The (from, to, type id) rows a migration lists.
fn rows_of(migration: &str) -> Vec<(ObjectType, ObjectType, i32)> {
    migration
        .lines()
        .filter_map(|line| line.trim().strip_prefix("('"))
        .map(|row| {
            let fields: Vec<&str> = row
                .trim_end_matches([',', ';'])
                .trim_end_matches(')')
                .split(", ")
                .map(|f| f.trim_matches('\''))
                .collect();
            (
                ObjectType::parse(fields[0]).unwrap(),
                ObjectType::parse(fields[1]).unwrap(),
                fields[2].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_migration_lists_exactly_the_types_hubspot_defines_for_the_later_objects() {
    assert_eq!(POSTGRES_MIGRATION, SQLITE_MIGRATION, "one migration text");
    let rows = migration_rows();
    assert_eq!(rows.len(), 194, "97 pairs, both directions");
    for &(from, to, id) in &rows {
        let unlabeled: Vec<i32> = builtin_definitions(from, to)
            .iter()
            .filter(|d| d.role == TypeRole::Unlabeled)
            .map(|d| d.key.type_id)
            .collect();
        assert_eq!(unlabeled, vec![id], "{from} -> {to}");
    }
    // The other way: every built-in unlabeled type touching one of the
    // later standard objects is in the migration.
    let later = [18, 19, 53, 69, 101, 116, 123, 136, 142, 162, 410, 420, 421]
        .map(|n| ObjectType::parse(&format!("0-{n}")).unwrap());
    let every: Vec<ObjectType> = [1, 2, 3, 5, 7, 8, 14, 27, 46, 47, 48, 49, 115]
        .map(|n| ObjectType::parse(&format!("0-{n}")).unwrap())
        .into_iter()
        .chain(later)
        .collect();
    for &from in &every {
        for &to in &every {
            if !later.contains(&from) && !later.contains(&to) {
                continue;
            }
            for def in builtin_definitions(from, to) {
                assert!(
                    rows.contains(&(from, to, def.key.type_id)),
                    "{from} -> {to} {} is built in but not migrated",
                    def.key.type_id
                );
            }
        }
    }
}

/// Runs `sql` (several statements) on the store.
async fn execute(backend: &str, store: &common::TestStore, sql: &str) {
    match backend {
        "sqlite" => {
            let pool = sqlx::SqlitePool::connect(&store.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
        _ => {
            let pool = sqlx::PgPool::connect(&store.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
    }
}

/// The type ids the change feed holds.
async fn distinct_feed_types(backend: &str, store: &common::TestStore) -> Vec<i32> {
    let sql = "SELECT DISTINCT type_id FROM association_changes ORDER BY type_id";
    match backend {
        "sqlite" => {
            let pool = sqlx::SqlitePool::connect(&store.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
        }
        _ => {
            let pool = sqlx::PgPool::connect(&store.url).await.unwrap();
            sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
        }
    }
}

/// What the previous version stored: allocated HUBSPOT_DEFINED ids from
/// the counter (1000 up), and an allocated unlabeled type (1010/1011) for
/// subscription <-> ticket, which HubSpot defines as 1121/1122 now.
const PREVIOUS_VERSION: &str = "
UPDATE association_definitions
   SET type_id = type_id - 1000000000, inverse_type_id = inverse_type_id - 1000000000
 WHERE category = 1 AND type_id >= 1000000000;
UPDATE associations SET type_id = type_id - 1000000000 WHERE category = 1 AND type_id >= 1000000000;
UPDATE association_counts SET type_id = type_id - 1000000000 WHERE category = 1 AND type_id >= 1000000000;
UPDATE association_limits SET type_id = type_id - 1000000000 WHERE category = 1 AND type_id >= 1000000000;
UPDATE association_changes SET type_id = type_id - 1000000000 WHERE category = 1 AND type_id >= 1000000000;
INSERT INTO association_definitions
    (portal_id, category, type_id, inverse_type_id, from_object_type, to_object_type, label, name)
VALUES (101, 1, 1010, 1011, '0-69', '0-5', NULL, 'subscription_to_ticket'),
       (101, 1, 1011, 1010, '0-5', '0-69', NULL, 'ticket_to_subscription');
UPDATE associations SET type_id = type_id - 111 WHERE category = 1 AND type_id IN (1121, 1122);
UPDATE association_counts SET type_id = type_id - 111 WHERE category = 1 AND type_id IN (1121, 1122);
UPDATE association_limits SET type_id = type_id - 111 WHERE category = 1 AND type_id IN (1121, 1122);
UPDATE association_changes SET type_id = type_id - 111 WHERE category = 1 AND type_id IN (1121, 1122);
";

async fn types_read(
    svc: &Arc<AssociationService>,
    from: &str,
    id: i64,
    to: &str,
) -> Vec<(i64, Vec<i32>)> {
    common::read_types(svc, PORTAL, from, id, to).await
}

/// Sets an admin limit of 5 on `type_id` between `from` and `to`.
async fn limit_five(svc: &Arc<AssociationService>, from: &str, to: &str, type_id: i32) {
    let change = LimitChange {
        key: hs(type_id),
        max_to_object_ids: 5,
    };
    svc.set_limits(
        "suite",
        pair(PORTAL, from, to),
        &[change],
        LimitMode::Create,
    )
    .await
    .unwrap();
}

/// The admin limits set between `from` and `to`: (type id, limit).
async fn limits_set(
    svc: &Arc<AssociationService>,
    from: ObjectType,
    to: ObjectType,
) -> Vec<(i32, Option<u32>)> {
    svc.limits(PORTAL, Some((from, to)))
        .await
        .unwrap()
        .iter()
        .filter(|l| l.user_limit.is_some())
        .map(|l| (l.def.key.type_id, l.user_limit))
        .collect()
}

async fn upgrade_moves_allocated_ids(backend: &str) {
    let settings = common::settings(50, 100);
    let (svc, store) = common::service(backend, settings.clone()).await;
    // Today's version: a label takes counter values 1000/1001, the custom
    // pair's unlabeled type the next two, above the base.
    let label = svc
        .create_label(
            "suite",
            pair(PORTAL, "contacts", "companies"),
            "Billing",
            "billing",
            None,
        )
        .await
        .unwrap()[0]
        .key;
    assert_eq!(label.type_id, 1000);
    for (from, to) in [("contacts", "2-7"), ("subscriptions", "tickets")] {
        let made = svc
            .create(pair(PORTAL, from, to), &[input(1, 2, &[])])
            .await
            .unwrap();
        assert!(made.errors.is_empty(), "{:?}", made.errors);
    }
    let custom_id = ALLOCATED_UNLABELED_BASE + 1002;
    assert_eq!(
        types_read(&svc, "contacts", 1, "2-7").await,
        vec![(2, vec![custom_id])]
    );
    limit_five(&svc, "subscriptions", "tickets", 1121).await;

    execute(backend, &store, PREVIOUS_VERSION).await;
    execute(backend, &store, POSTGRES_MIGRATION).await;

    let svc = Arc::new(AssociationService::new(
        common::open(&store).await,
        settings,
    ));
    assert_eq!(
        types_read(&svc, "contacts", 1, "2-7").await,
        vec![(2, vec![custom_id])]
    );
    assert_eq!(
        types_read(&svc, "2-7", 2, "contacts").await,
        vec![(1, vec![custom_id + 1])]
    );
    assert_eq!(
        types_read(&svc, "subscriptions", 1, "tickets").await,
        vec![(2, vec![1121])]
    );
    assert_eq!(
        types_read(&svc, "tickets", 2, "subscriptions").await,
        vec![(1, vec![1122])]
    );
    assert_eq!(
        limits_set(&svc, ObjectType::SUBSCRIPTION, ObjectType::TICKET).await,
        vec![(1121, Some(5))]
    );
    let labels: Vec<i32> = svc
        .definitions(pair(PORTAL, "contacts", "companies"))
        .await
        .unwrap()
        .iter()
        .filter(|d| d.label.as_deref() == Some("Billing"))
        .map(|d| d.key.type_id)
        .collect();
    assert_eq!(labels, vec![1000], "labels keep their ids");
    assert_eq!(
        svc.counter_drift(PORTAL).await.unwrap(),
        0,
        "counters follow"
    );
    // The feed's rows follow too: nothing stays in HubSpot's space.
    let fed = distinct_feed_types(backend, &store).await;
    assert!(fed.contains(&1121) && fed.contains(&custom_id), "{fed:?}");
    let expected = [1121, 1122, custom_id, custom_id + 1];
    assert!(fed.iter().all(|t| expected.contains(t)), "{fed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrade_moves_allocated_ids_out_of_hubspot_space() {
    upgrade_moves_allocated_ids("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrade_moves_allocated_ids_out_of_hubspot_space() {
    upgrade_moves_allocated_ids("postgres").await;
}

#[test]
fn the_one_way_migration_lists_exactly_the_one_way_types() {
    assert_eq!(POSTGRES_ONE_WAY, SQLITE_ONE_WAY, "one migration text");
    assert_eq!(rows_of(POSTGRES_ONE_WAY), ONE_WAY.to_vec());
}

/// A pair HubSpot lists one direction of (lead to call, 596): a store of
/// the previous version allocated both directions; the upgrade gives the
/// listed one HubSpot's id, with its rows, counters, limit and feed, and
/// the other keeps its allocated id.
async fn upgrade_gives_one_way_pairs_hubspots_id(backend: &str) {
    let settings = common::settings(50, 100);
    let (svc, store) = common::service(backend, settings.clone()).await;
    let made = svc
        .create(pair(PORTAL, "leads", "calls"), &[input(1, 2, &[])])
        .await
        .unwrap();
    assert!(made.errors.is_empty(), "{:?}", made.errors);
    let allocated = ALLOCATED_UNLABELED_BASE + 1000;
    assert_eq!(
        types_read(&svc, "leads", 1, "calls").await,
        vec![(2, vec![596])]
    );
    assert_eq!(
        types_read(&svc, "calls", 2, "leads").await,
        vec![(1, vec![allocated])]
    );
    limit_five(&svc, "leads", "calls", 596).await;
    // The previous version: lead to call allocated too.
    let old = ALLOCATED_UNLABELED_BASE + 1001;
    let previous = format!(
        "UPDATE association_definitions SET type_id = {old} WHERE category = 1 AND type_id = 596;
         UPDATE association_definitions SET inverse_type_id = {old} WHERE category = 1 AND inverse_type_id = 596;
         UPDATE associations SET type_id = {old} WHERE category = 1 AND type_id = 596;
         UPDATE association_counts SET type_id = {old} WHERE category = 1 AND type_id = 596;
         UPDATE association_limits SET type_id = {old} WHERE category = 1 AND type_id = 596;
         UPDATE association_changes SET type_id = {old} WHERE category = 1 AND type_id = 596;"
    );
    execute(backend, &store, &previous).await;
    let reopened = Arc::new(AssociationService::new(
        common::open(&store).await,
        settings.clone(),
    ));
    assert_eq!(
        types_read(&reopened, "leads", 1, "calls").await,
        vec![(2, vec![old])]
    );

    execute(backend, &store, POSTGRES_ONE_WAY).await;

    let svc = Arc::new(AssociationService::new(
        common::open(&store).await,
        settings,
    ));
    assert_eq!(
        types_read(&svc, "leads", 1, "calls").await,
        vec![(2, vec![596])]
    );
    assert_eq!(
        types_read(&svc, "calls", 2, "leads").await,
        vec![(1, vec![allocated])]
    );
    assert_eq!(
        limits_set(&svc, ObjectType::LEAD, ObjectType::CALL).await,
        vec![(596, Some(5))]
    );
    // Writes after the upgrade use the moved type, by HubSpot's id.
    let made = svc
        .create(pair(PORTAL, "leads", "calls"), &[input(3, 4, &[hs(596)])])
        .await
        .unwrap();
    assert!(made.errors.is_empty(), "{:?}", made.errors);
    // The other direction's type names HubSpot's id as its inverse.
    let made = svc
        .create(pair(PORTAL, "calls", "leads"), &[input(6, 5, &[])])
        .await
        .unwrap();
    assert!(made.errors.is_empty(), "{:?}", made.errors);
    assert_eq!(
        types_read(&svc, "leads", 5, "calls").await,
        vec![(6, vec![596])]
    );
    assert_eq!(
        svc.counter_drift(PORTAL).await.unwrap(),
        0,
        "counters follow"
    );
    assert_eq!(
        distinct_feed_types(backend, &store).await,
        vec![596, allocated]
    );
    common::assert_sound(&svc.verify().await.unwrap(), "after the upgrade");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrade_gives_one_way_pairs_hubspots_id() {
    upgrade_gives_one_way_pairs_hubspots_id("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrade_gives_one_way_pairs_hubspots_id() {
    upgrade_gives_one_way_pairs_hubspots_id("postgres").await;
}
