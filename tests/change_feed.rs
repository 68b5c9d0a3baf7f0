//! The change feed on both stores: under 16 concurrent writers every
//! committed change arrives exactly once, in commit order, across several
//! resumes; replaying the feed rebuilds the stored state; starting points and
//! retention behave as documented. On PostgreSQL, a live reader sees every
//! change once, in one order, while writers hold their transactions open
//! and commit out of their start order. On Citus, writers on eight portals
//! spread over both workers each get an exact feed of their own.
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use association_service::domain::feed::{ChangeKind, FeedStart};
use association_service::domain::plan::DirectedRow;
use association_service::domain::DomainError;
use association_service::service::{AssociationInput, AssociationService, ServiceError};
use common::pair;
use sqlx::Connection;
use tokio::sync::watch;
use tokio::task::JoinSet;

const PORTAL: i64 = 9;
const WRITERS: i64 = 16;
const OPS_PER_WRITER: i64 = 12;

async fn service(backend: &str) -> (Arc<AssociationService>, common::TestStore) {
    common::service(backend, common::settings(10_000, 5)).await
}

fn link(from_id: i64, to_id: i64) -> AssociationInput {
    AssociationInput {
        from_id,
        to_id,
        types: vec![],
    }
}

/// Every stored row of `portal`, by exporting it.
async fn stored_rows(svc: &Arc<AssociationService>, portal: i64) -> BTreeSet<DirectedRow> {
    let mut receiver = svc
        .stream_export(common::export(portal, None, None, None))
        .await
        .unwrap();
    let mut rows = BTreeSet::new();
    while let Some(chunk) = receiver.recv().await {
        rows.extend(chunk.unwrap().rows.into_iter().map(|(row, _)| row));
    }
    rows
}

/// Reads `portal`'s changes until `head`, resuming from the last cursor
/// every `resume_every` chunks.
async fn read_until(
    svc: &Arc<AssociationService>,
    portal: i64,
    mut start: FeedStart,
    head: i64,
    resume_every: usize,
    seen: &mut Vec<(i64, ChangeKind, DirectedRow)>,
) -> String {
    let mut cursor = String::new();
    loop {
        let mut receiver = svc.watch_changes(portal, start).await.expect("watch");
        for _ in 0..resume_every {
            if seen.last().map(|(seq, _, _)| *seq) >= Some(head) {
                return cursor;
            }
            let chunk = receiver
                .recv()
                .await
                .expect("the feed stays open")
                .expect("chunk");
            assert!(!chunk.changes.is_empty(), "chunks carry changes");
            seen.extend(chunk.changes.iter().map(|(c, _)| (c.seq, c.kind, c.row)));
            cursor = chunk.cursor;
        }
        if seen.last().map(|(seq, _, _)| *seq) >= Some(head) {
            return cursor;
        }
        // Drop the stream and resume from the last cursor, as a client would.
        start = svc
            .feed_start(portal, Some(&cursor), None)
            .expect("our own cursor");
    }
}

async fn concurrent_writers_are_delivered_once_in_commit_order(backend: &str) {
    let (svc, _store) = service(backend).await;
    writers_are_delivered_once_in_commit_order(&svc, PORTAL, WRITERS).await;
}

