//! Streamed reads on both stores: resuming from any chunk's cursor returns
//! exactly the rest, cursors are bound to their portal and request, a
//! consumer that goes away stops the producer, and one that stalls keeps the
//! server's memory flat.
mod common;

use std::sync::Arc;
use std::time::Duration;

use association_service::domain::DomainError;
use association_service::service::{AssociationInput, AssociationService, ServiceError};
use common::pair;
use tokio::sync::mpsc;

const PORTAL: i64 = 7;

async fn service(backend: &str) -> (Arc<AssociationService>, common::TestStore) {
    let settings = common::settings(10_000, 3);
    common::service(backend, settings).await
}

fn inputs(from_id: i64, to_ids: impl IntoIterator<Item = i64>) -> Vec<AssociationInput> {
    to_ids
        .into_iter()
        .map(|to_id| AssociationInput {
            from_id,
            to_id,
            types: vec![],
        })
        .collect()
}

/// Contact 1 with 7 companies and 4 deals; contacts 2..=4 with a few deals.
async fn seed(svc: &AssociationService) {
    let ok = |o: association_service::service::BatchOutcome<_>| {
        assert!(o.errors.is_empty(), "{:?}", o.errors)
    };
    ok(svc
        .create(pair(PORTAL, "contacts", "companies"), &inputs(1, 10..17))
        .await
        .unwrap());
    ok(svc
        .create(pair(PORTAL, "contacts", "deals"), &inputs(1, 100..104))
        .await
        .unwrap());
    for contact in 2..=4 {
        ok(svc
            .create(
                pair(PORTAL, "contacts", "deals"),
                &inputs(contact, (0..contact).map(|d| 200 + d)),
            )
            .await
            .unwrap());
    }
}

async fn drain<T>(mut receiver: mpsc::Receiver<Result<T, ServiceError>>) -> Vec<T> {
    let mut chunks = Vec::new();
    while let Some(chunk) = receiver.recv().await {
        chunks.push(chunk.expect("chunk"));
    }
    chunks
}

fn flatten<T: Clone>(chunks: &[Vec<T>]) -> Vec<T> {
    chunks.iter().flatten().cloned().collect()
}

async fn list_rows(
    svc: &Arc<AssociationService>,
    cursor: Option<&str>,
) -> (Vec<Vec<(String, i64, Vec<i32>)>>, Vec<String>) {
    let chunks = drain(
        svc.stream_associations(common::list(PORTAL, "contacts", 1, None, cursor))
            .await
            .unwrap(),
    )
    .await;
    let rows = chunks
        .iter()
        .map(|c| {
            c.records
                .iter()
                .map(|r| {
                    (
                        r.to_type.to_string(),
                        r.to_id,
                        r.types.iter().map(|d| d.key.type_id).collect(),
                    )
                })
                .collect()
        })
        .collect();
    (rows, chunks.into_iter().map(|c| c.cursor).collect())
}

async fn resuming_a_record_stream_from_every_chunk_returns_the_rest(backend: &str) {
    let (svc, _store) = service(backend).await;
    seed(&svc).await;
    let (chunks, cursors) = list_rows(&svc, None).await;
    let all = flatten(&chunks);
    assert_eq!(all.len(), 11, "7 companies and 4 deals, every object type");
    assert!(
        all.windows(2)
            .all(|w| (w[0].0.as_str(), w[0].1) < (w[1].0.as_str(), w[1].1)),
        "ordered by (type, id)"
    );
    assert_eq!(all[0], ("0-2".to_string(), 10, vec![1, 279]));
    assert_eq!(
        chunks.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 2]
    );
    for (i, cursor) in cursors.iter().enumerate() {
        let (rest, _) = list_rows(&svc, Some(cursor)).await;
        assert_eq!(
            flatten(&rest),
            flatten(&chunks[i + 1..]),
            "resume after chunk {i}"
        );
    }
}

