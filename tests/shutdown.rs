//! Graceful shutdown of the server binary on SIGTERM, on both stores: the
//! change feed ends at once with `UNAVAILABLE` (`SHUTTING_DOWN`) and its
//! last cursor resumes it on the next process; a stream being read finishes;
//! a stalled stream is cut at the grace period and resumes from its last
//! cursor; a batch write in flight commits whole or not at all; the process
//! exits 0 within the grace period (and the 2 s streams get to end), and a
//! SIGTERM sent the moment the ready line is out is a graceful shutdown.
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{
    AssociationInput, CreateAssociationsRequest, FeedStartPoint, ListAssociationsRequest,
    ListAssociationsResponse, WatchChangesRequest,
};
use association_service::service::AssociationInput as Input;
use common::ServerProcess;
use tonic::Code;
use tonic_types::StatusExt;

const PORTAL: i64 = 1;
const ROWS: i64 = 3_000;
const BATCH: i64 = 2_000;
const GRACE_MS: u64 = 2_000;

fn list(deal: i64, cursor: &str) -> ListAssociationsRequest {
    ListAssociationsRequest {
        portal_id: PORTAL,
        object_type: "deals".into(),
        object_id: deal,
        cursor: cursor.into(),
        ..Default::default()
    }
}

fn ids(chunk: &ListAssociationsResponse) -> Vec<i64> {
    chunk.results.iter().map(|r| r.to_object_id).collect()
}

/// Every to-id of a stream read to its end, after `cursor`.
async fn read_all(
    read: &mut AssociationReadClient<tonic::transport::Channel>,
    deal: i64,
    cursor: &str,
) -> Vec<i64> {
    let mut stream = read
        .list_associations(list(deal, cursor))
        .await
        .expect("list")
        .into_inner();
    let mut all = Vec::new();
    while let Some(chunk) = stream.message().await.expect("a chunk") {
        all.extend(ids(&chunk));
    }
    all
}

fn create(deal: i64, contacts: impl Iterator<Item = i64>) -> CreateAssociationsRequest {
    CreateAssociationsRequest {
        portal_id: PORTAL,
        from_object_type: "deals".into(),
        to_object_type: "contacts".into(),
        inputs: contacts
            .map(|to_id| AssociationInput {
                from_id: deal,
                to_id,
                types: vec![],
            })
            .collect(),
    }
}

