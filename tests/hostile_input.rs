//! Property tests of everything parsed from outside the service: resume
//! cursors, object types and ids, bearer tokens and JWTs, REST JSON bodies
//! and query strings (through the real server). Each target mutates valid
//! inputs at random (seeded: `FUZZ_SEED=n` replays a run, printed on
//! failure) for `FUZZ_ITERATIONS` rounds (a short run by default; set it
//! higher for a long soak) and checks that nothing panics, nothing is
//! accepted that should not be, and every refusal is a bounded client error.
mod common;

use association_service::auth::{token_hash, Authenticator, TokenConfig};
use association_service::domain::{DomainError, ObjectType};
use association_service::gateway::REST_ROUTES;
use association_service::service::cursor::{fingerprint, CursorCodec};
use common::{Rng, TestServer};

fn iterations(default: u64) -> u64 {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn seeded(target: &str) -> (Rng, u64) {
    let (rng, seed) = Rng::from_env("FUZZ_SEED");
    eprintln!("{target}: FUZZ_SEED={seed}");
    (rng, seed)
}

/// Bytes that break parsers: separators, quotes, escapes, controls, NUL,
/// invalid UTF-8 lead bytes, digits and signs.
const NASTY: &[u8] = b".-_=+/\\\"'{}[]:,%\x00\x01\n\r\t \x7f0123456789e";

/// A random mutation of `input`: flips, inserts, deletes, truncates,
/// repeats, or splices in nasty bytes or extreme numbers.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(3) {
        let at = if out.is_empty() {
            0
        } else {
            rng.below(out.len() as u64 + 1) as usize
        };
        match rng.below(9) {
            0 if at < out.len() => out[at] ^= 1 << rng.below(8),
            1 => out.insert(at, NASTY[rng.below(NASTY.len() as u64) as usize]),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => out.truncate(at),
            4 => {
                let tail = out[at..].to_vec();
                out.extend_from_slice(&tail);
            }
            5 => {
                let numbers: [&[u8]; 8] = [
                    b"-1",
                    b"0",
                    b"9223372036854775807",
                    b"9223372036854775808",
                    b"-9223372036854775809",
                    b"1e400",
                    b"1.5",
                    b"null",
                ];
                let n = numbers[rng.below(numbers.len() as u64) as usize];
                out.splice(at..at, n.iter().copied());
            }
            6 => {
                out.splice(at..at, [0xff, 0xfe, 0xc3]);
            }
            7 => {
                let long = vec![b'a' + rng.below(26) as u8; rng.below(5000) as usize];
                out.splice(at..at, long);
            }
            _ => {
                out.splice(at..at, "é\u{202e}😀".bytes());
            }
        }
    }
    out
}

// ---------------------------------------------------------------- cursors

/// A cursor decodes only as the cursor it was issued as: any mutation that
/// is accepted leaves the signed payload unchanged (found: a signature cut
/// to one byte was accepted, so a cursor could be forged in 256 tries).
#[test]
fn mutated_cursors_are_refused() {
    let (mut rng, seed) = seeded("cursors");
    let codec = CursorCodec::new(b"a cursor secret for the property test");
    let request = fingerprint(&["list", "0-1", "7"]);
    for round in 0..iterations(20_000) {
        let position = (format!("0-{}", rng.below(50)), rng.below(1 << 40) as i64);
        let cursor = codec.encode(7, &request, &position);
        let (payload, signature) = cursor.split_once('.').unwrap();
        let candidate = match rng.below(4) {
            // The real signature, cut short.
            0 => format!(
                "{payload}.{}",
                &signature[..rng.below(signature.len() as u64) as usize]
            ),
            // Another payload under the real signature.
            1 => {
                let other = codec.encode(7, &request, &("0-2".to_string(), 1_i64));
                format!("{}.{signature}", other.split_once('.').unwrap().0)
            }
            _ => String::from_utf8_lossy(&mutate(&mut rng, cursor.as_bytes())).into_owned(),
        };
        match codec.decode::<(String, i64)>(&candidate, 7, &request) {
            Ok(decoded) => assert!(
                candidate.split_once('.').map(|(p, _)| p) == Some(payload)
                    && decoded == position
                    && candidate.len() >= cursor.len(),
                "FUZZ_SEED={seed} round {round}: {candidate:?} was accepted as {decoded:?} (issued {cursor:?})"
            ),
            Err(err) => assert_eq!(err, DomainError::InvalidCursor, "FUZZ_SEED={seed}"),
        }
    }
}