async fn resuming_a_batch_stream_from_every_chunk_returns_the_rest(backend: &str) {
    let (svc, _store) = service(backend).await;
    seed(&svc).await;
    let ids = [4, 2, 1, 3, 99, 2];
    let read = |cursor: Option<String>| {
        let svc = Arc::clone(&svc);
        async move {
            let chunks = drain(
                svc.stream_batch(common::batch_list(
                    PORTAL,
                    "contacts",
                    &ids,
                    Some("deals"),
                    cursor.as_deref(),
                ))
                .await
                .unwrap(),
            )
            .await;
            let rows: Vec<Vec<(i64, i64)>> = chunks
                .iter()
                .map(|c| c.rows.iter().map(|(from, r)| (*from, r.to_id)).collect())
                .collect();
            (
                rows,
                chunks.into_iter().map(|c| c.cursor).collect::<Vec<_>>(),
            )
        }
    };
    let (chunks, cursors) = read(None).await;
    let expected: Vec<(i64, i64)> = (100..104)
        .map(|d| (1, d))
        .chain((2..=4).flat_map(|c| (0..c).map(move |d| (c, 200 + d))))
        .collect();
    assert_eq!(
        flatten(&chunks),
        expected,
        "every row names its from-record, in id order"
    );
    // Chunks of the configured 3 rows, the last one what is left.
    assert_eq!(
        chunks.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 3, 1]
    );
    for (i, cursor) in cursors.iter().enumerate() {
        let (rest, _) = read(Some(cursor.clone())).await;
        assert_eq!(
            flatten(&rest),
            flatten(&chunks[i + 1..]),
            "resume after chunk {i}"
        );
    }
}

async fn resuming_an_export_from_every_chunk_returns_the_rest(backend: &str) {
    let (svc, _store) = service(backend).await;
    seed(&svc).await;
    let read = |cursor: Option<String>| {
        let svc = Arc::clone(&svc);
        async move {
            let chunks = drain(
                svc.stream_export(common::export(
                    PORTAL,
                    Some("deals"),
                    None,
                    cursor.as_deref(),
                ))
                .await
                .unwrap(),
            )
            .await;
            let rows: Vec<Vec<(i64, i64, i32)>> = chunks
                .iter()
                .map(|c| {
                    c.rows
                        .iter()
                        .map(|(r, _)| (r.from_id, r.to_id, r.key.type_id))
                        .collect()
                })
                .collect();
            (
                rows,
                chunks.into_iter().map(|c| c.cursor).collect::<Vec<_>>(),
            )
        }
    };
    let (chunks, cursors) = read(None).await;
    let all = flatten(&chunks);
    assert_eq!(all.len(), 4 + 2 + 3 + 4, "every deal -> contact row");
    assert!(all.iter().all(|(_, _, type_id)| *type_id == 3));
    for (i, cursor) in cursors.iter().enumerate() {
        let (rest, _) = read(Some(cursor.clone())).await;
        assert_eq!(
            flatten(&rest),
            flatten(&chunks[i + 1..]),
            "resume after chunk {i}"
        );
    }
}

async fn cursors_are_bound_to_their_portal_and_request(backend: &str) {
    let (svc, _store) = service(backend).await;
    seed(&svc).await;
    let (_, cursors) = list_rows(&svc, None).await;
    let cursor = cursors[0].clone();
    fn refused<T>(result: Result<T, ServiceError>) -> bool {
        matches!(
            result,
            Err(ServiceError::Domain(DomainError::InvalidCursor))
        )
    }
    assert!(
        refused(
            svc.stream_associations(common::list(PORTAL, "contacts", 2, None, Some(&cursor)))
                .await
        ),
        "another record"
    );
    assert!(
        refused(
            svc.stream_associations(common::list(
                PORTAL,
                "contacts",
                1,
                Some("deals"),
                Some(&cursor)
            ))
            .await
        ),
        "another to-type"
    );
    assert!(
        refused(
            svc.stream_associations(common::list(PORTAL + 1, "contacts", 1, None, Some(&cursor)))
                .await
        ),
        "another portal"
    );
    assert!(
        refused(
            svc.stream_export(common::export(PORTAL, None, None, Some(&cursor)))
                .await
        ),
        "another kind of request"
    );
    let mut tampered = cursor.into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(
        refused(
            svc.stream_associations(common::list(PORTAL, "contacts", 1, None, Some(&tampered)))
                .await
        ),
        "tampered"
    );
    assert!(refused(
        svc.stream_associations(common::list(
            PORTAL,
            "contacts",
            1,
            None,
            Some("not-a-cursor")
        ))
        .await
    ));
}

