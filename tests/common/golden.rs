//! Golden REST sessions: runs scripted calls against a server, normalizes
//! what varies per run, checks 207 error items for the fields HubSpot's
//! `StandardError` requires, holds every answer (and the body of every call
//! that succeeded) to the gateway's own OpenAPI document, and compares
//! with (or, with `UPDATE_GOLDEN=1`, rewrites) a file under tests/golden.
use std::net::SocketAddr;

use serde_json::{json, Value};

use super::http;

/// One scripted call: method, path, body, and whether its answer is recorded
/// (a setup step must succeed and is not).
pub type Step<'a> = (&'a str, &'a str, Option<&'a str>, bool);

/// Runs `steps` against the gateway at `addr` and holds the recorded
/// answers to `file` (relative to the crate).
pub async fn check_session(addr: SocketAddr, steps: &[Step<'_>], file: &str) {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    let document = OpenApi::fetch(addr).await;
    let mut recorded = Vec::new();
    for &(method, path, body, record) in steps {
        let answer = http(addr, method, path, body).await;
        assert!(
            answer.status < 500,
            "{method} {path} answered {}: {}",
            answer.status,
            answer.body
        );
        document.check(method, path, body, answer.status, &answer.body);
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
        "error items of batch answers lacking fields StandardError requires: {required:#?}"
    );
    // A top-level error body's field-level details are HubSpot's
    // `ErrorDetail`s: each says what and where.
    for answer in &recorded {
        let body = &answer["response"];
        if body.get("correlationId").is_some() {
            for detail in body["errors"].as_array().into_iter().flatten() {
                assert!(
                    detail["message"].is_string() && detail["in"].is_string(),
                    "{}: an error detail without message and in: {detail}",
                    answer["request"]
                );
            }
        }
    }
    let actual = serde_json::to_string_pretty(&Value::Array(recorded)).unwrap() + "\n";
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{file} is missing (UPDATE_GOLDEN=1 writes it)"));
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
            "answer to {} differs from {file}",
            want["request"]
        );
    }
    assert_eq!(
        expected.as_array().unwrap().len(),
        actual.as_array().unwrap().len(),
        "{file} records another number of answers"
    );
}

/// Replaces run-specific values with placeholders, checking their shape.
pub fn normalize(value: &mut Value) {
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
                    | "enqueueTime"
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

/// The fields HubSpot's `StandardError` schema requires of each error item
/// of a batch envelope (one with `numErrors`).
pub const STANDARD_ERROR_REQUIRED: [&str; 6] = [
    "category", "context", "errors", "links", "message", "status",
];

/// Every error item of a 207 envelope anywhere in `value` that lacks one of
/// `STANDARD_ERROR_REQUIRED`, with the fields it lacks.
pub fn standard_errors_lacking_required_fields(value: &Value) -> Vec<(Value, Vec<&'static str>)> {
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

/// The gateway's OpenAPI document (`GET /openapi.json`), to hold live
/// answers to.
pub struct OpenApi {
    document: Value,
    /// (route pattern, its segments) of every path.
    patterns: Vec<(String, Vec<String>)>,
    checked: std::sync::atomic::AtomicUsize,
}

impl OpenApi {
    pub async fn fetch(addr: SocketAddr) -> OpenApi {
        let answer = http(addr, "GET", "/openapi.json", None).await;
        assert_eq!(answer.status, 200, "GET /openapi.json: {}", answer.body);
        let document: Value = serde_json::from_str(&answer.body).expect("the document is JSON");
        let patterns = document["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .map(|p| (p.clone(), p.split('/').map(str::to_string).collect()))
            .collect();
        OpenApi {
            document,
            patterns,
            checked: Default::default(),
        }
    }

    /// How many answers were held to the document.
    pub fn checked(&self) -> usize {
        self.checked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The route pattern `path` (query dropped) matches: of those whose
    /// segments match it, the one with most literal segments.
    pub fn pattern(&self, path: &str) -> Option<&str> {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.split('/').collect();
        self.patterns
            .iter()
            .filter(|(_, p)| {
                p.len() == segments.len()
                    && p.iter()
                        .zip(&segments)
                        .all(|(p, s)| p.starts_with('{') || p == s)
            })
            .max_by_key(|(_, p)| p.iter().filter(|p| !p.starts_with('{')).count())
            .map(|(pattern, _)| pattern.as_str())
    }

    /// Holds one answer to the document: a documented status (or the
    /// operation's default) with a body its schema accepts, no body where
    /// it documents none; a call that succeeded sent a body the operation's
    /// request schema accepts. A path or method the gateway does not serve
    /// answers HubSpot's error body.
    pub fn check(&self, method: &str, path: &str, request: Option<&str>, status: u16, body: &str) {
        self.checked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let call = format!("{method} {path} ({status})");
        let components = &self.document["components"];
        let operation = self
            .pattern(path)
            .map(|p| &self.document["paths"][p][method.to_ascii_lowercase()])
            .filter(|o| o.is_object());
        let Some(operation) = operation else {
            assert!((400..500).contains(&status), "{call}: an unserved call");
            let error = json!({"$ref": "#/components/schemas/ErrorBody"});
            holds(&error, components, body, &call);
            return;
        };
        let responses = &operation["responses"];
        let response = match &responses[status.to_string()] {
            Value::Null => &responses["default"],
            documented => documented,
        };
        assert!(
            response.is_object() && (status >= 400 || responses.get(status.to_string()).is_some()),
            "{call}: the document gives no {status} answer for {method} {}",
            self.pattern(path).unwrap_or(path)
        );
        match response["content"]["application/json"].get("schema") {
            Some(schema) => holds(schema, components, body, &call),
            None => assert!(body.is_empty(), "{call}: documented without a body: {body}"),
        }
        if (200..300).contains(&status) {
            if let Some(schema) =
                operation["requestBody"]["content"]["application/json"].get("schema")
            {
                holds(
                    schema,
                    components,
                    request.unwrap_or("null"),
                    &format!("{call} request"),
                );
            }
        }
    }
}

/// Fails unless `text` is JSON that `schema` (refs into `components`)
/// accepts.
fn holds(schema: &Value, components: &Value, text: &str, call: &str) {
    let instance: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{call}: not JSON ({e}): {text}"));
    let mut root = schema.clone();
    if let Value::Object(map) = &mut root {
        map.insert("components".into(), components.clone());
    }
    let validator = jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("{call}: the document's schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{call}: the answer does not hold to the OpenAPI document: {errors:#?}\n{text}"
    );
}
