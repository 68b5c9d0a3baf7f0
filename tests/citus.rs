//! Distribution on Citus (issue 29): `migrate` on a database with the
//! `citus` extension distributes every table by `portal_id`, colocated, with
//! shards on both workers of the throwaway cluster, says so, and does
//! nothing more when run again; on a plain PostgreSQL it distributes
//! nothing. A portal's shard moves and is isolated while it is written and
//! its feed read. The conformance suite, the model check, the change feed
//! and `verify` run on the cluster through their own files (backend
//! `citus`).
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

/// The shard (of `associations`) holding `portal`, and the port of the
/// worker it is on.
async fn placement(conn: &mut sqlx::PgConnection, portal: i64) -> (i64, i32) {
    sqlx::query_as(
        "SELECT s.shard, p.nodeport
         FROM (SELECT get_shard_id_for_distribution_column('associations', $1) AS shard) s
         JOIN pg_dist_shard_placement p ON p.shardid = s.shard",
    )
    .bind(portal)
    .fetch_one(conn)
    .await
    .unwrap()
}

/// A portal's shard moves to the other worker (online, by logical
/// replication), then the portal gets a shard of its own (its writes
/// blocked while the shard splits: the online split's replication did not
/// start on this cluster), while a writer creates and a reader follows the
/// portal's feed: every acknowledged create is stored, the writer and the reader see
/// only retriable errors, the feed holds every change once and replays to
/// what is stored, and `verify` passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_portal_moves_and_is_isolated_while_written_and_read() {
    use association_service::domain::feed::FeedStart;
    use association_service::domain::{ErrorKind, ObjectType};
    use association_service::service::AssociationInput;
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use tokio::sync::watch;

    const PORTAL: i64 = 5;
    let retriable = |kind: ErrorKind| matches!(kind, ErrorKind::Unavailable | ErrorKind::Aborted);
    let (svc, store) = common::service("citus", common::settings(10_000, 50)).await;
    let (acked_tx, mut acked_rx) = watch::channel(0usize);
    let (stop_tx, stop_rx) = watch::channel(false);
    let writer = {
        let svc = Arc::clone(&svc);
        tokio::spawn(async move {
            let (mut acked, mut errors) = (Vec::new(), 0);
            let mut i = 0i64;
            while !*stop_rx.borrow() {
                let (deal, contact) = (1 + i / 50, 1_000 + i);
                let input = AssociationInput {
                    from_id: deal,
                    to_id: contact,
                    types: vec![],
                };
                match svc
                    .create(common::pair(PORTAL, "deals", "contacts"), &[input])
                    .await
                {
                    Ok(outcome) => {
                        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
                        acked.push((deal, contact));
                        acked_tx.send_replace(acked.len());
                        i += 1;
                    }
                    Err(err) => {
                        assert!(retriable(err.kind()), "the writer saw {err:?}");
                        errors += 1;
                    }
                }
            }
            (acked, errors)
        })
    };
    let (head_tx, mut head_rx) = watch::channel(None::<i64>);
    let reader = {
        let svc = Arc::clone(&svc);
        tokio::spawn(async move {
            let (mut seen, mut errors) = (Vec::new(), 0);
            let mut start = FeedStart::Beginning;
            loop {
                let mut receiver = match svc.watch_changes(PORTAL, start).await {
                    Ok(receiver) => receiver,
                    Err(err) => {
                        assert!(retriable(err.kind()), "the reader saw {err:?}");
                        errors += 1;
                        continue;
                    }
                };
                loop {
                    let last = seen.last().map(|(seq, _, _)| *seq).unwrap_or(0);
                    if head_rx.borrow().is_some_and(|head| last >= head) {
                        return (seen, errors);
                    }
                    tokio::select! {
                        chunk = receiver.recv() => match chunk {
                            Some(Ok(chunk)) => {
                                seen.extend(chunk.changes.iter().map(|(c, _)| (c.seq, c.kind, c.row)));
                                start = svc.feed_start(PORTAL, Some(&chunk.cursor), None).unwrap();
                            }
                            Some(Err(err)) => {
                                assert!(retriable(err.kind()), "the reader saw {err:?}");
                                errors += 1;
                                break;
                            }
                            None => break,
                        },
                        _ = head_rx.changed() => {}
                    }
                }
            }
        })
    };

    let cluster = common::citus_cluster();
    let mut conn = sqlx::PgConnection::connect(&store.url).await.unwrap();
    acked_rx.wait_for(|n| *n >= 100).await.unwrap();
    let (shard, from) = placement(&mut conn, PORTAL).await;
    let to = cluster
        .workers
        .iter()
        .map(|w| i32::from(common::url_port(w)))
        .find(|port| *port != from)
        .unwrap();
    sqlx::query("SELECT citus_move_shard_placement($1, '127.0.0.1', $2, '127.0.0.1', $3)")
        .bind(shard)
        .bind(from)
        .bind(to)
        .execute(&mut conn)
        .await
        .expect("move the portal's shard");
    assert_eq!(placement(&mut conn, PORTAL).await, (shard, to), "moved");
    let moved_at = *acked_rx.borrow();
    acked_rx.wait_for(|n| *n >= moved_at + 100).await.unwrap();
    let own: i64 =
        sqlx::query_scalar("SELECT isolate_tenant_to_new_shard('associations', $1::bigint, 'CASCADE', shard_transfer_mode => 'block_writes')")
            .bind(PORTAL)
            .fetch_one(&mut conn)
            .await
            .expect("isolate the portal");
    assert_eq!(
        placement(&mut conn, PORTAL).await.0,
        own,
        "a shard of its own"
    );
    let isolated_at = *acked_rx.borrow();
    acked_rx
        .wait_for(|n| *n >= isolated_at + 100)
        .await
        .unwrap();
    stop_tx.send_replace(true);
    let (acked, write_errors) = writer.await.unwrap();
    let head = svc.feed_head(PORTAL).await.unwrap();
    head_tx.send_replace(Some(head));
    let (seen, read_errors) = reader.await.unwrap();
    eprintln!(
        "{} creates acknowledged, {write_errors} retriable write errors, {read_errors} retriable feed errors, feed head {head}",
        acked.len()
    );

    // Every acknowledged create is stored.
    let mut stored = BTreeSet::new();
    let mut receiver = svc
        .stream_export(common::export(PORTAL, None, None, None))
        .await
        .unwrap();
    while let Some(chunk) = receiver.recv().await {
        stored.extend(chunk.unwrap().rows.into_iter().map(|(row, _)| row));
    }
    let pairs: BTreeSet<(i64, i64)> = stored
        .iter()
        .filter(|r| r.from_type == ObjectType::parse("deals").unwrap())
        .map(|r| (r.from_id, r.to_id))
        .collect();
    for pair in &acked {
        assert!(pairs.contains(pair), "acknowledged {pair:?} is stored");
    }
    // The feed: every change once, gap-free, replaying to what is stored.
    let replayed = common::replay_feed(&seen, head);
    assert_eq!(replayed, stored);
    common::assert_sound(
        &svc.verify().await.unwrap(),
        "after the move and the isolation",
    );
}
