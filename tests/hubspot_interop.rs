//! HubSpot's official Python client (`hubspot-api-client`) against the real
//! server's REST gateway on PostgreSQL (and on Citus): the script in tests/interop/ drives
//! labels, limits, 207s, v4 and v3 paging and objects with a bearer token
//! (authentication on), and reports what it read; every read is checked here
//! against gRPC reads of the same records.
mod common;

use std::collections::BTreeMap;

use association_service::proto::association_read_client::AssociationReadClient;
use association_service::proto::{ListAssociationsRequest, ListDefinitionsRequest};
use common::TestServer;
use serde_json::{json, Value};

/// The portal of the token REST calls carry.
const PORTAL: i64 = 1;

/// The name of the test's token (`common::token_for`).
const TOKEN: &str = "interop";

/// Every (to id, type id) of one record over gRPC, in stream order.
async fn grpc_rows(server: &TestServer, from: &str, id: i64, to: &str) -> Vec<(i64, i32)> {
    let mut reader = AssociationReadClient::connect(server.endpoint())
        .await
        .unwrap();
    let request = common::with_token(
        ListAssociationsRequest {
            portal_id: PORTAL,
            object_type: from.into(),
            object_id: id,
            to_object_type: to.into(),
            ..Default::default()
        },
        TOKEN,
    );
    let mut stream = reader
        .list_associations(request)
        .await
        .unwrap()
        .into_inner();
    let mut rows = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        for record in chunk.results {
            rows.extend(
                record
                    .types
                    .iter()
                    .map(|t| (record.to_object_id, t.type_id)),
            );
        }
    }
    rows
}

/// v3 type names by type id, over gRPC.
async fn type_names(server: &TestServer, from: &str, to: &str) -> BTreeMap<i32, String> {
    let mut reader = AssociationReadClient::connect(server.endpoint())
        .await
        .unwrap();
    let request = common::with_token(
        ListDefinitionsRequest {
            portal_id: PORTAL,
            from_object_type: from.into(),
            to_object_type: to.into(),
        },
        TOKEN,
    );
    let response = reader.list_definitions(request).await.unwrap().into_inner();
    response
        .definitions
        .into_iter()
        .map(|d| (d.type_id, d.name))
        .collect()
}

/// Runs tests/interop/`script` (built on the PyPI package `package`) with
/// the server's REST URL, a token and `extra`; answers the JSON it printed.
async fn run_python(
    server: &TestServer,
    script: &str,
    extra: Option<&str>,
    package: &str,
) -> Value {
    let path = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::process::Command::new(common::python())
        .arg(path)
        .arg(server.rest_url())
        .arg(common::token_for(TOKEN))
        .args(extra)
        .output()
        .await
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({package} is installed by ./scripts/test into .venv):\n{stderr}"
    );
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_works_against_the_gateway() {
    scenario("postgres", None).await;
}

/// The same scenario with every v4 call on HubSpot's date-versioned paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_works_on_the_date_versioned_paths() {
    scenario("postgres", Some("2026-03")).await;
}

/// The same scenario on the Citus cluster (issue 29).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_works_against_the_gateway_on_citus() {
    scenario("citus", None).await;
}

/// Runs tests/interop/hubspot_client.py against a server on `backend` (its
/// v4 calls on the date version's paths, if given) and checks its report
/// against gRPC reads.
async fn scenario(backend: &str, version: Option<&str>) {
    let server = TestServer::start(backend, |s| common::grant(s, &[TOKEN], &[PORTAL])).await;
    let report = run_python(&server, "hubspot_client.py", version, "hubspot-api-client").await;
    if let Some(version) = version {
        let paths = report["versioned_paths"]
            .as_array()
            .expect("versioned calls");
        for family in [
            format!("/crm/associations/{version}/{{fromObjectType}}/{{toObjectType}}/labels"),
            format!("/crm/associations/{version}/{{fromObjectType}}/{{toObjectType}}/batch/create"),
            format!("/crm/associations/{version}/definitions/configurations/"),
            format!(
                "/crm/objects/{version}/{{objectType}}/{{objectId}}/associations/{{toObjectType}}"
            ),
        ] {
            assert!(
                paths
                    .iter()
                    .any(|p| p.as_str().unwrap().starts_with(&family)),
                "the client called {family}… (path templates): {paths:?}"
            );
        }
    }

    assert_eq!(
        report["unknown_token"],
        serde_json::json!([401, "INVALID_AUTHENTICATION"])
    );

    // Labels and limits.
    assert_eq!(
        report["labels"],
        serde_json::json!(["", "Billing contact", "Partner", "Primary"])
    );
    assert_eq!(
        report["labels_after_delete"],
        serde_json::json!(["", "Primary"])
    );
    assert_eq!(report["limits_after_purge"], 0);

    // The 207: three partners within the limit of 3, two refused.
    assert_eq!(report["partner_companies"], serde_json::json!([1, 2, 3]));
    let mut partners: Vec<i64> = grpc_rows(&server, "contacts", 1, "companies")
        .await
        .iter()
        .map(|(id, _)| *id)
        .collect();
    partners.dedup();
    // The partner label is deleted at the end; the unlabeled rows stay.
    assert_eq!(partners, vec![1, 2, 3]);
    let messages = report["partner_error_messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert!(messages[0]
        .as_str()
        .unwrap()
        .starts_with("Exceeded association limit of 3 for portalId 1, fromObjectId 1"));

    // v4 get_page over 1,234 associations: three pages, every id once.
    let expected: Vec<i64> = grpc_rows(&server, "deals", 1, "contacts")
        .await
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(expected.len(), 1_234);
    let paged: Vec<i64> = serde_json::from_value(report["v4_page_ids"].clone()).unwrap();
    assert_eq!(paged, expected);
    assert_eq!(report["v4_pages"], 3);

    // v3 batch read of 50 deals, by `after` and by `link`.
    let names = type_names(&server, "deals", "contacts").await;
    for key in ["v3_after", "v3_link"] {
        let collected = report[key].as_object().unwrap();
        assert_eq!(collected.len(), 50, "{key}: every deal answered");
        for deal in 101..=150i64 {
            let want: Vec<(String, String)> = grpc_rows(&server, "deals", deal, "contacts")
                .await
                .iter()
                .map(|(id, t)| (id.to_string(), names[t].clone()))
                .collect();
            assert_eq!(want.len(), if deal % 3 == 0 { 150 } else { 20 });
            let got: Vec<(String, String)> =
                serde_json::from_value(collected[&deal.to_string()].clone()).unwrap();
            assert_eq!(got, want, "{key}: deal {deal}");
        }
    }

    // Objects: deal 1's associations followed through their links.
    let object_ids: Vec<String> = serde_json::from_value(report["object_ids"].clone()).unwrap();
    assert_eq!(
        object_ids,
        expected.iter().map(i64::to_string).collect::<Vec<_>>()
    );
    let mut listed = vec![1i64];
    listed.extend(101..=150);
    assert_eq!(report["listed_deals"], serde_json::json!(listed));
    server.stop().await;
}