/// `writers` concurrent writers on `portal` while a reader follows; then
/// the portal's feed, read with resumes, holds every change exactly once,
/// gap-free, and replays to what is stored.
async fn writers_are_delivered_once_in_commit_order(
    svc: &Arc<AssociationService>,
    portal: i64,
    writers: i64,
) {
    // A reader starts before the writers and follows them while they write.
    let follower = {
        let svc = Arc::clone(svc);
        tokio::spawn(async move {
            let mut receiver = svc
                .watch_changes(portal, FeedStart::Beginning)
                .await
                .unwrap();
            let chunk = receiver.recv().await.expect("first chunk").expect("ok");
            chunk.changes.first().map(|(c, _)| c.seq)
        })
    };
    let mut tasks = JoinSet::new();
    for writer in 0..writers {
        let svc = Arc::clone(svc);
        tasks.spawn(async move {
            for op in 0..OPS_PER_WRITER {
                // Writers share contacts and companies, so they conflict.
                let (contact, company) = (1 + (writer + op) % 5, 100 + op % 4);
                if op % 3 == 2 {
                    svc.archive(
                        pair(portal, "contacts", "companies"),
                        &[(contact, vec![company])],
                    )
                    .await
                    .unwrap();
                } else {
                    let outcome = svc
                        .create(
                            pair(portal, "contacts", "companies"),
                            &[link(contact, company)],
                        )
                        .await
                        .unwrap();
                    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer");
    }
    assert_eq!(
        follower.await.unwrap(),
        Some(1),
        "a live reader sees changes as they commit"
    );

    let head = svc.feed_head(portal).await.unwrap();
    assert!(head > 0);
    let mut seen = Vec::new();
    read_until(svc, portal, FeedStart::Beginning, head, 3, &mut seen).await;
    // Replaying in sequence order rebuilds exactly what is stored: conflicting
    // changes arrived in the order they committed.
    let replayed = common::replay_feed(&seen, head);
    assert_eq!(replayed, stored_rows(svc, portal).await);
}

async fn now_skips_history_and_cursors_resume_exactly(backend: &str) {
    let (svc, _store) = service(backend).await;
    svc.create(pair(PORTAL, "deals", "contacts"), &[link(1, 2)])
        .await
        .unwrap();
    let mut receiver = svc.watch_changes(PORTAL, FeedStart::Now).await.unwrap();
    svc.create(pair(PORTAL, "deals", "contacts"), &[link(1, 3)])
        .await
        .unwrap();
    let chunk = receiver.recv().await.unwrap().unwrap();
    let ids: Vec<(i64, i64, ChangeKind)> = chunk
        .changes
        .iter()
        .map(|(c, _)| (c.row.from_id, c.row.to_id, c.kind))
        .collect();
    assert_eq!(
        ids,
        vec![(3, 1, ChangeKind::Created), (1, 3, ChangeKind::Created)],
        "only the new change, both rows, in key order"
    );
    drop(receiver);
    svc.archive(pair(PORTAL, "deals", "contacts"), &[(1, vec![2])])
        .await
        .unwrap();
    let start = svc.feed_start(PORTAL, Some(&chunk.cursor), None).unwrap();
    let mut resumed = svc.watch_changes(PORTAL, start).await.unwrap();
    let next = resumed.recv().await.unwrap().unwrap();
    let kinds: Vec<(i64, ChangeKind)> = next.changes.iter().map(|(c, _)| (c.seq, c.kind)).collect();
    assert_eq!(
        kinds,
        vec![(5, ChangeKind::Archived), (6, ChangeKind::Archived)]
    );
    assert!(matches!(
        svc.feed_start(PORTAL + 1, Some(&chunk.cursor), None),
        Err(ServiceError::Domain(DomainError::InvalidCursor))
    ));
}

/// Every change a stream that stops at the head delivers, and its last cursor.
async fn read_to_head(
    svc: &Arc<AssociationService>,
    start: FeedStart,
) -> (Vec<(i64, ChangeKind)>, Option<String>) {
    let mut receiver = svc.read_changes(PORTAL, start, true).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
        .await
        .expect("the stream ends at the head instead of waiting for more")
    {
        let chunk = chunk.unwrap();
        seen.extend(chunk.changes.iter().map(|(c, _)| (c.seq, c.kind)));
        cursor = Some(chunk.cursor);
    }
    (seen, cursor)
}

/// With `stop_at_head` the stream ends after the changes committed before
/// the call (several chunks of 5 here), and its cursor resumes after them.
async fn a_stream_stopping_at_the_head_ends_there_and_resumes(backend: &str) {
    let (svc, _store) = service(backend).await;
    let links: Vec<AssociationInput> = (1..=6).map(|n| link(1, 100 + n)).collect();
    svc.create(pair(PORTAL, "deals", "contacts"), &links)
        .await
        .unwrap();
    let (seen, cursor) = read_to_head(&svc, FeedStart::Beginning).await;
    let seqs: Vec<i64> = seen.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>(), "both rows of 6 links");
    assert_eq!(read_to_head(&svc, FeedStart::Now).await, (vec![], None));
    svc.archive(pair(PORTAL, "deals", "contacts"), &[(1, vec![101])])
        .await
        .unwrap();
    let start = svc.feed_start(PORTAL, cursor.as_deref(), None).unwrap();
    let (rest, _) = read_to_head(&svc, start).await;
    assert_eq!(
        rest,
        vec![(13, ChangeKind::Archived), (14, ChangeKind::Archived)]
    );
}

/// Retention removes old changes in several bounded batches (6,000 changes
/// here, batches of 5,000) and leaves the feed starting right after them.
async fn retention_prunes_in_batches_up_to_the_cut(backend: &str) {
    let (svc, store) = service(backend).await;
    for batch in 0..3 {
        let links: Vec<AssociationInput> =
            (0..1_000).map(|n| link(1 + batch, 10_000 + n)).collect();
        svc.create(pair(PORTAL, "deals", "contacts"), &links)
            .await
            .unwrap();
    }
    assert_eq!(svc.feed_head(PORTAL).await.unwrap(), 6_000);
    // A cutoff between two writes keeps the later one.
    let between = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    svc.create(pair(PORTAL, "deals", "contacts"), &[link(8, 8)])
        .await
        .unwrap();
    svc.prune_feed(between).await.unwrap();
    let raw_store = association_service::store::connect(&store.url, 1)
        .await
        .unwrap();
    assert_eq!(raw_store.feed_bounds(PORTAL).await.unwrap(), (6_000, 6_002));
    common::assert_verified(raw_store.as_ref(), &format!("{backend}: after retention")).await;
    svc.prune_feed(i64::MAX).await.unwrap();
    let raw = association_service::store::connect(&store.url, 1)
        .await
        .unwrap();
    assert_eq!(raw.feed_bounds(PORTAL).await.unwrap(), (6_002, 6_002));
    svc.create(pair(PORTAL, "deals", "contacts"), &[link(9, 9)])
        .await
        .unwrap();
    let mut from_beginning = svc
        .watch_changes(PORTAL, FeedStart::Beginning)
        .await
        .unwrap();
    let first = from_beginning.recv().await.unwrap().unwrap();
    assert_eq!(first.changes[0].0.seq, 6_003, "nothing old is left to read");
    common::assert_verified(
        raw.as_ref(),
        &format!("{backend}: everything pruned, one change since"),
    )
    .await;
}

async fn cursors_past_retention_are_refused(backend: &str) {
    let (svc, _store) = service(backend).await;
    svc.create(pair(PORTAL, "deals", "contacts"), &[link(1, 2)])
        .await
        .unwrap();
    let mut receiver = svc
        .watch_changes(PORTAL, FeedStart::Beginning)
        .await
        .unwrap();
    let old = receiver.recv().await.unwrap().unwrap().cursor;
    drop(receiver);
    svc.create(pair(PORTAL, "deals", "contacts"), &[link(1, 3)])
        .await
        .unwrap();
    svc.prune_feed(i64::MAX).await.unwrap();
    let start = svc.feed_start(PORTAL, Some(&old), None).unwrap();
    assert!(matches!(
        svc.watch_changes(PORTAL, start).await,
        Err(ServiceError::Domain(DomainError::CursorExpired(2)))
    ));
    svc.create(pair(PORTAL, "deals", "contacts"), &[link(1, 4)])
        .await
        .unwrap();
    let mut from_beginning = svc
        .watch_changes(PORTAL, FeedStart::Beginning)
        .await
        .unwrap();
    let first = from_beginning.recv().await.unwrap().unwrap();
    assert_eq!(
        first.changes[0].0.seq, 5,
        "the beginning is the oldest retained change"
    );
}

type Seen = Vec<(i64, ChangeKind, DirectedRow)>;

/// Follows the feed live from the beginning, resuming from its last cursor
/// every three chunks, until it has read up to the head it is given.
async fn follow(svc: Arc<AssociationService>, mut head: watch::Receiver<Option<i64>>) -> Seen {
    let (mut seen, mut start, mut cursor): (Seen, _, String) =
        (Vec::new(), FeedStart::Beginning, String::new());
    loop {
        let mut receiver = svc.watch_changes(PORTAL, start).await.expect("watch");
        for _ in 0..3 {
            loop {
                let target = *head.borrow();
                if target.is_some() && seen.last().map(|(seq, _, _)| *seq) >= target {
                    return seen;
                }
                tokio::select! {
                    chunk = receiver.recv() => {
                        let chunk = chunk.expect("the feed stays open").expect("chunk");
                        seen.extend(chunk.changes.iter().map(|(c, _)| (c.seq, c.kind, c.row)));
                        cursor = chunk.cursor;
                        break;
                    }
                    _ = head.changed() => {}
                }
            }
        }
        start = svc
            .feed_start(PORTAL, Some(&cursor), None)
            .expect("our own cursor");
    }
}

/// A writer that has written its association and its changes and holds its
/// transaction open (what a slow service writer looks like to readers).
async fn held_writer(url: &str, contact: i64, company: i64) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut conn)
        .await
        .expect("begin");
    for (ft, fi, tt, ti, ty) in [
        ("0-1", contact, "0-2", company, 279),
        ("0-2", company, "0-1", contact, 280),
    ] {
        sqlx::query(
            "INSERT INTO associations (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
             VALUES ($1, $2, $3, $4, $5, 1, $6)",
        )
        .bind(PORTAL)
        .bind(ft)
        .bind(fi)
        .bind(tt)
        .bind(ti)
        .bind(ty)
        .execute(&mut conn)
        .await
        .expect("insert association");
        sqlx::query(
            "INSERT INTO association_changes (portal_id, kind, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id, changed_at_us)
             VALUES ($1, 1, $2, $3, $4, $5, 1, $6, 0)",
        )
        .bind(PORTAL)
        .bind(ft)
        .bind(fi)
        .bind(tt)
        .bind(ti)
        .bind(ty)
        .execute(&mut conn)
        .await
        .expect("insert change");
    }
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_live_reader_sees_writers_committing_out_of_start_order_once_in_one_order() {
    let (svc, store) = service("postgres").await;
    let (head_tx, head_rx) = watch::channel(None);
    let follower = tokio::spawn(follow(Arc::clone(&svc), head_rx));
    // Three writers start first and hold their transactions open.
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(held_writer(&store.url, 500 + i, 600 + i).await);
    }
    let mut writers = JoinSet::new();
    for writer in 0..WRITERS {
        let svc = Arc::clone(&svc);
        writers.spawn(async move {
            for op in 0..OPS_PER_WRITER {
                let (contact, company) = (1 + (writer + op) % 5, 100 + op % 4);
                if op % 3 == 2 {
                    svc.archive(
                        pair(PORTAL, "contacts", "companies"),
                        &[(contact, vec![company])],
                    )
                    .await
                    .unwrap();
                } else {
                    svc.create(
                        pair(PORTAL, "contacts", "companies"),
                        &[link(contact, company)],
                    )
                    .await
                    .unwrap();
                }
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    // The first writers commit last, newest first.
    for mut conn in held.into_iter().rev() {
        sqlx::query("COMMIT")
            .execute(&mut conn)
            .await
            .expect("commit");
    }
    svc.create(pair(PORTAL, "deals", "contacts"), &[link(1, 2)])
        .await
        .unwrap();
    let head = svc.feed_head(PORTAL).await.unwrap();
    head_tx.send(Some(head)).expect("follower listens");
    let seen = follower.await.expect("follower");
    let seqs: Vec<i64> = seen.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=head).collect::<Vec<_>>(),
        "every change exactly once, gap-free and in order"
    );
    let held_rows = seen
        .iter()
        .filter(|(_, _, row)| {
            (500..503).contains(&row.from_id) || (600..603).contains(&row.from_id)
        })
        .count();
    assert_eq!(held_rows, 6, "the held writers' changes arrive once each");
    let mut replayed = BTreeSet::new();
    for (seq, kind, row) in &seen {
        match kind {
            ChangeKind::Created => assert!(
                replayed.insert(*row),
                "change {seq} creates a row that exists"
            ),
            ChangeKind::Archived => {
                assert!(replayed.remove(row), "change {seq} archives a missing row")
            }
            ChangeKind::Merged => {}
        }
    }
    assert_eq!(replayed, stored_rows(&svc, PORTAL).await);
}

/// Citus: writers on eight portals whose shards lie on both workers, a
/// reader following each portal; each portal's feed holds its changes
/// exactly once, gap-free, in an order that replays to what it stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn citus_writers_on_many_portals_each_feed_exact() {
    let (svc, store) = service("citus").await;
    let portals: Vec<i64> = (1..=8).collect();
    let mut conn = sqlx::PgConnection::connect(&store.url).await.unwrap();
    let workers: BTreeSet<i32> = sqlx::query_scalar(
        "SELECT DISTINCT p.nodeport FROM unnest($1::bigint[]) AS portal(id)
         CROSS JOIN LATERAL (SELECT get_shard_id_for_distribution_column('associations', portal.id) AS shard) s
         JOIN pg_dist_shard_placement p ON p.shardid = s.shard",
    )
    .bind(&portals)
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(workers.len(), 2, "the portals lie on both workers");
    let mut each = JoinSet::new();
    for portal in portals {
        let svc = Arc::clone(&svc);
        each.spawn(
            async move { writers_are_delivered_once_in_commit_order(&svc, portal, 4).await },
        );
    }
    while let Some(done) = each.join_next().await {
        done.expect("a portal's writers and reader");
    }
}

macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() { super::$test("sqlite").await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() { super::$test("postgres").await; })*
        }
        mod citus {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() { super::$test("citus").await; })*
        }
    };
}