async fn a_consumer_going_away_stops_the_producer(backend: &str) {
    let (svc, _store) = service(backend).await;
    let outcome = svc
        .create(pair(PORTAL, "deals", "contacts"), &inputs(1, 1..=120))
        .await
        .unwrap();
    assert!(outcome.errors.is_empty());
    let mut receiver = svc
        .stream_associations(common::list(PORTAL, "deals", 1, None, None))
        .await
        .unwrap();
    let first = receiver.recv().await.expect("a chunk").expect("ok");
    assert_eq!(first.records.len(), 3);
    // 40 chunks exist and only 2 fit in the channel: the producer is now
    // parked on a send, holding its reference to the service.
    assert!(Arc::strong_count(&svc) > 1, "the producer is still running");
    drop(receiver);
    tokio::time::timeout(Duration::from_secs(10), async {
        while Arc::strong_count(&svc) > 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the producer stops once its consumer is gone");
}

async fn oversized_batches_are_refused(backend: &str) {
    let (svc, _store) = service(backend).await;
    let ids: Vec<i64> = (1..=10_001).collect();
    let result = svc
        .stream_batch(common::batch_list(PORTAL, "contacts", &ids, None, None))
        .await;
    assert!(matches!(
        result,
        Err(ServiceError::Domain(DomainError::InvalidArgument(_)))
    ));
    let zero = svc
        .stream_batch(common::batch_list(PORTAL, "contacts", &[0], None, None))
        .await;
    assert!(matches!(
        zero,
        Err(ServiceError::Domain(DomainError::InvalidId { .. }))
    ));
}

/// Resumed one chunk at a time while associations are created and archived
/// between chunks, a stream yields every association that existed
/// throughout exactly once and no association twice (seeded; the seed is
/// printed on failure).
async fn resuming_while_rows_change_yields_the_stable_rows_once(backend: &str) {
    let (svc, _store) = service(backend).await;
    let seed: u64 = std::env::var("STREAM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001);
    let mut state = seed;
    let mut random = move |n: i64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % n as u64) as i64
    };
    let contacts_companies = pair(PORTAL, "contacts", "companies");
    let contacts_deals = pair(PORTAL, "contacts", "deals");
    // Contact 1: companies 10, 20, …, 400 and deals 10, 20, …, 200.
    let companies: Vec<i64> = (1..=40).map(|i| i * 10).collect();
    let deals: Vec<i64> = (1..=20).map(|i| i * 10).collect();
    svc.create(contacts_companies, &inputs(1, companies.clone()))
        .await
        .unwrap();
    svc.create(contacts_deals, &inputs(1, deals.clone()))
        .await
        .unwrap();
    let mut stable: std::collections::BTreeSet<(String, i64)> = companies
        .iter()
        .map(|id| ("0-2".to_string(), *id))
        .chain(deals.iter().map(|id| ("0-3".to_string(), *id)))
        .collect();
    let mut seen: Vec<(String, i64)> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut receiver = svc
            .stream_associations(common::list(PORTAL, "contacts", 1, None, cursor.as_deref()))
            .await
            .unwrap();
        let chunk = receiver.recv().await.expect("a chunk").expect("ok");
        drop(receiver);
        seen.extend(
            chunk
                .records
                .iter()
                .map(|r| (r.to_type.to_string(), r.to_id)),
        );
        let done = chunk.records.is_empty();
        cursor = Some(chunk.cursor);
        if done {
            break;
        }
        // Between chunks: one new association in a gap, one archived.
        let (target, kind) = if random(2) == 0 {
            (contacts_companies, "0-2")
        } else {
            (contacts_deals, "0-3")
        };
        let new_id = random(420) * 10 + 1 + random(9);
        svc.create(target, &inputs(1, [new_id])).await.unwrap();
        let gone = random(400) + 1;
        svc.archive(target, &[(1, vec![gone])]).await.unwrap();
        stable.remove(&(kind.to_string(), gone));
        assert!(seen.len() < 500, "seed {seed}: the stream does not end");
    }
    let mut once = std::collections::BTreeSet::new();
    for row in &seen {
        assert!(once.insert(row.clone()), "seed {seed}: {row:?} came twice");
    }
    for row in &stable {
        assert!(once.contains(row), "seed {seed}: {row:?} never came");
    }
}

