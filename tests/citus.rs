//! Distribution on Citus (issue 29): `migrate` on a database with the
//! `citus` extension distributes every table by `portal_id`, colocated, with
//! shards on both workers of the throwaway cluster, says so, and does
//! nothing more when run again; on a plain PostgreSQL it distributes
//! nothing; the write functions run on the worker that holds their portal
//! and the feed keeps commit order when a portal moves to a worker whose
//! change ids start lower. A portal's shard moves and is isolated while it
//! is written and its feed read. The conformance suite, the model check, the change feed
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
    // The helpers are copied by Citus itself when it distributes the
    // tables (or by migrate, which then says so); the writers by migrate.
    let functions: Vec<&str> = steps
        .iter()
        .filter(|s| s.contains(" function "))
        .map(String::as_str)
        .collect();
    assert_eq!(
        functions,
        [
            "distributed function association_create_presumed by its portal (Citus, run on the node that holds it)",
            "distributed function association_archive by its portal (Citus, run on the node that holds it)",
            "distributed function association_apply by its portal (Citus, run on the node that holds it, inside transactions too)",
        ]
    );
    assert_eq!(
        steps.len(),
        steps
            .iter()
            .filter(|s| s.starts_with("applied migration "))
            .count()
            + TABLES.len()
            + functions.len(),
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

/// The ids of a portal's changes, in order.
async fn change_ids(conn: &mut sqlx::PgConnection, portal: i64) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM association_changes WHERE portal_id = $1 ORDER BY id")
        .bind(portal)
        .fetch_all(conn)
        .await
        .unwrap()
}

