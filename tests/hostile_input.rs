//! Property tests of everything parsed from outside the service: resume
//! cursors, object types and ids, bearer tokens and JWTs (proptest: valid
//! inputs under one to four edits it draws and, on a failure, shrinks to the
//! fewest and smallest, kept in tests/proptest-regressions and replayed
//! first), and REST JSON bodies and query strings through the real server
//! (the same edits drawn from a seed: `FUZZ_SEED=n` replays a run, printed
//! first). `FUZZ_ITERATIONS` sets the rounds of each (a short run by
//! default; higher for a long soak). Each checks that nothing panics,
//! nothing is accepted that should not be, and every refusal is a bounded
//! client error.
mod common;

use association_service::auth::{token_hash, Authenticator, TokenConfig};
use association_service::domain::{DomainError, ObjectType};
use association_service::gateway::REST_ROUTES;
use association_service::service::cursor::{fingerprint, CursorCodec};
use common::{Rng, TestServer};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

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

/// Numbers that break id and count parsers.
const EXTREMES: &[&[u8]] = &[
    b"-1",
    b"0",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"1e400",
    b"1.5",
    b"null",
];

/// One edit of a valid input. Positions are fractions of the input's
/// length at the time (so an edit stays meaningful as earlier edits change
/// the length, and proptest can shrink each value on its own).
#[derive(Clone, Debug)]
enum Edit {
    Flip(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
    Repeat(Index),
    Number(Index, usize),
    /// Invalid UTF-8 lead bytes.
    Invalid(Index),
    /// A run of one letter, up to 5,000 long.
    Long(Index, u8, usize),
    /// Accented, right-to-left override and astral characters.
    Unicode(Index),
}

/// Applies `edits` to `input` in order.
fn apply(input: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = input.to_vec();
    for edit in edits {
        let at = |i: &Index, out: &Vec<u8>| i.index(out.len() + 1);
        match edit {
            Edit::Flip(i, bit) => {
                let at = at(i, &out);
                if at < out.len() {
                    out[at] ^= 1 << (bit % 8);
                }
            }
            Edit::Insert(i, byte) => {
                let at = at(i, &out);
                out.insert(at, *byte);
            }
            Edit::Remove(i) => {
                let at = at(i, &out);
                if at < out.len() {
                    out.remove(at);
                }
            }
            Edit::Truncate(i) => {
                let at = at(i, &out);
                out.truncate(at);
            }
            Edit::Repeat(i) => {
                let at = at(i, &out);
                let tail = out[at..].to_vec();
                out.extend_from_slice(&tail);
            }
            Edit::Number(i, n) => {
                let at = at(i, &out);
                out.splice(at..at, EXTREMES[n % EXTREMES.len()].iter().copied());
            }
            Edit::Invalid(i) => {
                let at = at(i, &out);
                out.splice(at..at, [0xff, 0xfe, 0xc3]);
            }
            Edit::Long(i, letter, n) => {
                let at = at(i, &out);
                out.splice(at..at, vec![b'a' + letter % 26; n % 5000]);
            }
            Edit::Unicode(i) => {
                let at = at(i, &out);
                out.splice(at..at, "é\u{202e}😀".bytes());
            }
        }
    }
    out
}

/// One to four edits, for proptest to draw and shrink.
fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let at = any::<Index>;
    let edit = prop_oneof![
        (at(), 0..8u8).prop_map(|(i, bit)| Edit::Flip(i, bit)),
        (at(), prop::sample::select(NASTY)).prop_map(|(i, b)| Edit::Insert(i, b)),
        at().prop_map(Edit::Remove),
        at().prop_map(Edit::Truncate),
        at().prop_map(Edit::Repeat),
        (at(), 0..EXTREMES.len()).prop_map(|(i, n)| Edit::Number(i, n)),
        at().prop_map(Edit::Invalid),
        (at(), 0..26u8, 0..5000usize).prop_map(|(i, l, n)| Edit::Long(i, l, n)),
        at().prop_map(Edit::Unicode),
    ];
    prop::collection::vec(edit, 1..=4)
}

/// A random mutation of `input` for the seeded REST run (through a real
/// server, which proptest's synchronous runner does not drive): the same
/// edits, drawn from `rng`.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &{
            let mut seed = [0u8; 32];
            for chunk in seed.chunks_mut(8) {
                chunk.copy_from_slice(&rng.below(u64::MAX).to_le_bytes());
            }
            seed
        }),
    );
    let drawn = edits().new_tree(&mut runner).expect("edits").current();
    apply(input, &drawn)
}

/// proptest's settings for the properties: `PROPTEST_CASES` as usual
/// (`FUZZ_ITERATIONS` too, for a long soak), failures kept in
/// tests/proptest-regressions and replayed first.
fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/hostile_input.txt",
        ))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- cursors