on_every_backend!(
    concurrent_writers_are_delivered_once_in_commit_order,
    now_skips_history_and_cursors_resume_exactly,
    cursors_past_retention_are_refused,
    a_stream_stopping_at_the_head_ends_there_and_resumes,
    retention_prunes_in_batches_up_to_the_cut,
);

/// Over gRPC a reader without a cursor must say where to start: an
/// unspecified or unknown start point is refused, never taken as "now".
#[tokio::test]
async fn watch_without_cursor_needs_a_start_point() {
    use association_service::proto::association_read_client::AssociationReadClient;
    use association_service::proto::{FeedStartPoint, WatchChangesRequest};
    let server = common::TestServer::start("sqlite", |_| {}).await;
    let mut client = AssociationReadClient::connect(server.endpoint())
        .await
        .expect("connect");
    for start in [FeedStartPoint::Unspecified as i32, 7] {
        let status = client
            .watch_changes(WatchChangesRequest {
                portal_id: PORTAL,
                cursor: String::new(),
                start,
                stop_at_head: false,
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "start {start}");
    }
    for start in [FeedStartPoint::Now, FeedStartPoint::Beginning] {
        client
            .watch_changes(WatchChangesRequest {
                portal_id: PORTAL,
                cursor: String::new(),
                start: start as i32,
                stop_at_head: false,
            })
            .await
            .expect("a start point is enough");
    }
}

/// 200 idle `WatchChanges` readers of a portal cost PostgreSQL what one
/// does: they share one poller, which looks at the feed head once an
/// interval, instead of each polling on its own; the poller ends with the
/// last reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_feed_readers_share_one_poller() {
    let mut settings = common::settings(10_000, 100);
    let interval = Duration::from_millis(50);
    settings.feed_poll_interval = interval;
    let (svc, _store) = common::service("postgres", settings).await;
    let mut readers = Vec::new();
    for _ in 0..200 {
        readers.push(
            svc.watch_changes(PORTAL, FeedStart::Now)
                .await
                .expect("watch"),
        );
    }
    let other = svc
        .watch_changes(PORTAL + 1, FeedStart::Now)
        .await
        .expect("watch");
    // (portal, its running pollers) of every portal being polled.
    let portals_polled = || {
        let mut portals: Vec<(i64, usize)> = svc
            .feed_pollers()
            .into_iter()
            .map(|(portal, (pollers, _))| (portal, pollers))
            .collect();
        portals.sort();
        portals
    };
    // Each reader joins its portal's poller once it has read to the head.
    common::until("both portals are polled", || portals_polled().len() == 2).await;
    assert_eq!(
        portals_polled(),
        vec![(PORTAL, 1), (PORTAL + 1, 1)],
        "one poller a portal"
    );
    // Over a window the shared poller looks at most once an interval (it
    // sleeps an interval before each look), not once per reader.
    let window = Duration::from_millis(1_000);
    let start = std::time::Instant::now();
    let before = svc.feed_pollers()[&PORTAL].1;
    tokio::time::sleep(window).await;
    let looks = svc.feed_pollers()[&PORTAL].1 - before;
    let most = (start.elapsed().as_millis() / interval.as_millis()) as u64 + 1;
    assert!(
        (1..=most).contains(&looks),
        "200 idle readers: {looks} looks in {:?} (at most {most})",
        start.elapsed()
    );
    // The poller goes with the last reader of its portal.
    drop(readers);
    common::until("the readers are gone", || {
        portals_polled() == vec![(PORTAL + 1, 1)]
    })
    .await;
    drop(other);
    common::until("the last reader is gone", || portals_polled().is_empty()).await;
}
