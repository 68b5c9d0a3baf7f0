//! Golden tests of the REST gateway: a scripted session of every endpoint's
//! success and error answers on a fresh store, compared status and JSON body
//! with tests/golden/gateway.json. Timestamps, cursors and correlation ids
//! vary per run and are replaced by placeholders (after checking their form).
//! `UPDATE_GOLDEN=1` rewrites the file; review the diff before committing.
mod common;

use common::{http, TestServer};
use serde_json::{json, Value};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/gateway.json");

/// Replaces run-specific values with placeholders, checking their shape.
fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match key.as_str() {
                    "correlationId" => {
                        let text = v.as_str().expect("correlationId is a string");
                        assert!(uuid::Uuid::parse_str(text).is_ok(), "not a UUID: {text}");
                        *v = json!("<uuid>");
                    }
                    "startedAt"
                    | "completedAt"
                    | "createdAt"
                    | "updatedAt"
                    | "createdate"
                    | "hs_lastmodifieddate" => {
                        let text = v.as_str().expect("timestamps are strings");
                        assert!(
                            humantime::parse_rfc3339(text).is_ok(),
                            "not ISO 8601: {text}"
                        );
                        *v = json!("<time>");
                    }
                    "after" => *v = json!("<cursor>"),
                    "link" => {
                        let text = v.as_str().expect("links are strings");
                        let (path, query) = text.split_once('?').expect("a link has a query");
                        let path = path.split_once("/crm/").map(|(_, p)| p).unwrap_or(path);
                        let query: Vec<String> = query
                            .split('&')
                            .map(|p| {
                                if p.starts_with("after=") {
                                    "after=<cursor>".into()
                                } else {
                                    p.to_string()
                                }
                            })
                            .collect();
                        *v = json!(format!("<host>/crm/{path}?{}", query.join("&")));
                    }
                    _ => normalize(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn create_body(
    from: &str,
    to: std::ops::RangeInclusive<i64>,
    category: &str,
    type_id: i32,
) -> String {
    let inputs: Vec<Value> = to
        .map(|t| {
            json!({"from": {"id": from}, "to": {"id": t.to_string()},
                   "types": [{"associationCategory": category, "associationTypeId": type_id}]})
        })
        .collect();
    json!({ "inputs": inputs }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_exactly_as_recorded() {
    let server = TestServer::start("sqlite", |_| {}).await;
    let big_read =
        json!({"inputs": (1..=1001).map(|i| json!({"id": i.to_string()})).collect::<Vec<_>>()})
            .to_string();
    let big_write = create_body("1", 1..=2001, "HUBSPOT_DEFINED", 279);
    let deal_contacts = create_body("1", 1..=101, "HUBSPOT_DEFINED", 3);
    let over_limit = create_body("2", 10..=12, "HUBSPOT_DEFINED", 279);
    let label_archive = create_body("1", 10..=10, "USER_DEFINED", 1000);
    // (method, path, body, recorded?)
    let steps: Vec<(&str, &str, Option<&str>, bool)> = vec![
        (
            "GET",
            "/crm/v3/associations/contacts/companies/types",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v4/associations/contacts/companies/labels",
            None,
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/contacts/companies/labels",
            Some(r#"{"label":"Partner","name":"partner"}"#),
            true,
        ),
        (
            "POST",
            "/crm/associations/v4/contacts/contacts/labels",
            Some(r#"{"label":"Manager","name":"manager","inverseLabel":"Employee"}"#),
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/contacts/companies/labels",
            Some(r#"{"label":"Partner","name":"partner"}"#),
            true,
        ),
        (
            "PUT",
            "/crm/v4/associations/contacts/companies/labels",
            Some(r#"{"associationTypeId":1000,"label":"Partner firm"}"#),
            true,
        ),
        (
            "PUT",
            "/crm/v4/associations/contacts/companies/labels",
            Some(r#"{"associationTypeId":77,"label":"Nothing"}"#),
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/definitions/configurations/contacts/companies/batch/create",
            Some(r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":279,"maxToObjectIds":3}]}"#),
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/definitions/configurations/contacts/companies/batch/update",
            Some(
                r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":279,"maxToObjectIds":2},{"category":"USER_DEFINED","typeId":1000,"maxToObjectIds":1}]}"#,
            ),
            true,
        ),
        (
            "GET",
            "/crm/v4/associations/definitions/configurations/all",
            None,
            true,
        ),
        (
            "GET",
            "/crm/associations/v4/definitions/configurations/contacts/companies",
            None,
            true,
        ),
        (
            "PUT",
            "/crm/v4/objects/contacts/1/associations/companies/10",
            Some(
                r#"[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":1},{"associationCategory":"USER_DEFINED","associationTypeId":1000}]"#,
            ),
            true,
        ),
        (
            "PUT",
            "/crm/v4/objects/contacts/1/associations/default/companies/11",
            None,
            true,
        ),
        (
            "PUT",
            "/crm/v4/objects/contacts/1/associations/default/companies/12",
            None,
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/contacts/companies/batch/create",
            Some(&over_limit),
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/contacts/companies/batch/associate/default",
            Some(r#"{"inputs":[{"from":{"id":"3"},"to":{"id":"10"}}]}"#),
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/contacts/companies/batch/read",
            Some(r#"{"inputs":[{"id":"1"},{"id":"2"},{"id":"99"}]}"#),
            true,
        ),
        // Limits Tracking: contact 1 is at its limit of 2 companies.
        (
            "GET",
            "/crm/v3/limits/associations/records/from",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v3/limits/associations/records/contacts/to",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v3/limits/associations/records/deals/to",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v3/limits/associations/records/widgets/to",
            None,
            true,
        ),
        // The same under a date-versioned prefix.
        (
            "GET",
            "/crm/limits/2026-03/associations/records/contacts/to",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v3/limits/associations/records/contacts/companies",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v3/limits/associations/records/companies/contacts",
            None,
            true,
        ),
        // Labels against the quota: every labelled direction, then one pair
        // by its ids (no labels), then a bad type.
        ("GET", "/crm/v3/limits/associations/labels", None, true),
        (
            "GET",
            "/crm/v3/limits/associations/labels?fromObjectTypeId=0-3&toObjectTypeId=0-1",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v3/limits/associations/labels?fromObjectTypeId=widgets",
            None,
            true,
        ),
        // A date-versioned path answers as v4.
        (
            "GET",
            "/crm/associations/2026-03/definitions/configurations/contacts/companies",
            None,
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/deals/contacts/batch/create",
            Some(&deal_contacts),
            false,
        ),
        (
            "POST",
            "/crm/v3/associations/deals/contacts/batch/read",
            Some(r#"{"inputs":[{"id":"1"}]}"#),
            true,
        ),
        (
            "GET",
            "/crm/v3/objects/deals/1/associations/contacts?limit=2",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v4/objects/deals/1/associations/contacts?limit=2",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v3/objects/contacts/1?associations=companies&associations=deals",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v3/objects/companies/10?associations=contacts,deals",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v3/objects/contacts?limit=2&associations=companies",
            None,
            true,
        ),
        ("GET", "/crm/v3/objects/contacts/999", None, true),
        (
            "POST",
            "/crm/v3/associations/contacts/companies/batch/create",
            Some(
                r#"{"inputs":[{"from":{"id":"4"},"to":{"id":"10"},"type":"contact_to_company_unlabeled"},{"from":{"id":"4"},"to":{"id":"11"},"type":"no_such_type"}]}"#,
            ),
            true,
        ),
        (
            "PUT",
            "/crm/v3/objects/contacts/5/associations/companies/10/contact_to_company",
            None,
            true,
        ),
        (
            "DELETE",
            "/crm/v3/objects/contacts/5/associations/companies/10/contact_to_company",
            None,
            true,
        ),
        (
            "POST",
            "/crm/v3/associations/contacts/companies/batch/archive",
            Some(r#"{"inputs":[{"from":{"id":"4"},"to":{"id":"10"},"type":"279"}]}"#),
            true,
        ),
        (
            "DELETE",
            "/crm/v4/objects/contacts/1/associations/companies/11",
            None,
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/contacts/companies/batch/labels/archive",
            Some(&label_archive),
            true,
        ),
        (
            "GET",
            "/crm/v4/objects/contacts/1/associations/companies",
            None,
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/contacts/companies/batch/archive",
            Some(r#"{"inputs":[{"from":{"id":"2"},"to":[{"id":"10"},{"id":"11"}]}]}"#),
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/definitions/configurations/contacts/companies/batch/purge",
            Some(r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":279}]}"#),
            true,
        ),
        (
            "DELETE",
            "/crm/v4/associations/contacts/companies/labels/1000",
            None,
            true,
        ),
        // Bad input: never a 500.
        (
            "POST",
            "/crm/v4/associations/contacts/companies/batch/read",
            Some(r#"{"inputs": [{"id": "1"}"#),
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/contacts/companies/batch/create",
            Some(r#"{"inputs":[{"from":{"id":"1"}}]}"#),
            true,
        ),
        (
            "GET",
            "/crm/v4/objects/widgets/1/associations/companies",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v4/objects/contacts/abc/associations/companies",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v4/objects/contacts/1/associations/companies?limit=501",
            None,
            true,
        ),
        (
            "GET",
            "/crm/v4/objects/contacts/1/associations/companies?after=bm90LWEtY3Vyc29y",
            None,
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/contacts/companies/batch/read",
            Some(&big_read),
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/contacts/companies/batch/create",
            Some(&big_write),
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/contacts/companies/batch/create",
            Some(
                r#"{"inputs":[{"from":{"id":"1"},"to":{"id":"2"},"types":[{"associationCategory":"WORK","associationTypeId":1}]}]}"#,
            ),
            true,
        ),
        (
            "POST",
            "/crm/v4/associations/tickets/companies/batch/associate/default",
            Some(
                r#"{"inputs":[{"from":{"id":"1"},"to":{"id":"1"}},{"from":{"id":"1"},"to":{"id":"2"}},{"from":{"id":"2"},"to":{"id":"2"}},{"from":{"id":"2"},"to":{"id":"3"}}]}"#,
            ),
            false,
        ),
        (
            "POST",
            "/crm/v4/associations/definitions/configurations/tickets/companies/batch/create",
            Some(r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":339,"maxToObjectIds":2}]}"#),
            false,
        ),
        (
            "POST",
            "/crm/v3/objects/tickets/merge",
            Some(r#"{"primaryObjectId":"1","objectIdToMerge":"2"}"#),
            true,
        ),
        (
            "POST",
            "/crm/v3/objects/0-5/merge",
            Some(r#"{"primaryObjectId":"2","objectIdToMerge":"1"}"#),
            true,
        ),
        (
            "DELETE",
            "/crm/v4/objects/tickets/2/associations/companies/3",
            None,
            false,
        ),
        (
            "POST",
            "/crm/v3/objects/tickets/merge",
            Some(r#"{"primaryObjectId":"1","objectIdToMerge":"2"}"#),
            true,
        ),
        (
            "GET",
            "/crm/v3/objects/tickets/1?associations=companies",
            None,
            true,
        ),
        (
            "POST",
            "/crm/v3/objects/tickets/merge",
            Some(r#"{"primaryObjectId":"2","objectIdToMerge":"2"}"#),
            true,
        ),
        (
            "POST",
            "/crm/v3/objects/tickets/merge",
            Some(r#"{"primaryObjectId":"2"}"#),
            true,
        ),
        ("GET", "/crm/v5/nothing", None, true),
    ];
    let mut recorded = Vec::new();
    for (method, path, body, record) in steps {
        let answer = http(server.http_addr, method, path, body).await;
        assert!(
            answer.status < 500,
            "{method} {path} answered {}: {}",
            answer.status,
            answer.body
        );
        if !record {
            assert!(
                answer.status < 300,
                "setup step {method} {path} failed: {}",
                answer.body
            );
            continue;
        }
        let mut response = if answer.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&answer.body)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", answer.body))
        };
        normalize(&mut response);
        let shown_body = body
            .filter(|b| b.len() <= 400)
            .map(|b| serde_json::from_str::<Value>(b).unwrap_or(json!(b)));
        recorded.push(json!({
            "request": format!("{method} {path}"),
            "body": shown_body,
            "status": answer.status,
            "response": response,
        }));
    }
    let required = standard_errors_lacking_required_fields(&Value::Array(recorded.clone()));
    assert!(
        required.is_empty(),
        "207 error items lacking fields StandardError requires: {required:#?}"
    );
    let actual = serde_json::to_string_pretty(&Value::Array(recorded)).unwrap() + "\n";
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(std::path::Path::new(GOLDEN).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(GOLDEN)
        .expect("tests/golden/gateway.json (UPDATE_GOLDEN=1 writes it)");
    let (expected, actual): (Value, Value) = (
        serde_json::from_str(&expected).unwrap(),
        serde_json::from_str(&actual).unwrap(),
    );
    for (want, got) in expected
        .as_array()
        .unwrap()
        .iter()
        .zip(actual.as_array().unwrap())
    {
        assert_eq!(
            got, want,
            "answer to {} differs from the golden file",
            want["request"]
        );
    }
    assert_eq!(
        expected.as_array().unwrap().len(),
        actual.as_array().unwrap().len()
    );
    server.stop().await;
}

/// The fields HubSpot's `StandardError` schema requires of each error item
/// of a batch envelope (one with `numErrors`).
const STANDARD_ERROR_REQUIRED: [&str; 6] = [
    "category", "context", "errors", "links", "message", "status",
];

/// Every error item of a 207 envelope anywhere in `value` that lacks one of
/// `STANDARD_ERROR_REQUIRED`, with the fields it lacks.
fn standard_errors_lacking_required_fields(value: &Value) -> Vec<(Value, Vec<&'static str>)> {
    let mut lacking = Vec::new();
    match value {
        Value::Object(map) => {
            if map.contains_key("numErrors") {
                for item in map["errors"].as_array().into_iter().flatten() {
                    let missing: Vec<&str> = STANDARD_ERROR_REQUIRED
                        .into_iter()
                        .filter(|field| item.get(*field).is_none())
                        .collect();
                    if !missing.is_empty() {
                        lacking.push((item.clone(), missing));
                    }
                }
            }
            for inner in map.values() {
                lacking.extend(standard_errors_lacking_required_fields(inner));
            }
        }
        Value::Array(items) => {
            for inner in items {
                lacking.extend(standard_errors_lacking_required_fields(inner));
            }
        }
        _ => {}
    }
    lacking
}