/// Every write of a portal runs on the worker that holds it: each of its
/// changes draws its id there (the coordinator's sequence is never drawn
/// from). After the portal's shard moves to a worker whose ids start lower,
/// its changes draw lower ids than the ones they followed, and the feed
/// still numbers them in commit order: create, archive, create, archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_run_where_the_portal_is_and_keep_commit_order_across_a_move() {
    use association_service::domain::feed::{ChangeKind, FeedStart};
    use association_service::domain::ObjectType;
    use association_service::service::AssociationInput;
    use association_service::store::{PostgresStore, RetryPolicy, StoreOptions, TypeFilter};

    let (svc, test_store) = common::service("citus", common::settings(10_000, 50)).await;
    let mut conn = sqlx::PgConnection::connect(&test_store.url).await.unwrap();
    let functions: Vec<(String, Option<i32>, bool)> = sqlx::query_as(
        "SELECT p.proname::text, o.distribution_argument_index, o.force_delegation IS TRUE
         FROM pg_catalog.pg_dist_object o JOIN pg_proc p ON p.oid = o.objid
         WHERE o.classid = 'pg_proc'::regclass AND p.proname LIKE 'association%' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        functions,
        [
            ("association_apply".to_string(), Some(0), true),
            ("association_archive".into(), Some(0), false),
            ("association_archive_rows".into(), None, false),
            ("association_change_order".into(), None, false),
            ("association_create_presumed".into(), Some(0), false),
            ("association_type_order".into(), None, false),
        ]
    );
    // The workers by group, which is where each node's ids start (group << 48).
    let workers: Vec<(i32, i32)> = sqlx::query_as(
        "SELECT nodeport, groupid FROM pg_dist_node WHERE groupid > 0 ORDER BY groupid",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(workers.len(), 2, "{workers:?}");
    let ((low_port, low_group), (high_port, high_group)) = (workers[0], workers[1]);
    let mut portal = 1;
    while placement(&mut conn, portal).await.1 != high_port {
        portal += 1;
    }
    let range = |group: i32| (i64::from(group) << 48)..(i64::from(group + 1) << 48);
    let pair = || common::pair(portal, "deals", "contacts");
    let input = || AssociationInput {
        from_id: 1,
        to_id: 2,
        types: vec![],
    };

    // A create by the one call, on the higher worker; left unnumbered.
    let created = svc.create(pair(), &[input()]).await.unwrap();
    assert!(created.errors.is_empty(), "{:?}", created.errors);
    let first = change_ids(&mut conn, portal).await;
    assert_eq!(first.len(), 2, "both directions logged: {first:?}");
    assert!(
        first.iter().all(|id| range(high_group).contains(id)),
        "drawn on the worker of group {high_group}: {first:?}"
    );

    // A delegated create is one call on the worker, in one local
    // transaction: no connection from the worker to itself (a statement
    // Citus plans with intermediate results opened one per call, and
    // committed in two phases).
    let database = test_store.url.rsplit('/').next().unwrap().to_string();
    let worker_url = format!("postgres://postgres@127.0.0.1:{high_port}/{database}");
    let mut worker = sqlx::PgConnection::connect(&worker_url).await.unwrap();
    let sessions = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()";
    let before: i64 = sqlx::query_scalar(sessions)
        .fetch_one(&mut worker)
        .await
        .unwrap();
    let mut other = portal + 1;
    while placement(&mut conn, other).await.1 != high_port {
        other += 1;
    }
    let mut caller = sqlx::PgConnection::connect(&test_store.url).await.unwrap();
    for id in 100..120i64 {
        let applied: bool = sqlx::query_scalar(
            "SELECT association_create_presumed($1, '0-3', '0-1', ARRAY[$2], ARRAY[$2],
                 '{}', '{}', 10000, '{}', '', '', 0::smallint, 0,
                 ARRAY['0-3', '0-1'], ARRAY[$2, $2], ARRAY['0-1', '0-3'], ARRAY[$2, $2],
                 '{1,1}', '{3,4}', ARRAY['0-3', '0-1'], ARRAY[$2, $2], '{1,1}', '{3,4}',
                 '{1,1}', 1::smallint, 0)",
        )
        .bind(other)
        .bind(id)
        .fetch_one(&mut caller)
        .await
        .unwrap();
        assert!(applied);
    }
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut worker)
        .await
        .unwrap();
    let after: i64 = sqlx::query_scalar(sessions)
        .fetch_one(&mut worker)
        .await
        .unwrap();
    assert!(
        after - before <= 1,
        "20 delegated creates opened {} sessions on the worker",
        after - before
    );

    // The shard moves to the lower worker.
    let (shard, _) = placement(&mut conn, portal).await;
    sqlx::query(
        "SELECT citus_move_shard_placement($1, '127.0.0.1', $2, '127.0.0.1', $3,
                                           shard_transfer_mode => 'block_writes')",
    )
    .bind(shard)
    .bind(high_port)
    .bind(low_port)
    .execute(&mut conn)
    .await
    .expect("move the portal's shard");
    assert_eq!(placement(&mut conn, portal).await, (shard, low_port));

    // An archive by the one call, a create, and an archive by the full flow.
    svc.archive(pair(), &[(1, vec![2])]).await.unwrap();
    let created = svc.create(pair(), &[input()]).await.unwrap();
    assert!(created.errors.is_empty(), "{:?}", created.errors);
    let options = StoreOptions {
        max_connections: 2,
        retry: RetryPolicy::default(),
        acquire_timeout: std::time::Duration::from_secs(5),
        statement_timeout: std::time::Duration::from_secs(30),
        create_if_missing: false,
        route_to_workers: false,
    };
    let store = PostgresStore::connect(&test_store.url, &options)
        .await
        .unwrap();
    let deals = ObjectType::parse("deals").unwrap();
    let contacts = ObjectType::parse("contacts").unwrap();
    let removed = store
        .archive_by_flow(portal, deals, contacts, &[(1, 2)], &TypeFilter::All)
        .await
        .unwrap();
    assert_eq!(removed, 2);
    let all = change_ids(&mut conn, portal).await;
    assert_eq!(all.len(), 8, "{all:?}");
    assert!(
        all[..6].iter().all(|id| range(low_group).contains(id)) && all[6..] == first[..],
        "the later changes drew lower ids, on the worker of group {low_group}: {all:?}"
    );
    let coordinator: i64 = sqlx::query_scalar("SELECT last_value FROM association_changes_id_seq")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(
        coordinator < 1 << 48,
        "no change drew its id on the coordinator: {coordinator}"
    );

    // The feed: numbered in id order, in commit order.
    let mut receiver = svc
        .watch_changes(portal, FeedStart::Beginning)
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 8 {
        let chunk = receiver.recv().await.unwrap().unwrap();
        kinds.extend(chunk.changes.iter().map(|(c, _)| c.kind));
    }
    use ChangeKind::{Archived, Created};
    assert_eq!(
        kinds,
        [Created, Created, Archived, Archived, Created, Created, Archived, Archived]
    );
    common::assert_sound(&svc.verify().await.unwrap(), "after the move");
}

