//! The REST gateway's OpenAPI document: served at `GET /openapi.json` by the
//! real server, without credentials (it holds nothing of any portal), valid
//! OpenAPI 3.1 by an independent checker (PyPI `openapi-spec-validator`,
//! installed by `./scripts/test`), and the same as docs/openapi.json, the
//! copy the README links (`UPDATE_GOLDEN=1` rewrites it). The golden REST
//! sessions (tests/gateway_golden.rs, tests/dated_api.rs) hold every answer
//! of the running gateway to it.
mod common;

use common::TestServer;
use serde_json::Value;

const COPY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_valid_openapi_and_the_docs_copy() {
    // Authentication on: the document is served to a caller without a token.
    let server = TestServer::start("sqlite", |s| common::grant(s, &["someone"], &[1])).await;
    let answer = common::http(server.http_addr, "GET", "/openapi.json", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let served: Value = serde_json::from_str(&answer.body).expect("JSON");
    assert_eq!(
        served,
        serde_json::to_value(association_service::gateway::openapi::document()).unwrap()
    );
    let paths = served["paths"].as_object().unwrap();
    for (method, pattern, _) in association_service::gateway::REST_ROUTES {
        assert!(
            paths[*pattern][method.to_ascii_lowercase()].is_object(),
            "{method} {pattern} is documented"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &answer.body).unwrap();
    let checker = std::process::Command::new("openapi-spec-validator")
        .arg(&file)
        .output()
        .expect("openapi-spec-validator runs (./scripts/test installs it into .venv)");
    assert!(
        checker.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checker.stdout),
        String::from_utf8_lossy(&checker.stderr)
    );

    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(COPY, &pretty).unwrap();
    }
    let copy = std::fs::read_to_string(COPY)
        .unwrap_or_else(|_| panic!("{COPY} is missing (UPDATE_GOLDEN=1 writes it)"));
    assert!(
        copy == pretty,
        "docs/openapi.json differs from the served document (UPDATE_GOLDEN=1 rewrites it)"
    );
    server.stop().await;
}