// ----------------------------------------------------- object types and ids

/// Any text parses to an object type that reads back the same, or to a
/// refusal that echoes at most 64 characters on one line.
#[test]
fn object_types_parse_or_refuse_in_bounds() {
    let (mut rng, seed) = seeded("object types");
    let valid: &[&[u8]] = &[b"contacts", b"0-1", b"2-123", b"Company", b"deals", b"0-5"];
    for round in 0..iterations(20_000) {
        let base = valid[rng.below(valid.len() as u64) as usize];
        let text = String::from_utf8_lossy(&mutate(&mut rng, base)).into_owned();
        match ObjectType::parse(&text) {
            Ok(parsed) => assert_eq!(
                ObjectType::parse(&parsed.to_string()),
                Ok(parsed),
                "FUZZ_SEED={seed} round {round}: {text:?}"
            ),
            Err(err) => {
                let message = err.to_string();
                let DomainError::UnknownObjectType(shown) = &err else {
                    panic!("FUZZ_SEED={seed} round {round}: {text:?} -> {err:?}");
                };
                assert!(
                    shown.chars().count() <= 80 && !shown.chars().any(char::is_control),
                    "FUZZ_SEED={seed} round {round}: echoed {shown:?}"
                );
                assert!(message.len() < 400, "FUZZ_SEED={seed}: {message}");
            }
        }
    }
}

// ----------------------------------------------------------------- tokens

/// Only the configured token's exact text and correctly signed JWTs
/// authenticate; everything else is refused without a panic.
#[test]
fn mutated_tokens_and_jwts_are_refused() {
    let (mut rng, seed) = seeded("tokens");
    let mut settings = association_service::config::Settings::load(None).unwrap();
    common::accept_jwt(&mut settings);
    settings.auth.tokens.push(TokenConfig {
        name: "svc".into(),
        sha256: token_hash("the-static-token"),
        portals: vec![7],
        all_portals: false,
        roles: vec!["read".into()],
    });
    let auth: Authenticator = settings.auth.authenticator().unwrap();
    let jwt = common::jwt(&common::jwt_claims("svc-jwt", &[7], &["read"]));
    let valid = [
        format!("Bearer {jwt}"),
        "Bearer the-static-token".to_string(),
    ];
    for text in &valid {
        auth.authenticate(Some(text))
            .expect("the valid credentials pass");
    }
    for round in 0..iterations(5_000) {
        let base = &valid[rng.below(2) as usize];
        let candidate = String::from_utf8_lossy(&mutate(&mut rng, base.as_bytes())).into_owned();
        match auth.authenticate(Some(&candidate)) {
            Ok(principal) => {
                // Only the scheme's case and whitespace around the token may differ.
                let token = candidate
                    .strip_prefix("Bearer ")
                    .or_else(|| candidate.strip_prefix("bearer "))
                    .map(str::trim);
                assert!(
                    token == base.strip_prefix("Bearer "),
                    "FUZZ_SEED={seed} round {round}: {candidate:?} authenticated as {}",
                    principal.name
                );
            }
            Err(err) => assert!(
                matches!(err, DomainError::Unauthenticated(_)),
                "FUZZ_SEED={seed} round {round}: {err:?}"
            ),
        }
    }
}

// ------------------------------------------------- REST bodies and queries

/// A valid body for each POST or PUT route, to mutate.
fn body_for(pattern: &str) -> &'static str {
    if pattern.ends_with("/batch/read") {
        r#"{"inputs":[{"id":"1"},{"id":"2","after":"x"}]}"#
    } else if pattern.contains("/labels") && !pattern.contains("/batch/") {
        r#"{"label":"Partner","name":"partner","inverseLabel":"Partner of"}"#
    } else if pattern.contains("/configurations") {
        r#"{"inputs":[{"category":"HUBSPOT_DEFINED","typeId":1,"maxToObjectIds":3}]}"#
    } else if pattern.ends_with("/merge") {
        r#"{"primaryObjectId":"1","objectIdToMerge":"2"}"#
    } else if pattern.contains("/v3/") {
        r#"{"inputs":[{"from":{"id":"1"},"to":{"id":"2"},"type":"contact_to_company"}]}"#
    } else {
        r#"{"inputs":[{"from":{"id":"1"},"to":{"id":"2"},"types":[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":1}]}]}"#
    }
}