/// Streams of every kind, one after another on the same single database
/// connection, each decode their own rows.
async fn streams_of_every_kind_share_one_connection(backend: &str) {
    let test_store = common::fresh_store(backend).await;
    let store = association_service::store::connect(&test_store.url, 1)
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    let svc = Arc::new(AssociationService::new(store, common::settings(10_000, 3)));
    seed(&svc).await;
    for _ in 0..3 {
        let list = drain(
            svc.stream_associations(common::list(PORTAL, "contacts", 1, None, None))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(list.iter().map(|c| c.records.len()).sum::<usize>(), 11);
        let export = drain(
            svc.stream_export(common::export(PORTAL, None, None, None))
                .await
                .unwrap(),
        )
        .await;
        // 20 associations, each stored in both directions, and contact 1's
        // primary company (its own row each way).
        assert_eq!(
            export.iter().map(|c| c.rows.len()).sum::<usize>(),
            2 * 20 + 2
        );
        let batch = drain(
            svc.stream_batch(common::batch_list(
                PORTAL,
                "contacts",
                &[1, 2, 3, 4],
                None,
                None,
            ))
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(
            batch.iter().map(|c| c.rows.len()).sum::<usize>(),
            11 + 2 + 3 + 4
        );
    }
}

/// A portal may have at most `read.max_streams_per_portal` streams open; one
/// more is refused (RESOURCE_EXHAUSTED), other portals are not affected, and
/// a closed stream frees its place.
async fn open_streams_per_portal_are_capped(backend: &str) {
    use association_service::domain::feed::FeedStart;
    use association_service::domain::ErrorKind;
    let mut settings = common::settings(10_000, 3);
    settings.max_streams_per_portal = 2;
    let (svc, _store) = common::service(backend, settings).await;
    seed(&svc).await;
    let first = svc
        .watch_changes(PORTAL, FeedStart::Now)
        .await
        .expect("1st");
    let second = svc
        .stream_associations(common::list(PORTAL, "contacts", 1, None, None))
        .await
        .expect("2nd");
    let refused = svc
        .stream_export(common::export(PORTAL, None, None, None))
        .await
        .expect_err("a third stream of the portal");
    assert_eq!(refused.kind(), ErrorKind::ResourceExhausted, "{refused}");
    let other = svc
        .watch_changes(PORTAL + 1, FeedStart::Now)
        .await
        .expect("another portal's stream");
    drop(first);
    drop(second);
    // The closed streams' tasks end and free their places.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match svc.watch_changes(PORTAL, FeedStart::Now).await {
                Ok(stream) => break stream,
                Err(err) => assert_eq!(err.kind(), ErrorKind::ResourceExhausted),
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a place frees once a stream closes");
    drop(other);
}

macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test("sqlite").await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test("postgres").await; })*
        }
    };
}

/// A fresh store where deal 1 of `PORTAL` holds `rows` contacts.
async fn one_large_record(backend: &str, rows: i64) -> common::TestStore {
    let (svc, store) = common::service(backend, common::settings(rows as u32, 1000)).await;
    for batch in (1..=rows).collect::<Vec<_>>().chunks(2_000) {
        let outcome = svc
            .create(
                pair(PORTAL, "deals", "contacts"),
                &inputs(1, batch.iter().copied()),
            )
            .await
            .unwrap();
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    }
    store
}