/// A cursor decodes only as the cursor it was issued as: any mutation that
/// is accepted leaves the signed payload unchanged (found: a signature cut
/// to one byte was accepted, so a cursor could be forged in 256 tries).
fn cursor_holds(
    kind: u8,
    cut: Index,
    type_id: u64,
    position: i64,
    edited: &[Edit],
) -> Result<(), TestCaseError> {
    let codec = CursorCodec::new(b"a cursor secret for the property test");
    let request = fingerprint(&["list", "0-1", "7"]);
    let position = (format!("0-{type_id}"), position);
    let cursor = codec.encode(7, &request, &position);
    let (payload, signature) = cursor.split_once('.').unwrap();
    let candidate = match kind {
        // The real signature, cut short.
        0 => format!("{payload}.{}", &signature[..cut.index(signature.len())]),
        // Another payload under the real signature.
        1 => {
            let other = codec.encode(7, &request, &("0-2".to_string(), 1_i64));
            format!("{}.{signature}", other.split_once('.').unwrap().0)
        }
        _ => String::from_utf8_lossy(&apply(cursor.as_bytes(), edited)).into_owned(),
    };
    match codec.decode::<(String, i64)>(&candidate, 7, &request) {
        Ok(decoded) => prop_assert!(
            candidate.split_once('.').map(|(p, _)| p) == Some(payload)
                && decoded == position
                && candidate.len() >= cursor.len(),
            "{candidate:?} was accepted as {decoded:?} (issued {cursor:?})"
        ),
        Err(err) => prop_assert_eq!(err, DomainError::InvalidCursor),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(20_000))]

    #[test]
    fn mutated_cursors_are_refused(
        kind in 0..4u8,
        cut in any::<Index>(),
        type_id in 0..50u64,
        position in 0..(1i64 << 40),
        edited in edits(),
    ) {
        cursor_holds(kind, cut, type_id, position, &edited)?;
    }
}

// ----------------------------------------------------- object types and ids

/// Any text parses to an object type that reads back the same, or to a
/// refusal that echoes at most 64 characters on one line.
fn object_type_holds(text: &str) -> Result<(), TestCaseError> {
    match ObjectType::parse(text) {
        Ok(parsed) => prop_assert_eq!(ObjectType::parse(&parsed.to_string()), Ok(parsed)),
        Err(err) => {
            let message = err.to_string();
            let DomainError::UnknownObjectType(shown) = &err else {
                return Err(TestCaseError::fail(format!("{text:?} -> {err:?}")));
            };
            prop_assert!(
                shown.chars().count() <= 80 && !shown.chars().any(char::is_control),
                "echoed {shown:?}"
            );
            prop_assert!(message.len() < 400, "{message}");
        }
    }
    Ok(())
}

const VALID_TYPES: &[&str] = &["contacts", "0-1", "2-123", "Company", "deals", "0-5"];

proptest! {
    #![proptest_config(config(20_000))]

    #[test]
    fn object_types_parse_or_refuse_in_bounds(
        base in prop::sample::select(VALID_TYPES),
        edited in edits(),
    ) {
        object_type_holds(&String::from_utf8_lossy(&apply(base.as_bytes(), &edited)))?;
    }
}

// ----------------------------------------------------------------- tokens

/// The configured token and a signed JWT, and what checks them.
fn credentials() -> &'static (Authenticator, [String; 2]) {
    static CREDENTIALS: std::sync::OnceLock<(Authenticator, [String; 2])> =
        std::sync::OnceLock::new();
    CREDENTIALS.get_or_init(|| {
        let mut settings = association_service::config::Settings::load(None).unwrap();
        common::accept_jwt(&mut settings);
        settings.auth.tokens.push(TokenConfig {
            name: "svc".into(),
            sha256: token_hash("the-static-token"),
            portals: vec![7],
            all_portals: false,
            roles: vec!["read".into()],
        });
        let auth: Authenticator =
            association_service::auth::Authenticator::from_settings(&settings.auth).unwrap();
        let jwt = common::jwt(&common::jwt_claims("svc-jwt", &[7], &["read"]));
        let valid = [
            format!("Bearer {jwt}"),
            "Bearer the-static-token".to_string(),
        ];
        for text in &valid {
            auth.authenticate(Some(text))
                .expect("the valid credentials pass");
        }
        (auth, valid)
    })
}

/// Only the configured token's exact text and correctly signed JWTs
/// authenticate; everything else is refused without a panic.
fn credential_holds(base: &str, candidate: &str) -> Result<(), TestCaseError> {
    match credentials().0.authenticate(Some(candidate)) {
        Ok(principal) => {
            // Only the scheme's case and whitespace around the token may differ.
            let token = candidate
                .strip_prefix("Bearer ")
                .or_else(|| candidate.strip_prefix("bearer "))
                .map(str::trim);
            prop_assert!(
                token == base.strip_prefix("Bearer "),
                "{candidate:?} authenticated as {}",
                principal.name
            );
        }
        Err(err) => prop_assert!(matches!(err, DomainError::Unauthenticated(_)), "{err:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(5_000))]

    #[test]
    fn mutated_tokens_and_jwts_are_refused(which in 0..2usize, edited in edits()) {
        let base = &credentials().1[which];
        let candidate = String::from_utf8_lossy(&apply(base.as_bytes(), &edited)).into_owned();
        credential_holds(base, &candidate)?;
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
const ERROR_ANSWERS: [(u16, &str); 4] = [
    (400, "VALIDATION_ERROR"),
    (404, "OBJECT_NOT_FOUND"),
    (409, "CONFLICT"),
    // The HTTP layer's refusal of a request line past
    // `gateway.max_request_line` (16 KiB; a path's long edits reach it).
    (414, "VALIDATION_ERROR"),
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
