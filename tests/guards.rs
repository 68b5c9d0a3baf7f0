//! The guards against callers that ask too much, through the real server:
//! per-portal call rates (REST `429` with `Retry-After` and HubSpot's
//! `RATE_LIMITS` body, gRPC `RESOURCE_EXHAUSTED` with `RetryInfo`), load
//! shedding at the concurrency limit (REST `503`, gRPC `UNAVAILABLE`), the
//! cap on each caller's open streams, and the REST request and body read
//! timeouts.
mod common;

use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{
    FeedStartPoint, ImportAssociationsRequest, ListDefinitionsRequest, WatchChangesRequest,
};
use common::TestServer;
use tokio::io::AsyncWriteExt;
use tonic::Code;
use tonic_types::StatusExt;

const TYPES: &str = "/crm/v3/associations/contacts/companies/types";

fn definitions(portal: i64, token: &str) -> tonic::Request<ListDefinitionsRequest> {
    common::with_token(
        ListDefinitionsRequest {
            portal_id: portal,
            from_object_type: "contacts".into(),
            to_object_type: "companies".into(),
        },
        token,
    )
}

fn header<'a>(answer: &'a common::HttpAnswer, name: &str) -> Option<&'a str> {
    answer
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn json(answer: &common::HttpAnswer) -> serde_json::Value {
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", answer.body))
}

