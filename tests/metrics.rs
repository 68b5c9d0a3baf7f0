//! `/metrics` after known traffic, read with the Prometheus client's own
//! OpenMetrics parser (PyPI `prometheus-client`, in .venv): gRPC and REST
//! calls by method or route and status, limit rejections by reason, rows
//! streamed, the database pool. Counts are compared before and after, so
//! whatever the server did on its own does not matter. One test in this
//! file: the registry is the process's.
mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::association_write_client::AssociationWriteClient;
use association_service::proto::{
    AssociationInput, CreateAssociationsRequest, ListAssociationsRequest, ListDefinitionsRequest,
};
use common::TestServer;
use serde_json::Value;

/// Every sample of a scrape: (name, labels, value).
type Samples = Vec<(String, serde_json::Map<String, Value>, f64)>;

async fn scrape(server: &TestServer) -> Samples {
    let answer = common::http(server.http_addr, "GET", "/metrics", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let content_type = answer
        .headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        content_type,
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let mut parser = Command::new(common::python())
        .arg("tests/metrics/parse.py")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (run the suite with ./scripts/test, which installs prometheus-client)");
    parser
        .stdin
        .take()
        .unwrap()
        .write_all(answer.body.as_bytes())
        .unwrap();
    let output = parser.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the parser refused the scrape: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        answer.body
    );
    let parsed: Vec<(String, serde_json::Map<String, Value>, f64)> =
        serde_json::from_slice(&output.stdout).unwrap();
    parsed
}

/// The value of the sample `name` whose labels include `labels` (0 if none).
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic() {
    let server = TestServer::start("sqlite", |s| s.limits.platform_ceiling = 2).await;
    let before = scrape(&server).await;
    // The series alerts watch are there, at zero or more, before any event.
    let present = |name: &str, labels: &[(&str, &str)]| {
        before.iter().any(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(*v))
        })
    };
    for (name, labels) in [
        (
            "associations_grpc_requests_total",
            vec![
                (
                    "method",
                    "/associations.v1.AssociationWrite/CreateAssociations",
                ),
                ("code", "Ok"),
            ],
        ),
        (
            "associations_limit_rejections_total",
            vec![("reason", "platform")],
        ),
        (
            "associations_limit_rejections_total",
            vec![("reason", "user_config")],
        ),
        (
            "associations_rows_streamed_total",
            vec![("stream", "export")],
        ),
        (
            "associations_overload_refusals_total",
            vec![("reason", "total")],
        ),
    ] {
        assert!(present(name, &labels), "{name} {labels:?} missing at start");
    }
    let channel = server.channel().await;
    let mut read = AssociationReadClient::new(channel.clone());
    let mut write = AssociationWriteClient::new(channel);

    // One create of three contacts for deal 1: two held, one past the ceiling.
    let created = write
        .create_associations(CreateAssociationsRequest {
            portal_id: 1,
            from_object_type: "deals".into(),
            to_object_type: "contacts".into(),
            inputs: (1..=3)
                .map(|to_id| AssociationInput {
                    from_id: 1,
                    to_id,
                    types: vec![],
                })
                .collect(),
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.errors.len(), 1, "{created:?}");
    for _ in 0..2 {
        read.list_definitions(ListDefinitionsRequest {
            portal_id: 1,
            from_object_type: "deals".into(),
            to_object_type: "contacts".into(),
        })
        .await
        .expect("definitions");
    }
    let bad = read
        .list_definitions(ListDefinitionsRequest {
            portal_id: 1,
            from_object_type: "nonsense".into(),
            to_object_type: "contacts".into(),
        })
        .await
        .expect_err("an unknown object type");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let mut stream = read
        .list_associations(ListAssociationsRequest {
            portal_id: 1,
            object_type: "deals".into(),
            object_id: 1,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    while stream.message().await.expect("chunk").is_some() {}
    for _ in 0..3 {
        let answer = common::http(
            server.http_addr,
            "GET",
            "/crm/v4/objects/deals/1/associations/contacts",
            None,
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let batch = common::http(
        server.http_addr,
        "POST",
        "/crm/v4/associations/deals/contacts/batch/read",
        Some(r#"{"inputs":[{"id":"1"}]}"#),
    )
    .await;
    assert_eq!(batch.status, 200, "{}", batch.body);
    let missing = common::http(server.http_addr, "GET", "/crm/v4/nowhere", None).await;
    assert_eq!(missing.status, 404);

    let after = scrape(&server).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let definitions = "/associations.v1.AssociationRead/ListDefinitions";
    assert_eq!(
        delta(
            "associations_grpc_requests_total",
            &[("method", definitions), ("code", "Ok")]
        ),
        2.0
    );
    assert_eq!(
        delta(
            "associations_grpc_requests_total",
            &[("method", definitions), ("code", "InvalidArgument")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "associations_grpc_request_duration_seconds_count",
            &[("method", definitions)]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "associations_grpc_requests_total",
            &[
                (
                    "method",
                    "/associations.v1.AssociationRead/ListAssociations"
                ),
                ("code", "Ok")
            ]
        ),
        1.0
    );
    let route = "/crm/v4/objects/{object_type}/{id}/associations/{to}";
    assert_eq!(
        delta(
            "associations_http_requests_total",
            &[("method", "GET"), ("route", route), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "associations_http_request_duration_seconds_count",
            &[("route", route)]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "associations_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "associations_limit_rejections_total",
            &[("reason", "platform")]
        ),
        1.0
    );
    assert_eq!(
        delta("associations_rows_streamed_total", &[("stream", "list")]),
        2.0
    );
    // The REST batch read's answer counts as a stream of its own.
    assert_eq!(
        delta(
            "associations_rows_streamed_total",
            &[("stream", "batch_read")]
        ),
        2.0
    );
    assert!(
        value(
            &after,
            "associations_db_pool_connections",
            &[("state", "max")]
        ) >= 1.0
    );
    assert_eq!(
        value(&after, "associations_db_pool_waiting", &[]),
        0.0,
        "nobody waits for a connection once the calls are done"
    );
    server.stop().await;
}