/// Mutated bodies, paths and query strings on every endpoint never get a
/// server error, and every refusal is HubSpot's JSON error body.
/// (status, category) of every error a mutated REST call may get here
/// (open, no call rates, small bodies): the status table's pairs for bad
/// input, what is not found (paths included) and conflicts.
const ERROR_ANSWERS: [(u16, &str); 3] = [
    (400, "VALIDATION_ERROR"),
    (404, "OBJECT_NOT_FOUND"),
    (409, "CONFLICT"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_rest_requests_get_client_errors() {
    let (mut rng, seed) = seeded("REST");
    let server = TestServer::start("sqlite", |s| {
        s.server.calls_per_second_per_portal = 0;
    })
    .await;
    let queries = [
        "?limit=10&after=abc",
        "?associations=companies&limit=5",
        "?archived=false",
    ];
    let mut seen = std::collections::BTreeMap::new();
    for round in 0..iterations(1_500) {
        let (method, pattern, _) = REST_ROUTES[rng.below(REST_ROUTES.len() as u64) as usize];
        let mut path = common::concrete_path(pattern);
        let query = queries[rng.below(queries.len() as u64) as usize];
        let mutated_path = rng.below(3) == 0;
        if mutated_path {
            // Keep it a request target: no spaces or raw control bytes.
            let mangled = mutate(&mut rng, format!("{path}{query}").as_bytes());
            path = mangled
                .iter()
                .map(|&b| match b {
                    b' ' => "%20".to_string(),
                    0..=0x1f | 0x7f..=0xff => format!("%{b:02X}"),
                    _ => (b as char).to_string(),
                })
                .collect();
            if !path.starts_with('/') {
                path.insert(0, '/');
            }
        } else {
            path.push_str(query);
        }
        let body = matches!(method, "POST" | "PUT").then(|| {
            let body = body_for(pattern).as_bytes();
            let body = if mutated_path {
                body.to_vec()
            } else {
                mutate(&mut rng, body)
            };
            String::from_utf8_lossy(&body).into_owned()
        });
        let answer = common::http(server.http_addr, method, &path, body.as_deref()).await;
        let clip = |text: &str| text.chars().take(200).collect::<String>();
        let context = format!(
            "FUZZ_SEED={seed} round {round}: {method} {} {:?}",
            clip(&path),
            body.as_deref().map(clip)
        );
        assert!(
            answer.status < 500,
            "{context}: {} {}",
            answer.status,
            answer.body
        );
        *seen.entry(answer.status).or_insert(0) += 1;
        if answer.status == 204 {
            assert_eq!(answer.body, "", "{context}: a 204 with a body");
            continue;
        }
        let json: serde_json::Value = serde_json::from_str(&answer.body)
            .unwrap_or_else(|e| panic!("{context}: not JSON ({e}): {}", answer.body));
        if answer.status < 400 {
            assert!(json.is_object() || json.is_array(), "{context}: {json}");
            continue;
        }
        // HubSpot's error body, its category the one the status table
        // gives the status (or the HTTP layer's own refusals: too large,
        // unreadable, a method or media type not served).
        let category = json["category"].as_str().unwrap_or_default();
        assert!(
            ERROR_ANSWERS.contains(&(answer.status, category)),
            "{context}: {} with category {category:?}: {json}",
            answer.status
        );
        assert_eq!(json["status"], "error", "{context}: {json}");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{context}: {json}"
        );
        assert!(json["correlationId"].is_string(), "{context}: {json}");
        if let Some(sub) = json.get("subCategory") {
            assert!(
                sub.as_str().is_some_and(|s| s.starts_with("crm.")),
                "{context}: {json}"
            );
        }
        assert!(
            answer.body.len() < 16 * 1024,
            "{context}: an error body of {} bytes",
            answer.body.len()
        );
    }
    // Mutations reach the gateway's refusals, not only its successes.
    let refused: u64 = seen.range(400..).map(|(_, n)| n).sum();
    assert!(
        refused > 0,
        "FUZZ_SEED={seed}: no request was refused: {seen:?}"
    );
    eprintln!("FUZZ_SEED={seed}: answers by status {seen:?}");
    server.stop().await;
}