async fn sigterm_drains_calls_and_streams(backend: &str) {
    let (svc, store) = common::service(backend, common::settings(10_000, 100)).await;
    let inputs: Vec<Input> = (1..=ROWS)
        .map(|to_id| Input {
            from_id: 1,
            to_id,
            types: vec![],
        })
        .collect();
    for part in inputs.chunks(BATCH as usize) {
        let pair = common::pair(PORTAL, "deals", "contacts");
        let outcome = svc.create(pair, part).await.unwrap();
        assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    }
    drop(svc);
    let grace = GRACE_MS.to_string();
    let env = [
        ("ASSOC__READ__CHUNK_SIZE", "100"),
        ("ASSOC__SERVER__SHUTDOWN_GRACE_MS", grace.as_str()),
    ];
    let mut server = ServerProcess::start(&store.url, &env).await;
    let channel = server.channel().await;
    let mut read = AssociationReadClient::new(channel.clone());
    let mut write = AssociationWriteClient::new(channel);

    // A feed reader that has seen one change.
    let mut feed = read
        .watch_changes(WatchChangesRequest {
            portal_id: PORTAL,
            cursor: String::new(),
            start: FeedStartPoint::Now as i32,
            stop_at_head: false,
        })
        .await
        .expect("watch")
        .into_inner();
    write
        .create_associations(create(3, 1..=1))
        .await
        .expect("create");
    let seen = feed
        .message()
        .await
        .expect("a change")
        .expect("not the end");
    assert!(seen
        .changes
        .iter()
        .all(|c| c.from_object_id == 3 || c.to_object_id == 3));
    let feed_cursor = seen.cursor;

    // Two streams of deal 1, one chunk read of each.
    let mut reader = read
        .list_associations(list(1, ""))
        .await
        .expect("list")
        .into_inner();
    let mut read_rows = ids(&reader.message().await.expect("chunk").expect("first"));
    let mut stalled = read
        .list_associations(list(1, ""))
        .await
        .expect("list")
        .into_inner();
    let stalled_first = stalled.message().await.expect("chunk").expect("first");

    // A batch write, and SIGTERM while it runs.
    let batch = tokio::spawn(async move { write.create_associations(create(2, 1..=BATCH)).await });
    let terminated = Instant::now();
    server.terminate();

    // The feed ends at once, saying why.
    let ended = loop {
        match feed.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("{backend}: the feed ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::Unavailable, "{backend}: {ended:?}");
    let feed_ended = terminated.elapsed();
    assert!(
        feed_ended < Duration::from_millis(GRACE_MS / 2),
        "{backend}: the feed ended {feed_ended:?} after SIGTERM, not at once"
    );
    assert_eq!(
        ended
            .get_error_details()
            .error_info()
            .map(|i| i.reason.clone()),
        Some("crm.associations.SHUTTING_DOWN".to_string()),
        "{backend}: {ended:?}"
    );
    // The stream being read finishes within the grace period.
    while let Some(chunk) = reader.message().await.expect("the read stream finishes") {
        read_rows.extend(ids(&chunk));
    }
    assert_eq!(
        read_rows,
        (1..=ROWS).collect::<Vec<_>>(),
        "{backend}: every row once"
    );
    let written = batch.await.unwrap();

    let exit = tokio::time::timeout(
        Duration::from_millis(GRACE_MS + 10_000),
        server.child.wait(),
    )
    .await
    .expect("the server exits")
    .expect("its status");
    let took = terminated.elapsed();
    assert!(
        exit.success(),
        "{backend}: exit status {exit:?}; log: {:?}",
        server.log.lock().unwrap()
    );
    assert!(
        took < Duration::from_millis(GRACE_MS + 3_500),
        "{backend}: exited {took:?} after SIGTERM (grace {GRACE_MS} ms)"
    );
    drop(stalled);

    // The next process: everything resumes from its cursors.
    let server = ServerProcess::start(&store.url, &env).await;
    let mut read = AssociationReadClient::new(server.channel().await);
    let mut stalled_rows = ids(&stalled_first);
    stalled_rows.extend(read_all(&mut read, 1, &stalled_first.cursor).await);
    assert_eq!(
        stalled_rows,
        (1..=ROWS).collect::<Vec<_>>(),
        "{backend}: the cut stream resumes"
    );

    let batch_rows = read_all(&mut read, 2, "").await;
    match &written {
        Ok(answer) => {
            assert!(
                answer.get_ref().errors.is_empty(),
                "{backend}: {:?}",
                answer.get_ref().errors
            );
            assert_eq!(
                batch_rows,
                (1..=BATCH).collect::<Vec<_>>(),
                "{backend}: the acknowledged batch is whole"
            );
        }
        Err(status) => assert!(
            batch_rows.is_empty(),
            "{backend}: a refused batch ({status:?}) left {} rows",
            batch_rows.len()
        ),
    }

    // The feed resumes after the change it had seen.
    let mut feed = read
        .watch_changes(WatchChangesRequest {
            portal_id: PORTAL,
            cursor: feed_cursor,
            start: FeedStartPoint::Unspecified as i32,
            stop_at_head: false,
        })
        .await
        .expect("resume the feed")
        .into_inner();
    let mut write = AssociationWriteClient::new(server.channel().await);
    write
        .create_associations(create(4, 1..=1))
        .await
        .expect("create");
    let mut records = BTreeSet::new();
    while !records.contains(&4) {
        let chunk = feed.message().await.expect("changes").expect("not the end");
        for change in chunk.changes {
            let deal = if change.from_object_type_id == "0-3" {
                change.from_object_id
            } else {
                change.to_object_id
            };
            records.insert(deal);
        }
    }
    assert!(
        !records.contains(&3),
        "{backend}: the seen change came again"
    );
    assert_eq!(
        records.contains(&2),
        written.is_ok(),
        "{backend}: the batch's changes follow it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_calls_and_streams_on_sqlite() {
    sigterm_drains_calls_and_streams("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_calls_and_streams_on_postgres() {
    sigterm_drains_calls_and_streams("postgres").await;
}

/// A SIGTERM sent the moment the ready line is out is a graceful shutdown
/// (exit 0), never the default action of a signal without a handler: the
/// handlers are installed before the server says it is ready. Twenty
/// starts, each signalled at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_right_after_the_ready_line_is_graceful() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/store.db", dir.path().display());
    for start in 0..20 {
        let mut server = ServerProcess::start(&url, &[]).await;
        server.terminate();
        let status = server.child.wait().await.unwrap();
        assert_eq!(status.code(), Some(0), "start {start}: {status:?}");
    }
}