/// HubSpot's new Python SDK (PyPI `hubspot-sdk`, on the 2026-03 paths) runs
/// tests/interop/hubspot_sdk_2026.py: labels, a limit and its 207, paging
/// over 1,234 associations, batch reads, record writes, archives that answer
/// 200 under 2026-03, the high-usage report, purge and label delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_python_sdk_works_on_the_2026_03_paths() {
    let server = TestServer::start("sqlite", |s| common::grant(s, &[TOKEN], &[PORTAL])).await;
    let report = run_python(&server, "hubspot_sdk_2026.py", None, "hubspot-sdk").await;
    let paths = report["paths"].as_array().expect("the paths it called");
    assert!(
        paths.iter().all(|p| {
            let p = p.as_str().unwrap();
            p.starts_with("/crm/associations/2026-03/") || p.starts_with("/crm/objects/2026-03/")
        }),
        "every call on a 2026-03 path: {paths:?}"
    );
    assert_eq!(
        report["unknown_token"],
        json!([401, "INVALID_AUTHENTICATION"])
    );
    assert_eq!(report["labels"], json!(["", "Partner", "Primary"]));
    assert_eq!(report["limits"], json!([3]));
    assert_eq!(report["partner_create"], json!([207, [1, 2, 3], 2]));
    let expected: Vec<i64> = grpc_rows(&server, "deals", 1, "contacts")
        .await
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(expected, (1..=1234).collect::<Vec<i64>>());
    assert_eq!(report["deal_contacts"], json!(expected));
    assert_eq!(report["deal_pages"], 3);
    assert_eq!(report["batch_read"], json!([207, [1], 1]));
    // Contact 2's first company becomes its primary too.
    assert_eq!(report["labelled"], json!(["Partner", "Primary"]));
    assert_eq!(report["default"], json!([["10", "2"], ["2", "10"]]));
    // Company 2 archived whole, company 3's partner label archived; the
    // unlabeled type (279) and the first company's primary (1) stay.
    let partner = report["partner_type"].clone();
    assert_eq!(
        report["contact_1_companies"],
        json!([[1, [1, 279, partner]], [3, [279]]])
    );
    assert_eq!(report["report"], json!([42, ""]));
    assert_eq!(report["limits_after_purge"], 0);
    assert_eq!(report["labels_after_delete"], json!(["", "Primary"]));
    server.stop().await;
}

/// HubSpot's Node client retries the gateway's 429 by itself: on a portal
/// allowed one call a second, its second read in a row is refused, and the
/// client, recognising HubSpot's rate-limit body, waits and reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_client_retries_a_429_by_itself() {
    let interop = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
    let modules = format!("{interop}/node_modules/@hubspot/api-client");
    assert!(
        std::path::Path::new(&modules).exists(),
        "HubSpot's Node client is not installed: ./scripts/test runs `npm install --prefix tests/interop` (Node.js and npm needed)"
    );
    let server = TestServer::start("sqlite", |s| {
        common::grant(s, &[TOKEN], &[PORTAL]);
        s.server.calls_per_second_per_portal = 1;
        s.server.call_burst_per_portal = 1;
    })
    .await;
    let output = tokio::process::Command::new("node")
        .arg(format!("{interop}/hubspot_node_retry.js"))
        .arg(server.rest_url())
        .arg(common::token_for(TOKEN))
        .env("NODE_PATH", format!("{interop}/node_modules"))
        .output()
        .await
        .expect("node runs (install Node.js)");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim()).expect("the script's report");
    // The unlabeled contact -> company type and the primary one, both reads.
    assert_eq!(report["reads"], serde_json::json!([2, 2]), "{report}");
    assert!(
        stderr.contains("Request failed with status code [429], will retry [1] time"),
        "the client met the 429 and retried: {stderr}"
    );
    server.stop().await;
}