/// A portal past its burst waits, on both ports, and other portals do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_past_its_call_rate_is_told_to_wait() {
    let server = TestServer::start("sqlite", |s| {
        s.server.calls_per_second_per_portal = 1;
        s.server.call_burst_per_portal = 2;
        common::grant(s, &["seven"], &[7]);
        common::grant(s, &["eight"], &[8]);
    })
    .await;
    let seven = common::token_for("seven");
    // HubSpot's rate-limit headers: a burst of 2 per 2 s (the time it takes
    // to come back at one call a second), and what is left of it.
    let limits = |answer: &common::HttpAnswer| {
        [
            "x-hubspot-ratelimit-max",
            "x-hubspot-ratelimit-remaining",
            "x-hubspot-ratelimit-interval-milliseconds",
        ]
        .map(|name| header(answer, name).map(str::to_string))
    };
    let some = |v: &str| Some(v.to_string());
    for left in ["1", "0"] {
        let answer = common::http_as(server.http_addr, "GET", TYPES, None, Some(&seven)).await;
        assert_eq!(answer.status, 200, "within the burst: {}", answer.body);
        assert_eq!(limits(&answer), [some("2"), some(left), some("2000")]);
    }
    let refused = common::http_as(server.http_addr, "GET", TYPES, None, Some(&seven)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(limits(&refused), [some("2"), some("0"), some("2000")]);
    let body = json(&refused);
    assert_eq!(body["category"], "RATE_LIMITS", "{body}");
    assert_eq!(
        body["subCategory"], "crm.associations.RATE_LIMITED",
        "{body}"
    );
    assert!(body["correlationId"].is_string(), "{body}");
    // HubSpot's rate-limit body, which its clients recognise and retry.
    assert_eq!(body["message"], "You have reached your secondly limit.");
    assert_eq!(body["errorType"], "RATE_LIMIT", "{body}");
    assert_eq!(body["policyName"], "SECONDLY", "{body}");
    assert_eq!(body["context"]["portalId"], serde_json::json!(["7"]));
    assert_eq!(body["context"]["callsPerSecond"], serde_json::json!(["1"]));
    let wait: u64 = header(&refused, "retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("whole seconds");
    assert!((1..=2).contains(&wait), "Retry-After {wait}");

    // The same portal over gRPC shares the allowance.
    let channel = server.channel().await;
    let mut read = AssociationReadClient::new(channel);
    let status = read
        .list_definitions(definitions(7, "seven"))
        .await
        .expect_err("portal 7 is past its rate");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let details = status.get_error_details();
    assert_eq!(
        details.error_info().map(|i| i.reason.as_str()),
        Some("crm.associations.RATE_LIMITED")
    );
    assert!(
        details.retry_info().and_then(|r| r.retry_delay).is_some(),
        "RetryInfo says how long to wait: {details:?}"
    );

    // Another portal has its own allowance.
    let eight = common::token_for("eight");
    let answer = common::http_as(server.http_addr, "GET", TYPES, None, Some(&eight)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    read.list_definitions(definitions(8, "eight"))
        .await
        .expect("portal 8 is within its rate");
    server.stop().await;
}

/// HubSpot's batch association calls skip the short window (its specs
/// exempt them) but count against the day; past the daily quota a call is
/// refused with HubSpot's DAILY body until the next UTC day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_calls_skip_the_window_and_every_call_counts_against_the_day() {
    let server = TestServer::start("sqlite", |s| {
        s.server.calls_per_second_per_portal = 1;
        s.server.call_burst_per_portal = 1;
        s.server.calls_per_day_per_portal = 4;
        common::grant(s, &["seven"], &[7]);
    })
    .await;
    let seven = common::token_for("seven");
    let headers = |answer: &common::HttpAnswer| {
        [
            "x-hubspot-ratelimit-remaining",
            "x-hubspot-ratelimit-daily",
            "x-hubspot-ratelimit-daily-remaining",
        ]
        .map(|name| header(answer, name).map(str::to_string))
    };
    let some = |v: &str| Some(v.to_string());
    let read = r#"{"inputs":[{"id":"1"}]}"#;
    let batch = "/crm/v4/associations/contacts/companies/batch/read";
    // Two batch reads in a row: past a burst of 1, yet both served (a 207:
    // contact 1 has none); no window headers, the day's count goes down.
    for left in ["3", "2"] {
        let answer =
            common::http_as(server.http_addr, "POST", batch, Some(read), Some(&seven)).await;
        assert_eq!(answer.status, 207, "{}", answer.body);
        assert_eq!(headers(&answer), [None, some("4"), some(left)]);
    }
    // The window is whole for the first other call, not for the second.
    let answer = common::http_as(server.http_addr, "GET", TYPES, None, Some(&seven)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(headers(&answer), [some("0"), some("4"), some("1")]);
    let refused = common::http_as(server.http_addr, "GET", TYPES, None, Some(&seven)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(json(&refused)["policyName"], "SECONDLY");
    // The last call of the day, then the day is spent, batch calls too.
    let answer = common::http_as(server.http_addr, "POST", batch, Some(read), Some(&seven)).await;
    assert_eq!(headers(&answer), [None, some("4"), some("0")]);
    let refused = common::http_as(server.http_addr, "POST", batch, Some(read), Some(&seven)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(headers(&refused), [None, some("4"), some("0")]);
    let body = json(&refused);
    assert_eq!(body["message"], "You have reached your daily limit.");
    assert_eq!(
        (&body["errorType"], &body["policyName"]),
        (&"RATE_LIMIT".into(), &"DAILY".into())
    );
    assert_eq!(body["context"]["callsPerDay"], serde_json::json!(["4"]));
    let wait: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=86_400).contains(&wait),
        "until the next UTC day: {wait}"
    );
    // gRPC shares the day.
    let status = AssociationReadClient::new(server.channel().await)
        .list_definitions(definitions(7, "seven"))
        .await
        .expect_err("portal 7's day is spent");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    server.stop().await;
}

/// The daily quota holds across replicas: two servers on one PostgreSQL
/// draw portal 7's calls from the store, so the day gives five calls in
/// all, whichever replica serves them, and both then refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_quota_is_one_for_every_replica() {
    let configure = |s: &mut association_service::config::Settings| {
        s.server.calls_per_day_per_portal = 5;
        common::grant(s, &["seven"], &[7]);
    };
    let first = TestServer::start("postgres", configure).await;
    let second = TestServer::start_on(first.store.shared(), configure).await;
    let seven = common::token_for("seven");
    let mut answers = Vec::new();
    for call in 0..10 {
        let replica = [&first, &second][call % 2];
        let answer = common::http_as(replica.http_addr, "GET", TYPES, None, Some(&seven)).await;
        let left = header(&answer, "x-hubspot-ratelimit-daily-remaining").map(str::to_string);
        answers.push((answer.status, left));
    }
    let some = |n: &str| Some(n.to_string());
    assert_eq!(
        answers,
        vec![
            (200, some("4")),
            (200, some("3")),
            (200, some("2")),
            (200, some("1")),
            (200, some("0")),
            (429, some("0")),
            (429, some("0")),
            (429, some("0")),
            (429, some("0")),
            (429, some("0")),
        ]
    );
    second.stop().await;
    first.stop().await;
}

/// A REST request whose body stops arriving: the headers and part of a
/// declared body, then silence. The connection is returned so the request
/// stays in flight.
async fn stalled_request(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "POST /crm/v4/associations/contacts/companies/batch/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\"";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// At the concurrency limit further calls are refused at once, on both
/// ports, and served again once the call in flight ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_concurrency_limit_are_shed() {
    let server = TestServer::start("sqlite", |s| {
        s.server.max_concurrent_calls = 1;
        s.gateway.body_read_timeout_ms = 60_000;
    })
    .await;
    // REST: a request whose body never completes holds the one place. A
    // probe may take the place first and shed the stalled request instead:
    // then it has its answer, and another one is tried.
    let mut attempts = 0..100;
    let (shed, stalled) = 'held: loop {
        assert!(attempts.next().is_some(), "no call was shed");
        let stalled = stalled_request(server.http_addr).await;
        for _ in 0..1000 {
            let answer = common::http(server.http_addr, "GET", TYPES, None).await;
            if answer.status != 200 {
                break 'held (answer, stalled);
            }
            match stalled.try_read(&mut [0u8; 1]) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => continue 'held,
            }
        }
        panic!("the stalled request neither held the place nor was shed");
    };
    assert_eq!(shed.status, 503, "{}", shed.body);
    assert_eq!(json(&shed)["subCategory"], "crm.associations.OVERLOADED");
    assert!(
        header(&shed, "retry-after").is_some(),
        "a Retry-After header"
    );
    drop(stalled);
    // The server notices the closed connection on its own time.
    let mut tries = 0..1000;
    let served = loop {
        assert!(tries.next().is_some(), "the place was never freed");
        let answer = common::http(server.http_addr, "GET", TYPES, None).await;
        if answer.status != 503 {
            break answer;
        }
    };
    assert_eq!(
        served.status, 200,
        "served once the place is free: {}",
        served.body
    );

    // gRPC: an import whose request stream stays open holds the one place.
    let channel = server.channel().await;
    let mut read = AssociationReadClient::new(channel.clone());
    let mut attempts = 0..100;
    let (status, rows, import) = 'held: loop {
        assert!(attempts.next().is_some(), "no call was shed");
        let (rows, pending) = tokio::sync::mpsc::channel::<ImportAssociationsRequest>(1);
        let mut write = AssociationWriteClient::new(channel.clone());
        let import = tokio::spawn(async move {
            write
                .import_associations(tokio_stream::wrappers::ReceiverStream::new(pending))
                .await
        });
        for _ in 0..1000 {
            match read.list_definitions(definitions(1, "anyone")).await {
                Err(status) => break 'held (status, rows, import),
                // The import was shed instead: try another.
                Ok(_) if import.is_finished() => continue 'held,
                Ok(_) => {}
            }
        }
        panic!("the import neither held the place nor was shed");
    };
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status
            .get_error_details()
            .error_info()
            .map(|i| i.reason.as_str()),
        Some("crm.associations.OVERLOADED")
    );
    drop(rows);
    let ended = import.await.unwrap();
    assert!(
        ended
            .as_ref()
            .map_or_else(|s| s.code() != Code::Unavailable, |_| true),
        "the import ends once its stream ends: {ended:?}"
    );
    read.list_definitions(definitions(1, "anyone"))
        .await
        .expect("served once the place is free");
    server.stop().await;
}

