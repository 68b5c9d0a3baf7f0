//! Distribution on Citus (issue 29): `migrate` on a database with the
//! `citus` extension distributes every table by `portal_id`, colocated, with
//! shards on both workers of the throwaway cluster, says so, and does
//! nothing more when run again; on a plain PostgreSQL it distributes
//! nothing. The conformance suite, the model check, the change feed and
//! `verify` run on the cluster through their own files (backend `citus`).
mod common;

use association_service::store;
use association_service::store::postgres::distribute::TABLES;
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_distributes_every_table_by_portal_colocated() {
    let url = common::fresh_citus_database().await;
    let store = store::connect(&url, 4).await.expect("connect");
    let steps = store.migrate().await.expect("migrate");
    let distributed: Vec<&String> = steps
        .iter()
        .filter(|s| s.starts_with("distributed table "))
        .collect();
    assert_eq!(distributed.len(), TABLES.len(), "{steps:#?}");
    assert!(
        steps
            .iter()
            .all(|s| s.starts_with("applied migration ") || s.starts_with("distributed table ")),
        "{steps:#?}"
    );
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let rows: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT logicalrelid::text, column_to_column_name(logicalrelid, partkey), colocationid
         FROM pg_dist_partition ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut expected: Vec<&str> = TABLES.to_vec();
    expected.sort();
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        expected
    );
    assert!(rows.iter().all(|r| r.1 == "portal_id"), "{rows:?}");
    let groups: std::collections::BTreeSet<i32> = rows.iter().map(|r| r.2).collect();
    assert_eq!(groups.len(), 1, "one colocation group: {rows:?}");
    let nodes: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT nodeport) FROM pg_dist_shard_placement
         WHERE shardid IN (SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'associations'::regclass)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(nodes, 2, "the portals' shards are on both workers");
    // Again: nothing left to do.
    let again = store.migrate().await.expect("migrate again");
    assert_eq!(again, Vec::<String>::new());

    // A plain PostgreSQL distributes nothing.
    let plain = common::fresh_postgres_database().await;
    let store = store::connect(&plain, 4).await.expect("connect");
    let steps = store.migrate().await.expect("migrate");
    assert!(
        steps.iter().all(|s| s.starts_with("applied migration ")),
        "{steps:#?}"
    );
}
