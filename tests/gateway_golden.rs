//! Golden tests of the REST gateway: a scripted session of every endpoint's
//! success and error answers on a fresh store, compared status and JSON body
//! with tests/golden/gateway.json. Timestamps, cursors and correlation ids
//! vary per run and are replaced by placeholders (after checking their form).
//! `UPDATE_GOLDEN=1` rewrites the file; review the diff before committing.
mod common;

use common::golden::check_session;
use common::TestServer;
use serde_json::{json, Value};

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
    check_session(server.http_addr, &steps, "tests/golden/gateway.json").await;
    server.stop().await;
}
