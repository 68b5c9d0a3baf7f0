//! JWTs come from anyone. Any bearer text never panics the verifier and a
//! refusal is always "unauthenticated"; claims the fuzzer writes, signed
//! with the configured HS256 secret, are accepted only when they carry the
//! configured issuer and audience, a subject and an expiry still to come,
//! and the principal then holds exactly what they grant; the same token
//! with its signature changed, or signed with another secret, is refused.
#![no_main]
use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use association_service::auth::{Authenticator, CredentialSources, JwtSettings};
use association_service::domain::access::PortalScope;
use association_service::domain::DomainError;
use jsonwebtoken::{encode, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SECRET: &str = "fuzz-secret-0123456789-0123456789-abcdef";
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "association-service";
const LEEWAY: u64 = 30;

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("jwt-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let secret_file = dir.join("secret");
        std::fs::write(&secret_file, SECRET).expect("the secret file");
        let sources = CredentialSources {
            jwt: Some(JwtSettings {
                issuer: ISSUER.into(),
                audience: AUDIENCE.into(),
                keys_file: None,
                secret_file: Some(secret_file),
                leeway_seconds: LEEWAY,
            }),
            reload_interval: Duration::from_secs(3600),
            ..CredentialSources::default()
        };
        Authenticator::from_sources(&sources).expect("a valid JWT configuration")
    })
}

fn refused(header: &str) {
    match authenticator().authenticate(Some(header)) {
        Ok(principal) => panic!("{header:?} proved {principal:?}"),
        Err(err) => assert!(matches!(err, DomainError::Unauthenticated(_)), "{err:?}"),
    }
}

/// Whether `claims` meet what the verifier requires of a token's registered
/// claims (not whether they grant anything usable).
fn registered_claims_hold(claims: &serde_json::Map<String, Value>) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let audience = match claims.get("aud") {
        Some(Value::String(aud)) => aud == AUDIENCE,
        Some(Value::Array(auds)) => auds.iter().any(|a| a == AUDIENCE),
        _ => false,
    };
    claims.get("iss") == Some(&Value::String(ISSUER.into()))
        && audience
        && claims.get("sub").is_some_and(Value::is_string)
        && claims
            .get("exp")
            .and_then(Value::as_u64)
            .is_some_and(|exp| exp + LEEWAY > now)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        // Any text after "Bearer ".
        let text = String::from_utf8_lossy(rest);
        if let Ok(principal) = authenticator().authenticate(Some(&format!("Bearer {text}"))) {
            panic!("{text:?} proved {principal:?} without the secret");
        }
        return;
    }
    // Claims the fuzzer writes, signed with the secret.
    let Ok(Value::Object(mut claims)) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    // A far-off expiry is the usual case; the fuzzer's own is kept when it
    // asked for one with a key of its own ("keep_exp").
    if claims.remove("keep_exp").is_none() {
        let later = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        claims.insert("exp".into(), Value::from(later));
    }
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("claims encode");
    match authenticator().authenticate(Some(&format!("Bearer {token}"))) {
        Ok(principal) => {
            assert!(registered_claims_hold(&claims), "{claims:?} was accepted");
            let sub = claims["sub"].as_str().unwrap();
            assert_eq!(principal.name, format!("jwt:{sub}"));
            let roles: BTreeSet<String> = claims["roles"]
                .as_array()
                .expect("roles granted something")
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            let held: BTreeSet<String> = principal
                .roles
                .iter()
                .map(|r| r.name().to_string())
                .collect();
            assert_eq!(held, roles, "{claims:?}");
            match &principal.scope {
                PortalScope::All => assert_eq!(claims["all_portals"], Value::Bool(true)),
                PortalScope::Only(portals) => {
                    let granted: BTreeSet<i64> = claims["portals"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p.as_i64().unwrap())
                        .collect();
                    assert_eq!(portals, &granted);
                }
            }
            // The signature is what proves it.
            let (signed, signature) = token.rsplit_once('.').unwrap();
            let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
            refused(&format!("Bearer {signed}.{flipped}{}", &signature[1..]));
            let forged = encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(b"another-secret-0123456789-0123456789"),
            )
            .unwrap();
            refused(&format!("Bearer {forged}"));
        }
        Err(err) => {
            assert!(matches!(err, DomainError::Unauthenticated(_)), "{err:?}");
        }
    }
});