/// A client that reads one chunk of a large stream and stalls: the server
/// keeps only a few chunks in hand (its memory, sampled while the client
/// stalls, grows by far less than the stream's rows would take), and the
/// stream still delivers every row once the client reads on.
async fn a_stalled_client_keeps_server_memory_flat(backend: &str) {
    use association_service::proto::association_read_client::AssociationReadClient;
    use association_service::proto::ListAssociationsRequest;
    const ROWS: i64 = 150_000;
    const GROWTH_LIMIT_KIB: u64 = 8 * 1024;
    let store = one_large_record(backend, ROWS).await;
    // The binary as a child process, so its memory can be read alone.
    let server =
        common::ServerProcess::start(&store.url, &[("ASSOC__READ__CHUNK_SIZE", "1000")]).await;
    let deal_one = ListAssociationsRequest {
        portal_id: PORTAL,
        object_type: "deals".into(),
        object_id: 1,
        ..Default::default()
    };
    let mut client = AssociationReadClient::new(server.channel().await);
    let mut stream = client
        .list_associations(deal_one.clone())
        .await
        .expect("list")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("a chunk")
        .expect("not the end");
    let mut rows = first.results.len() as i64;
    let before = server.rss_kib();
    // Sampled while the client stalls: long enough for a server that
    // buffered the whole stream to have read it all.
    let mut peak = before;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak = peak.max(server.rss_kib());
    }
    let grown = peak.saturating_sub(before);
    assert!(
        grown < GROWTH_LIMIT_KIB,
        "{backend}: the server grew by {grown} KiB while its client stalled after one chunk of {ROWS} rows"
    );
    while let Some(chunk) = stream.message().await.expect("chunk") {
        rows += chunk.results.len() as i64;
    }
    assert_eq!(rows, ROWS, "every row arrives once the client reads on");
    eprintln!("{backend}: server memory grew by {grown} KiB while the client stalled");
    if backend == "postgres" {
        // A client that leaves mid-stream: its statement stops.
        let mut stream = client
            .list_associations(deal_one)
            .await
            .expect("list")
            .into_inner();
        stream
            .message()
            .await
            .expect("a chunk")
            .expect("not the end");
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&store.url)
            .await
            .expect("connect");
        let scan: i32 = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND state = 'active'
               AND query LIKE 'SELECT to_object_type, to_object_id%'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("the stream's statement runs while its client reads");
        drop(stream);
        // Its connection closes: the database does not even finish the rows.
        let alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1";
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let count: i64 = sqlx::query_scalar(alive)
                    .bind(scan)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                if count == 0 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the statement stops once its client is gone");
    }
}