/// A body that stops arriving is cut off by the body read timeout, a call
/// that takes too long by the request timeout; both answer in HubSpot's
/// JSON error body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_and_slow_calls_are_cut_off() {
    for (body_ms, request_ms, expected) in [(200, 60_000, 400), (60_000, 200, 504)] {
        let server = TestServer::start("sqlite", move |s| {
            s.gateway.body_read_timeout_ms = body_ms;
            s.server.request_timeout_ms = request_ms;
        })
        .await;
        let stalled = stalled_request(server.http_addr).await;
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            common::http_over(stalled, b""),
        )
        .await
        .expect("the stalled request is answered and closed")
        .expect("an answer to the stalled request");
        assert_eq!(answer.status, expected, "{}", answer.body);
        let body = json(&answer);
        assert!(body["correlationId"].is_string(), "{body}");
        assert_eq!(body["status"], "error", "{body}");
        server.stop().await;
    }
}

/// A change-feed stream of portal 7 for `token`'s caller, or its refusal.
async fn watch(
    read: &mut AssociationReadClient<tonic::transport::Channel>,
    token: &str,
) -> Result<tonic::Streaming<association_service::proto::WatchChangesResponse>, tonic::Status> {
    let request = common::with_token(
        WatchChangesRequest {
            portal_id: 7,
            cursor: String::new(),
            start: FeedStartPoint::Now as i32,
            stop_at_head: false,
        },
        token,
    );
    read.watch_changes(request).await.map(|r| r.into_inner())
}

