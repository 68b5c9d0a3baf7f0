//! HubSpot's date-versioned API (2025-09, 2026-03, 2026-09) beside v3 and
//! v4: every route under every version answers with the success status that
//! version's published spec gives it (the table below, from the facts of
//! HubSpot's specs), with the fields its schemas require; and a golden
//! session of the answers that differ from v4 (tests/golden/dated.json).
mod common;

use common::golden::{check_session, standard_errors_lacking_required_fields};
use common::{http, TestServer};
use serde_json::{json, Value};

/// The prefixes of one version: (name, batch and schema paths, record
/// paths, Limits Tracking paths).
struct Version {
    name: &'static str,
    associations: &'static str,
    objects: &'static str,
    limits: &'static str,
}

const VERSIONS: [Version; 4] = [
    Version {
        name: "v4",
        associations: "/crm/v4/associations",
        objects: "/crm/v4/objects",
        limits: "/crm/v3/limits/associations",
    },
    Version {
        name: "2025-09",
        associations: "/crm/associations/2025-09",
        objects: "/crm/objects/2025-09",
        limits: "/crm/limits/2025-09/associations",
    },
    Version {
        name: "2026-03",
        associations: "/crm/associations/2026-03",
        objects: "/crm/objects/2026-03",
        limits: "/crm/limits/2026-03/associations",
    },
    Version {
        name: "2026-09",
        associations: "/crm/associations/2026-09",
        objects: "/crm/objects/2026-09",
        limits: "/crm/limits/2026-09/associations",
    },
];

/// The body an answer carries (a 204 carries none, whatever its call's form).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Body {
    /// No body (204).
    Empty,
    /// A `BatchResponse` (required: status, results, startedAt, completedAt).
    Batch,
    /// A `BatchResponse` with `numErrors` and `errors` of `StandardError`s.
    BatchWithErrors,
    /// Any JSON object.
    Json,
    /// HubSpot's `Error` (required: category, correlationId, message).
    Error,
}

/// (call, method, path, body, statuses for v4, 2025-09, 2026-03, 2026-09,
/// body form). HubSpot publishes no 2025-09 labels or limit configurations,
/// and no 2026-09 read of one record's associations (only 2026-09-beta):
/// 404 there.
type Call = (
    &'static str,
    &'static str,
    String,
    Option<String>,
    [u16; 4],
    Body,
);

const BATCH_REQUIRED: [&str; 4] = ["status", "results", "startedAt", "completedAt"];
const ERROR_REQUIRED: [&str; 3] = ["category", "correlationId", "message"];