/// The service's sessions on one node and what each ran last
/// (`pg_stat_activity` names a session by the service's application name).
async fn service_statements(url: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(
        "SELECT query FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'association-service'
         ORDER BY query",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// The service on a routed PostgreSQL store of the cluster at `url`, its
/// pools of `connections` waiting at most `acquire_timeout`.
async fn routed_service(
    url: &str,
    connections: u32,
    acquire_timeout: std::time::Duration,
) -> std::sync::Arc<association_service::service::AssociationService> {
    use association_service::store::{Maintenance, PostgresStore, StoreOptions};
    let options = StoreOptions {
        acquire_timeout,
        route_to_workers: true,
        ..StoreOptions::defaults(connections)
    };
    let store = PostgresStore::connect(url, &options).await.unwrap();
    store.migrate().await.unwrap();
    std::sync::Arc::new(association_service::service::AssociationService::new(
        std::sync::Arc::new(store),
        common::settings(10_000, 50),
    ))
}

/// With `store.route_to_workers`, a portal's one-call create and archive and
/// its stream run in sessions the service opened on the worker that holds
/// the portal, none of them on the other worker or the coordinator; the
/// shard is found with PostgreSQL's own hash (a seeded comparison with
/// `hashint8`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_calls_run_on_the_worker_that_holds_the_portal() {
    use association_service::service::AssociationInput;
    use association_service::store::postgres::route::hash_bigint;

    let (mut rng, seed) = common::Rng::from_env("ROUTE_SEED");
    println!("ROUTE_SEED={seed}");
    let mut values: Vec<i64> = vec![0, 1, -1, i64::MIN, i64::MAX, 1 << 32, -(1 << 32)];
    values.extend((0..2_000).map(|_| rng.below(u64::MAX) as i64));
    values.extend((0..2_000).map(|_| rng.below(1_000_000) as i64));
    let test_store = common::fresh_store("citus").await;
    let mut conn = sqlx::PgConnection::connect(&test_store.url).await.unwrap();
    let hashes: Vec<i32> = sqlx::query_scalar(
        "SELECT hashint8(v) FROM unnest($1::int8[]) WITH ORDINALITY AS u(v, n) ORDER BY n",
    )
    .bind(&values)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for (value, hash) in values.iter().zip(&hashes) {
        assert_eq!(hash_bigint(*value), *hash, "hashint8({value})");
    }

    let svc = routed_service(&test_store.url, 4, std::time::Duration::from_secs(5)).await;
    let workers: Vec<i32> =
        sqlx::query_scalar("SELECT nodeport FROM pg_dist_node WHERE groupid > 0 ORDER BY groupid")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let (low, high) = (workers[0], workers[1]);
    let mut portal = 1;
    while placement(&mut conn, portal).await.1 != high {
        portal += 1;
    }
    let database = test_store.url.rsplit('/').next().unwrap().to_string();
    let node = |port: i32| format!("postgres://postgres@127.0.0.1:{port}/{database}");
    let ran = |statements: &[String], call: &str| statements.iter().any(|q| q.contains(call));

    let pair = || common::pair(portal, "deals", "contacts");
    let input = AssociationInput {
        from_id: 1,
        to_id: 2,
        types: vec![],
    };
    let created = svc.create(pair(), &[input]).await.unwrap();
    assert!(created.errors.is_empty(), "{:?}", created.errors);
    let there = service_statements(&node(high)).await;
    assert!(ran(&there, "association_create_presumed("), "{there:#?}");
    let chunks = {
        let mut receiver = svc
            .stream_associations(common::list(portal, "deals", 1, None, None))
            .await
            .unwrap();
        let mut rows = 0;
        while let Some(chunk) = receiver.recv().await {
            rows += chunk.expect("chunk").records.len();
        }
        rows
    };
    assert_eq!(chunks, 1);
    svc.archive(pair(), &[(1, vec![2])]).await.unwrap();
    let there = service_statements(&node(high)).await;
    assert!(ran(&there, "association_archive("), "{there:#?}");
    assert!(ran(&there, "FROM associations"), "the stream: {there:#?}");

    let elsewhere = [
        service_statements(&node(low)).await,
        service_statements(&test_store.url).await,
    ]
    .concat();
    for call in [
        "association_create_presumed(",
        "association_archive(",
        "FROM associations",
    ] {
        assert!(
            !ran(&elsewhere, call),
            "{call} ran elsewhere: {elsewhere:#?}"
        );
    }
}

/// A routed node's pool that stays full is the caller's load, not a node
/// that refused: the call fails as unavailable after the acquire timeout
/// (it does not queue on the coordinator instead), and the node is not
/// passed over afterwards (the next call still runs on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_pool_is_load_not_a_refusal() {
    use association_service::domain::ErrorKind;
    use association_service::service::AssociationInput;
    use std::time::Duration;

    let test_store = common::fresh_store("citus").await;
    let svc = routed_service(&test_store.url, 1, Duration::from_millis(300)).await;
    let mut conn = sqlx::PgConnection::connect(&test_store.url).await.unwrap();
    let worker: i32 =
        sqlx::query_scalar("SELECT nodeport FROM pg_dist_node WHERE groupid > 0 ORDER BY groupid")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    // Two portals on that worker: the first is held up by a lock on its
    // shard while it holds the node pool's one connection.
    let mut portals = Vec::new();
    let mut portal = 1;
    while portals.len() < 2 {
        if placement(&mut conn, portal).await.1 == worker {
            portals.push(portal);
        }
        portal += 1;
    }
    let (held, other) = (portals[0], portals[1]);
    let shard = placement(&mut conn, held).await.0;
    let database = test_store.url.rsplit('/').next().unwrap().to_string();
    let worker_url = format!("postgres://postgres@127.0.0.1:{worker}/{database}");
    let mut locker = sqlx::PgConnection::connect(&worker_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("SET LOCAL citus.enable_manual_changes_to_shards = on")
        .execute(&mut locker)
        .await
        .unwrap();
    sqlx::query(&format!("LOCK TABLE associations_{shard} IN SHARE MODE"))
        .execute(&mut locker)
        .await
        .unwrap();

    let input = || {
        [AssociationInput {
            from_id: 1,
            to_id: 2,
            types: vec![],
        }]
    };
    let blocked = {
        let svc = svc.clone();
        tokio::spawn(async move {
            svc.create(common::pair(held, "deals", "contacts"), &input())
                .await
        })
    };
    let mut watcher = sqlx::PgConnection::connect(&worker_url).await.unwrap();
    let mut waits = 0;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = 'association-service' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting == 1 {
            break;
        }
        waits += 1;
        assert!(waits < 400, "the held create never waited on the lock");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        svc.create(common::pair(other, "deals", "contacts"), &input()),
    )
    .await
    .expect("a call to a full node pool waits only for the acquire timeout")
    .expect_err("the node pool is full");
    assert_eq!(refused.kind(), ErrorKind::Unavailable, "{refused}");

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let created = blocked.await.unwrap().unwrap();
    assert!(created.errors.is_empty(), "{:?}", created.errors);
    // The node was not passed over: the next call runs on it.
    svc.archive(common::pair(held, "deals", "contacts"), &[(1, vec![2])])
        .await
        .unwrap();
    let there = service_statements(&worker_url).await;
    assert!(
        there.iter().any(|q| q.contains("association_archive(")),
        "{there:#?}"
    );
}