/// A caller holds at most its cap of open streams; another caller is not
/// affected, and a closed stream gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_past_its_stream_cap_waits_for_one_to_close() {
    let server = TestServer::start("sqlite", |s| {
        s.read.max_streams_per_caller = 2;
        common::grant(s, &["watcher", "other"], &[7]);
    })
    .await;
    let channel = server.channel().await;
    let mut read = AssociationReadClient::new(channel);
    let first = watch(&mut read, "watcher").await.expect("first stream");
    let second = watch(&mut read, "watcher").await.expect("second stream");
    let refused = watch(&mut read, "watcher")
        .await
        .expect_err("a third is refused");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        refused
            .get_error_details()
            .error_info()
            .map(|i| i.reason.as_str()),
        Some("crm.associations.TOO_MANY_STREAMS")
    );
    let others = watch(&mut read, "other")
        .await
        .expect("another caller has its own places");
    drop(first);
    // The server sees the stream cancelled on its own time.
    let mut tries = 0..10_000;
    let again = loop {
        assert!(
            tries.next().is_some(),
            "the closed stream's place never came back"
        );
        match watch(&mut read, "watcher").await {
            Ok(stream) => break stream,
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
    };
    drop((second, others, again));
    server.stop().await;
}

/// `server.request_timeout_ms` bounds a call's time to its answer, but an
/// import only by its progress: with the store's write lock held past the
/// timeout, a create is cut off (`UNAVAILABLE`, `CALL_TIMEOUT`) while an
/// import that waits as long goes on and stores every row once the lock is
/// released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_is_bounded_by_its_progress_not_the_request_timeout() {
    use association_service::proto::{
        AssociationInput, CreateAssociationsRequest, ImportAssociationsResponse, ImportRow,
    };
    use sqlx::Connection;
    const TIMEOUT_MS: u64 = 300;
    let server = TestServer::start("sqlite", |s| s.server.request_timeout_ms = TIMEOUT_MS).await;
    let mut write = AssociationWriteClient::new(server.channel().await);
    let mut lock = sqlx::SqliteConnection::connect(&server.store.url)
        .await
        .expect("connect");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .expect("take the write lock");

    let refused = write
        .create_associations(CreateAssociationsRequest {
            portal_id: 1,
            from_object_type: "contacts".into(),
            to_object_type: "companies".into(),
            inputs: vec![AssociationInput {
                from_id: 1,
                to_id: 2,
                types: vec![],
            }],
        })
        .await
        .expect_err("the create waits on the lock past the timeout");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(
        refused
            .get_error_details()
            .error_info()
            .map(|i| i.reason.as_str()),
        Some("crm.associations.CALL_TIMEOUT")
    );

    let rows: Vec<ImportRow> = (1..=3)
        .map(|n| ImportRow {
            line: n,
            from_object_type: "contacts".into(),
            from_object_id: 10 + n as i64,
            to_object_type: "companies".into(),
            to_object_id: 20,
            ..Default::default()
        })
        .collect();
    let (sender, pending) = tokio::sync::mpsc::channel::<ImportAssociationsRequest>(1);
    let import = tokio::spawn(async move {
        write
            .import_associations(tokio_stream::wrappers::ReceiverStream::new(pending))
            .await
            .map(|r| r.into_inner())
    });
    sender
        .send(ImportAssociationsRequest { portal_id: 1, rows })
        .await
        .expect("the import takes its rows");
    drop(sender);
    // Held three times the request timeout (the time to outlast, not a
    // wait for an event).
    tokio::time::sleep(std::time::Duration::from_millis(3 * TIMEOUT_MS)).await;
    assert!(!import.is_finished(), "the import waits for the lock");
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    let summary: ImportAssociationsResponse = import
        .await
        .unwrap()
        .expect("the import outlasts the request timeout");
    assert_eq!((summary.rows, summary.created, summary.failed), (3, 3, 0));
    server.stop().await;
}