fn create_inputs(from: i64, to: &[i64], type_id: i32) -> String {
    let inputs: Vec<Value> = to
        .iter()
        .map(|t| {
            json!({"from": {"id": from.to_string()}, "to": {"id": t.to_string()},
                   "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]})
        })
        .collect();
    json!({ "inputs": inputs }).to_string()
}

/// Checks one answer against its expected status and body form.
fn check(
    version: &str,
    call: &str,
    status: u16,
    text: &str,
    want_status: u16,
    want: Body,
    failures: &mut Vec<String>,
) {
    let want = match want_status {
        204 => Body::Empty,
        400.. => Body::Error,
        _ => want,
    };
    if status != want_status {
        failures.push(format!(
            "{version} {call}: status {status}, HubSpot's spec says {want_status}: {text}"
        ));
        return;
    }
    if want == Body::Empty {
        if !text.is_empty() {
            failures.push(format!(
                "{version} {call}: a body where none belongs: {text}"
            ));
        }
        return;
    }
    let Ok(body) = serde_json::from_str::<Value>(text) else {
        failures.push(format!("{version} {call}: not JSON: {text}"));
        return;
    };
    let lacking = |fields: &[&str], of: &Value| -> Vec<String> {
        fields
            .iter()
            .filter(|f| of.get(**f).is_none())
            .map(|f| f.to_string())
            .collect()
    };
    let missing = match want {
        Body::Batch | Body::BatchWithErrors => lacking(&BATCH_REQUIRED, &body),
        Body::Error => lacking(&ERROR_REQUIRED, &body),
        _ => Vec::new(),
    };
    if !missing.is_empty() {
        failures.push(format!("{version} {call}: lacks {missing:?}: {text}"));
    }
    if want == Body::BatchWithErrors {
        let errors = body["errors"].as_array().map(Vec::len).unwrap_or(0);
        if errors == 0 || body["numErrors"] != json!(errors) {
            failures.push(format!(
                "{version} {call}: errors and numErrors expected inside: {text}"
            ));
        }
        let items = standard_errors_lacking_required_fields(&body);
        if !items.is_empty() {
            failures.push(format!("{version} {call}: error items lack {items:?}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_version_as_hubspot_publishes_it() {
    use Body::*;
    let server = TestServer::start("sqlite", |_| {}).await;
    let addr = server.http_addr;
    let mut failures = Vec::new();
    for (index, v) in VERSIONS.iter().enumerate() {
        // Each version works on records of its own.
        let base = 1_000 * (index as i64 + 1);
        let (c1, c2, c3) = (base + 1, base + 2, base + 3);
        let (k1, k2) = (base + 11, base + 12);
        let a = v.associations;
        let o = v.objects;
        let label_body = format!(r#"{{"label":"Partner {index}","name":"partner_{index}"}}"#);
        let calls: Vec<Call> = vec![
            (
                "batch/create",
                "POST",
                format!("{a}/contacts/companies/batch/create"),
                Some(create_inputs(c1, &[k1, k2], 279)),
                [201, 201, 201, 200],
                Batch,
            ),
            (
                "batch/create with a failed input",
                "POST",
                format!("{a}/contacts/companies/batch/create"),
                Some(create_inputs(c2, &[k1], 999_999)),
                [207, 207, 207, 200],
                BatchWithErrors,
            ),
            (
                "batch/associate/default",
                "POST",
                format!("{a}/contacts/companies/batch/associate/default"),
                Some(
                    json!({"inputs": [{"from": {"id": c3.to_string()}, "to": {"id": k1.to_string()}}]})
                        .to_string(),
                ),
                [200, 200, 200, 200],
                Batch,
            ),
            (
                "batch/read",
                "POST",
                format!("{a}/contacts/companies/batch/read"),
                Some(json!({"inputs": [{"id": c1.to_string()}]}).to_string()),
                [200, 200, 200, 200],
                Batch,
            ),
            (
                "batch/read with a failed input",
                "POST",
                format!("{a}/contacts/companies/batch/read"),
                Some(json!({"inputs": [{"id": c1.to_string()}, {"id": "999999"}]}).to_string()),
                [207, 207, 207, 200],
                BatchWithErrors,
            ),
            (
                "GET record associations",
                "GET",
                format!("{o}/contacts/{c1}/associations/companies"),
                None,
                [200, 200, 200, 404],
                Json,
            ),
            (
                "PUT labelled",
                "PUT",
                format!("{o}/contacts/{c2}/associations/companies/{k2}"),
                Some(r#"[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":279}]"#.into()),
                [201, 201, 201, 201],
                Json,
            ),
            (
                "PUT default",
                "PUT",
                format!("{o}/contacts/{c2}/associations/default/companies/{k1}"),
                None,
                [200, 200, 200, 200],
                Batch,
            ),
            (
                "DELETE record association",
                "DELETE",
                format!("{o}/contacts/{c2}/associations/companies/{k1}"),
                None,
                [204, 204, 204, 204],
                Empty,
            ),
            (
                "batch/labels/archive",
                "POST",
                format!("{a}/contacts/companies/batch/labels/archive"),
                Some(create_inputs(c1, &[k2], 279)),
                [204, 200, 200, 200],
                Batch,
            ),
            (
                "batch/archive",
                "POST",
                format!("{a}/contacts/companies/batch/archive"),
                Some(
                    json!({"inputs": [{"from": {"id": c1.to_string()}, "to": [{"id": k1.to_string()}]}]})
                        .to_string(),
                ),
                [204, 200, 200, 200],
                Batch,
            ),
            (
                "GET labels",
                "GET",
                format!("{a}/deals/tickets/labels"),
                None,
                [200, 404, 200, 200],
                Json,
            ),
            (
                "POST labels",
                "POST",
                format!("{a}/deals/tickets/labels"),
                Some(label_body),
                [200, 404, 200, 200],
                Json,
            ),
            (
                "POST labels twice",
                "POST",
                format!("{a}/deals/tickets/labels"),
                Some(format!(r#"{{"label":"Partner {index}","name":"partner_{index}"}}"#)),
                [409, 404, 409, 409],
                Error,
            ),
            (
                "limit batch/create",
                "POST",
                format!("{a}/definitions/configurations/deals/tickets/batch/create"),
                Some(
                    r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":27,"maxToObjectIds":5}]}"#
                        .into(),
                ),
                [201, 404, 201, 200],
                Batch,
            ),
            (
                "limit batch/create of one already there",
                "POST",
                format!("{a}/definitions/configurations/deals/tickets/batch/create"),
                Some(
                    r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":27,"maxToObjectIds":5}]}"#
                        .into(),
                ),
                [207, 404, 207, 200],
                BatchWithErrors,
            ),
            (
                "limit batch/update",
                "POST",
                format!("{a}/definitions/configurations/deals/tickets/batch/update"),
                Some(
                    r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":27,"maxToObjectIds":6}]}"#
                        .into(),
                ),
                [200, 404, 200, 200],
                Batch,
            ),
            (
                "GET limit configurations",
                "GET",
                format!("{a}/definitions/configurations/deals/tickets"),
                None,
                [200, 404, 200, 200],
                Json,
            ),
            (
                "GET all limit configurations",
                "GET",
                format!("{a}/definitions/configurations/all"),
                None,
                [200, 404, 200, 200],
                Json,
            ),
            (
                "limit batch/purge",
                "POST",
                format!("{a}/definitions/configurations/deals/tickets/batch/purge"),
                Some(r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":27}]}"#.into()),
                [204, 404, 200, 200],
                Batch,
            ),
            (
                "high-usage report",
                "POST",
                format!("{a}/usage/high-usage-report/{index}1"),
                None,
                [200, 200, 200, 200],
                Json,
            ),
            (
                "an unknown object type",
                "POST",
                format!("{a}/widgets/companies/batch/read"),
                Some(r#"{"inputs":[{"id":"1"}]}"#.into()),
                [400, 400, 400, 400],
                Error,
            ),
            (
                "Limits Tracking records/from",
                "GET",
                format!("{}/records/from", v.limits),
                None,
                [200, 200, 200, 200],
                Json,
            ),
            (
                "Limits Tracking records/{from}/to",
                "GET",
                format!("{}/records/contacts/to", v.limits),
                None,
                [200, 200, 200, 200],
                Json,
            ),
            (
                "Limits Tracking records/{from}/{to}",
                "GET",
                format!("{}/records/contacts/companies", v.limits),
                None,
                [200, 200, 200, 200],
                Json,
            ),
            (
                "Limits Tracking labels",
                "GET",
                format!("{}/labels", v.limits),
                None,
                [200, 200, 200, 200],
                Json,
            ),
        ];
        for (call, method, path, body, statuses, form) in &calls {
            let answer = http(addr, method, path, body.as_deref()).await;
            check(
                v.name,
                call,
                answer.status,
                &answer.body,
                statuses[index],
                *form,
                &mut failures,
            );
        }
    }
    // The objects family: v3 and each dated version (no v4 objects).
    for prefix in [
        "/crm/v3/objects",
        "/crm/objects/2025-09",
        "/crm/objects/2026-03",
        "/crm/objects/2026-09",
    ] {
        let setup = create_inputs(1, &[1, 2], 279);
        let made = http(
            addr,
            "POST",
            "/crm/v4/associations/contacts/companies/batch/create",
            Some(&setup),
        )
        .await;
        assert_eq!(made.status, 201, "{}", made.body);
        for (call, method, path, body, want, form) in [
            (
                "list",
                "GET",
                format!("{prefix}/contacts?limit=1"),
                None,
                200,
                Json,
            ),
            (
                "read",
                "GET",
                format!("{prefix}/contacts/1?associations=companies"),
                None,
                200,
                Json,
            ),
            (
                "read of a record with none",
                "GET",
                format!("{prefix}/contacts/424242"),
                None,
                404,
                Error,
            ),
            (
                "merge",
                "POST",
                format!("{prefix}/companies/merge"),
                Some(r#"{"primaryObjectId":"1","objectIdToMerge":"2"}"#),
                200,
                Json,
            ),
        ] {
            let answer = http(addr, method, &path, body).await;
            check(
                prefix,
                call,
                answer.status,
                &answer.body,
                want,
                form,
                &mut failures,
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} answers differ from HubSpot's specs:\n{}",
        failures.len(),
        failures.join("\n")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dated_answers_are_exactly_as_recorded() {
    let server = TestServer::start("sqlite", |_| {}).await;
    let setup = create_inputs(1, &[10, 11, 12], 279);
    let failing = create_inputs(2, &[10], 999_999);
    let ok_and_failing = json!({"inputs": [
        {"from": {"id": "3"}, "to": {"id": "10"},
         "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]},
        {"from": {"id": "3"}, "to": {"id": "11"},
         "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 999999}]}
    ]})
    .to_string();
    let archive = json!({"inputs": [{"from": {"id": "1"}, "to": [{"id": "12"}]}]}).to_string();
    let steps: Vec<common::golden::Step> = vec![
        (
            "POST",
            "/crm/associations/2026-03/contacts/companies/batch/create",
            Some(&setup),
            true,
        ),
        (
            "POST",
            "/crm/associations/2026-03/contacts/companies/batch/create",
            Some(&failing),
            true,
        ),
        (
            "POST",
            "/crm/associations/2026-09/contacts/companies/batch/create",
            Some(&ok_and_failing),
            true,
        ),
        (
            "POST",
            "/crm/associations/2026-09/contacts/companies/batch/read",
            Some(r#"{"inputs":[{"id":"1"},{"id":"404"}]}"#),
            true,
        ),
        (
            "GET",
            "/crm/objects/2026-03/contacts/1/associations/companies?limit=2",
            None,
            true,
        ),
        (
            "POST",
            "/crm/associations/2025-09/contacts/companies/batch/archive",
            Some(&archive),
            true,
        ),
        (
            "POST",
            "/crm/associations/2026-09/contacts/companies/batch/labels/archive",
            Some(
                r#"{"inputs":[{"from":{"id":"1"},"to":{"id":"11"},"types":[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":279}]}]}"#,
            ),
            true,
        ),
        (
            "POST",
            "/crm/associations/2026-09/definitions/configurations/contacts/companies/batch/create",
            Some(
                r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":279,"maxToObjectIds":3},{"category":"HUBSPOT_DEFINED","typeId":999999,"maxToObjectIds":3}]}"#,
            ),
            true,
        ),
        (
            "POST",
            "/crm/associations/2026-03/definitions/configurations/contacts/companies/batch/purge",
            Some(r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":279}]}"#),
            true,
        ),
        (
            "GET",
            "/crm/objects/2026-09/contacts?limit=2&associations=companies,widgets",
            None,
            true,
        ),
        // HubSpot publishes no 2025-09 labels or limit configurations.
        (
            "GET",
            "/crm/associations/2025-09/contacts/companies/labels",
            None,
            true,
        ),
        (
            "GET",
            "/crm/objects/2025-09/contacts/1?associations=widgets&associations=companies",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v3/objects/contacts/3?associations=widgets",
            None,
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/usage/high-usage-report/42",
            None,
            true,
        ),
        (
            "POST",
            "/crm/associations/2026-09/usage/high-usage-report/abc",
            None,
            true,
        ),
        (
            "POST",
            "/crm/objects/2026-03/contacts/merge",
            Some(r#"{"primaryObjectId":"1","objectIdToMerge":"3"}"#),
            true,
        ),
        // The merged-away contact 3 names contact 1 now, on every family.
        (
            "PUT",
            "/crm/objects/2026-03/contacts/3/associations/default/companies/14",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v4/objects/contacts/3/associations/companies",
            None,
            true,
        ),
        (
            "POST",
            "/crm/associations/2026-09/contacts/companies/batch/read",
            Some(r#"{"inputs":[{"id":"3"}]}"#),
            true,
        ),
        ("GET", "/crm/v3/objects/contacts/3", None, true),
        (
            "POST",
            "/crm/v3/objects/contacts/merge",
            Some(r#"{"primaryObjectId":"3","objectIdToMerge":"1"}"#),
            true,
        ),
    ];
    check_session(server.http_addr, &steps, "tests/golden/dated.json").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unpublished_paths_say_where_they_are() {
    let server = TestServer::start("sqlite", |_| {}).await;
    let answer = http(
        server.http_addr,
        "GET",
        "/crm/associations/2025-09/deals/tickets/labels",
        None,
    )
    .await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        body["message"],
        "Unable to route GET /crm/associations/2025-09/deals/tickets/labels: no such endpoint; \
         HubSpot publishes no 2025-09 version of the association labels and limit \
         configurations: they are under /crm/associations/2026-03/"
    );
    let read = http(
        server.http_addr,
        "GET",
        "/crm/objects/2026-09/contacts/1/associations/companies",
        None,
    )
    .await;
    assert_eq!(read.status, 404, "{}", read.body);
    let body: Value = serde_json::from_str(&read.body).unwrap();
    assert_eq!(
        body["message"],
        "Unable to route GET /crm/objects/2026-09/contacts/1/associations/companies: no such \
         endpoint; HubSpot publishes this read in 2026-09 only as 2026-09-beta: use \
         /crm/objects/2026-03/… or POST /crm/associations/2026-09/{from}/{to}/batch/read"
    );
    // Another unknown path gets no such pointer.
    let other = http(
        server.http_addr,
        "GET",
        "/crm/associations/2025-09/deals/tickets/widgets",
        None,
    )
    .await;
    let body: Value = serde_json::from_str(&other.body).unwrap();
    assert_eq!(
        body["message"],
        "Unable to route GET /crm/associations/2025-09/deals/tickets/widgets: no such endpoint"
    );
    server.stop().await;
}
