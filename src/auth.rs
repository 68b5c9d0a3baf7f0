//! Authentication for both front ends: the bearer token of a call (gRPC
//! `authorization` metadata, REST `Authorization` header) becomes a
//! `Principal`. Static tokens are configured by the SHA-256 hash of their
//! text only, so the configuration holds no secret. Without tokens the
//! service runs open (loopback only, see `server`): every call acts as one
//! anonymous principal holding every role on every portal.
use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::access::{PortalScope, Principal, Role};
use crate::domain::admin::ANONYMOUS;
use crate::domain::DomainError;

/// One static token (TOML `[[auth.tokens]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who the token is: the audit trail and plugins see this name.
    pub name: String,
    /// The SHA-256 of the token's text, as 64 hexadecimal digits.
    pub sha256: String,
    /// The portals it reaches (empty with `all_portals`).
    #[serde(default)]
    pub portals: Vec<i64>,
    /// Every portal.
    #[serde(default)]
    pub all_portals: bool,
    /// Any of `read`, `write`, `admin`.
    pub roles: Vec<String>,
}

/// Why a token configuration is refused.
#[derive(Debug, thiserror::Error)]
#[error("auth.tokens '{name}': {reason}")]
pub struct TokenConfigError {
    pub name: String,
    pub reason: String,
}

/// Who may call: everyone (open mode), or the holders of known tokens.
#[derive(Clone, Debug)]
pub enum Authenticator {
    Open,
    Tokens(HashMap<[u8; 32], Principal>),
}

impl Authenticator {
    /// Open when no token is configured; otherwise the tokens, checked.
    pub fn from_config(tokens: &[TokenConfig]) -> Result<Authenticator, TokenConfigError> {
        if tokens.is_empty() {
            return Ok(Authenticator::Open);
        }
        let mut known = HashMap::new();
        for token in tokens {
            let refuse = |reason: String| TokenConfigError {
                name: token.name.clone(),
                reason,
            };
            let hash = decode_hash(&token.sha256).ok_or_else(|| {
                refuse("sha256 must be the token's SHA-256 as 64 hexadecimal digits".into())
            })?;
            let roles = token
                .roles
                .iter()
                .map(|r| {
                    Role::parse(r).ok_or_else(|| {
                        refuse(format!("unknown role '{r}' (roles: read, write, admin)"))
                    })
                })
                .collect::<Result<BTreeSet<Role>, _>>()?;
            if roles.is_empty() {
                return Err(refuse(
                    "roles must name at least one of read, write, admin".into(),
                ));
            }
            let scope = match (token.all_portals, token.portals.is_empty()) {
                (true, true) => PortalScope::All,
                (false, false) => PortalScope::Only(token.portals.iter().copied().collect()),
                (true, false) => {
                    return Err(refuse("give portals or all_portals, not both".into()))
                }
                (false, true) => {
                    return Err(refuse(
                        "give the portals it reaches, or all_portals = true".into(),
                    ))
                }
            };
            if let Some(bad) = token.portals.iter().find(|p| **p <= 0) {
                return Err(refuse(format!("portal ids are positive, not {bad}")));
            }
            let principal = Principal {
                name: token.name.clone(),
                scope,
                roles,
            };
            if known.insert(hash, principal).is_some() {
                return Err(refuse("another token has the same hash".into()));
            }
        }
        Ok(Authenticator::Tokens(known))
    }

    pub fn is_open(&self) -> bool {
        matches!(self, Authenticator::Open)
    }

    /// The principal an `Authorization` value (`Bearer <token>`) proves.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, DomainError> {
        let tokens = match self {
            Authenticator::Open => return Ok(anonymous()),
            Authenticator::Tokens(tokens) => tokens,
        };
        let value = authorization.ok_or_else(|| {
            DomainError::Unauthenticated(
                "no credentials: send 'Authorization: Bearer <token>'".into(),
            )
        })?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                DomainError::Unauthenticated(
                    "the authorization is not of the form 'Bearer <token>'".into(),
                )
            })?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        tokens
            .get(&hash)
            .cloned()
            .ok_or_else(|| DomainError::Unauthenticated("the token is not known".into()))
    }
}

/// The caller of an open service.
fn anonymous() -> Principal {
    Principal {
        name: ANONYMOUS.to_string(),
        scope: PortalScope::All,
        roles: Role::ALL.into_iter().collect(),
    }
}

/// The SHA-256 of a token, as configured (64 hexadecimal digits).
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_hash(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, text: &str, portals: &[i64], roles: &[&str]) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            sha256: token_hash(text),
            portals: portals.to_vec(),
            all_portals: portals.is_empty(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn a_known_token_proves_its_principal() {
        let auth =
            Authenticator::from_config(&[token("sync", "s3cret-token", &[7], &["read"])]).unwrap();
        let principal = auth.authenticate(Some("Bearer s3cret-token")).unwrap();
        assert_eq!(principal.name, "sync");
        assert_eq!(principal.scope.single(), Some(7));
        for bad in [
            None,
            Some("Bearer "),
            Some("Basic abc"),
            Some("Bearer other"),
        ] {
            let err = auth.authenticate(bad).unwrap_err();
            assert!(
                matches!(err, DomainError::Unauthenticated(_)),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn bad_token_configurations_are_refused() {
        let mut bad_hash = token("a", "x", &[1], &["read"]);
        bad_hash.sha256 = "abc".into();
        let mut both = token("b", "y", &[1], &["read"]);
        both.all_portals = true;
        for config in [
            bad_hash,
            both,
            token("c", "z", &[1], &["root"]),
            token("d", "w", &[1], &[]),
            token("e", "v", &[-3], &["read"]),
        ] {
            assert!(Authenticator::from_config(&[config]).is_err());
        }
        let twice = [
            token("f", "same", &[1], &["read"]),
            token("g", "same", &[2], &["read"]),
        ];
        assert!(Authenticator::from_config(&twice).is_err());
    }

    #[test]
    fn without_tokens_the_service_is_open() {
        let auth = Authenticator::from_config(&[]).unwrap();
        assert!(auth.is_open());
        let anyone = auth.authenticate(None).unwrap();
        assert!(anyone.authorize(Role::Admin, 42).is_ok());
    }
}
