//! The `Authorization` header comes from anyone: authenticating any value
//! never panics, a refusal is always "unauthenticated", and only the
//! configured token, sent as `Bearer <token>`, proves its principal.
#![no_main]
use std::sync::OnceLock;

use association_service::auth::{token_hash, Authenticator, TokenConfig};
use association_service::domain::DomainError;
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "fuzz-token-0123456789";

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let token = TokenConfig {
            name: "fuzzer".into(),
            sha256: token_hash(TOKEN),
            portals: vec![7],
            all_portals: false,
            roles: vec!["read".into()],
        };
        Authenticator::from_config(&[token]).expect("a valid token configuration")
    })
}

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);
    let sent = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim);
    match authenticator().authenticate(Some(&header)) {
        Ok(principal) => {
            assert_eq!(sent, Some(TOKEN), "{header:?} proved {principal:?}");
            assert_eq!(principal.name, "fuzzer");
        }
        Err(err) => {
            assert!(matches!(err, DomainError::Unauthenticated(_)), "{err:?}");
            assert_ne!(sent, Some(TOKEN), "{header:?} was refused");
        }
    }
});