/// The server's peak memory while it streams one record's 150,000 rows
/// (the benchmark's R1) right after a burst of writes from sixteen clients
/// (160,000 rows in batches of 100)
/// stays under 64 MiB on either store: the service itself caps the
/// allocator's arenas and each connection's page cache.
async fn a_long_read_after_a_burst_of_writes_stays_under_64_mib(backend: &str) {
    use association_service::proto::association_read_client::AssociationReadClient;
    use association_service::proto::association_write_client::AssociationWriteClient;
    use association_service::proto::{
        AssociationInput as WireInput, CreateAssociationsRequest, ListAssociationsRequest,
    };
    const ROWS: i64 = 150_000;
    const PEAK_LIMIT_MIB: u64 = 64;
    let store = one_large_record(backend, ROWS).await;
    let server = common::ServerProcess::start(&store.url, &[]).await;
    let channel = server.channel().await;
    // Sixteen writers at once, so every write connection and every
    // thread's allocations are used before the read.
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..16i64 {
        let mut write = AssociationWriteClient::new(channel.clone());
        writers.spawn(async move {
            for n in 0..100i64 {
                let deal = 1_000 + writer * 100 + n;
                let request = CreateAssociationsRequest {
                    portal_id: PORTAL,
                    from_object_type: "deals".into(),
                    to_object_type: "contacts".into(),
                    inputs: (1..=100)
                        .map(|to_id| WireInput {
                            from_id: deal,
                            to_id,
                            types: vec![],
                        })
                        .collect(),
                };
                let answer = write.create_associations(request).await.expect("create");
                assert!(answer.into_inner().errors.is_empty());
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("a writer");
    }
    server.reset_peak_rss();
    let mut read = AssociationReadClient::new(channel);
    let mut stream = read
        .list_associations(ListAssociationsRequest {
            portal_id: PORTAL,
            object_type: "deals".into(),
            object_id: 1,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let mut rows = 0i64;
    while let Some(chunk) = stream.message().await.expect("chunk") {
        rows += chunk.results.len() as i64;
    }
    assert_eq!(rows, ROWS);
    let peak_mib = server.peak_rss_kib() / 1024;
    eprintln!("{backend}: the server's peak memory while streaming {ROWS} rows: {peak_mib} MiB");
    assert!(
        peak_mib <= PEAK_LIMIT_MIB,
        "{backend}: the server peaked at {peak_mib} MiB (at most {PEAK_LIMIT_MIB})"
    );
}

/// A REST batch read whose client takes the head of the answer and stops
/// reading holds its portal's stream place only until the stall timeout:
/// its answer is cut short (never completed wrong), and the next batch
/// read of the portal is answered in full.
async fn a_stalled_rest_batch_reader_gives_its_stream_place_back(backend: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const RECORDS: i64 = 1_000;
    let (svc, store) = common::service(backend, common::settings(1_000, 1000)).await;
    for deals in (1..=RECORDS).collect::<Vec<_>>().chunks(20) {
        let batch: Vec<_> = deals.iter().flat_map(|d| inputs(*d, 1..=100)).collect();
        let outcome = svc
            .create(pair(PORTAL, "deals", "contacts"), &batch)
            .await
            .unwrap();
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    }
    drop(svc);
    let server = common::TestServer::start_on(store, |s| {
        s.gateway.default_portal = PORTAL;
        s.read.max_streams_per_portal = 1;
        s.read.stall_timeout_ms = 300;
    })
    .await;
    let ids: Vec<String> = (1..=RECORDS)
        .map(|id| format!(r#"{{"id":"{id}"}}"#))
        .collect();
    let body = format!(r#"{{"inputs":[{}]}}"#, ids.join(","));
    let path = "/crm/v4/associations/deals/contacts/batch/read";
    // About 9 MB of answer: far more than the sockets hold while unread.
    let mut stalled = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stalled.write_all(request.as_bytes()).await.expect("send");
    let mut head = [0u8; 12];
    stalled
        .read_exact(&mut head)
        .await
        .expect("the answer's head");
    assert_eq!(&head, b"HTTP/1.1 200");
    // The stalled read holds the portal's one place until its stall ends;
    // then a batch read of the portal is answered whole.
    let answer = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let answer = common::http(server.http_addr, "POST", path, Some(&body)).await;
            match answer.status {
                200 => break answer,
                429 => assert!(answer.body.contains("TOO_MANY_STREAMS"), "{}", answer.body),
                other => panic!("{other}: {}", answer.body),
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the stalled read gives its place back");
    assert_eq!(answer.body.matches("\"toObjectId\"").count(), 100_000);
    // The stalled answer ends short: its client, reading on, never gets the
    // envelope's end.
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        !rest.contains("completedAt"),
        "the stalled answer was completed"
    );
}

on_every_backend!(
    a_stalled_rest_batch_reader_gives_its_stream_place_back,
    a_long_read_after_a_burst_of_writes_stays_under_64_mib,
    a_stalled_client_keeps_server_memory_flat,
    open_streams_per_portal_are_capped,
    streams_of_every_kind_share_one_connection,
    resuming_while_rows_change_yields_the_stable_rows_once,
    resuming_a_record_stream_from_every_chunk_returns_the_rest,
    resuming_a_batch_stream_from_every_chunk_returns_the_rest,
    resuming_an_export_from_every_chunk_returns_the_rest,
    cursors_are_bound_to_their_portal_and_request,
    a_consumer_going_away_stops_the_producer,
    oversized_batches_are_refused,
);
