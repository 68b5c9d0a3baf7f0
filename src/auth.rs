//! Authentication for both front ends: the bearer token of a call (gRPC
//! `authorization` metadata, REST `Authorization` header) becomes a
//! `Principal`. Static tokens are configured by the SHA-256 hash of their
//! text only, so the configuration holds no secret; JWTs (RS256, ES256,
//! HS256) are checked against configured keys, issuer, audience and expiry.
//! Tokens files and key files are read again when they change. Without any
//! credentials configured the service runs open (loopback only, see
//! `server`): every call acts as one anonymous principal holding every role
//! on every portal.
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::keys::TOKEN_FIELDS;
use crate::config::{AuthSettings, ConfigError};
pub use crate::config::{JwtSettings, TokenConfig};
use crate::domain::access::{PortalScope, Principal, Role};
use crate::domain::admin::ANONYMOUS;
use crate::domain::DomainError;
use crate::reload::{Loader, Reloading};

/// Where the credentials come from (the `[auth]` table).
#[derive(Clone, Debug, Default)]
pub struct CredentialSources {
    pub tokens: Vec<TokenConfig>,
    pub tokens_file: Option<PathBuf>,
    pub jwt: Option<JwtSettings>,
    /// How often changed files are noticed.
    pub reload_interval: Duration,
}

/// Why a token configuration is refused.
#[derive(Debug, thiserror::Error)]
#[error("auth.tokens '{name}': {reason}")]
pub struct TokenConfigError {
    pub name: String,
    pub reason: String,
}

/// Who may call: everyone (open mode), or the holders of valid credentials.
pub struct Authenticator {
    credentials: Option<Reloading<Credentials>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_open() {
            "Authenticator::Open"
        } else {
            "Authenticator::Credentials"
        })
    }
}

/// The credentials in force: static tokens by hash, and JWT keys.
struct Credentials {
    tokens: HashMap<[u8; 32], Principal>,
    jwt: Option<JwtVerifier>,
}

impl Authenticator {
    /// Who may call, as the `[auth]` settings say, checked.
    pub fn from_settings(settings: &AuthSettings) -> Result<Authenticator, ConfigError> {
        Authenticator::from_sources(&CredentialSources {
            tokens: settings.tokens.clone(),
            tokens_file: settings.tokens_file.clone(),
            jwt: settings.jwt.clone(),
            reload_interval: settings.reload_interval(),
        })
        .map_err(ConfigError::Invalid)
    }

    /// Open when no credential source is configured; otherwise the sources,
    /// read and checked (an error says which and why).
    pub fn from_sources(sources: &CredentialSources) -> Result<Authenticator, String> {
        let open =
            sources.tokens.is_empty() && sources.tokens_file.is_none() && sources.jwt.is_none();
        if open {
            return Ok(Authenticator { credentials: None });
        }
        if let Some(jwt) = &sources.jwt {
            if jwt.keys_file.is_none() && jwt.secret_file.is_none() {
                return Err(
                    "auth.jwt needs keys_file (RS256, ES256) or secret_file (HS256)".into(),
                );
            }
        }
        let mut paths = Vec::new();
        let tokens_at = sources.tokens_file.as_ref().map(|p| {
            paths.push(p.clone());
            paths.len() - 1
        });
        let jwt = sources.jwt.clone();
        let keys_at = jwt.as_ref().and_then(|j| j.keys_file.clone()).map(|p| {
            paths.push(p);
            paths.len() - 1
        });
        let secret_at = jwt.as_ref().and_then(|j| j.secret_file.clone()).map(|p| {
            paths.push(p);
            paths.len() - 1
        });
        let inline = sources.tokens.clone();
        let tokens_file = sources.tokens_file.clone();
        let load: Loader<Credentials> = Box::new(move |files| {
            let mut tokens = inline.clone();
            if let (Some(i), Some(path)) = (tokens_at, &tokens_file) {
                tokens.extend(
                    parse_tokens_file(&files[i])
                        .map_err(|e| format!("auth.tokens_file {}: {e}", path.display()))?,
                );
            }
            let tokens = static_tokens(&tokens).map_err(|e| e.to_string())?;
            let jwt = match &jwt {
                None => None,
                Some(settings) => Some(JwtVerifier::new(
                    settings,
                    keys_at.map(|i| files[i].as_slice()),
                    secret_at.map(|i| files[i].as_slice()),
                )?),
            };
            Ok(Credentials { tokens, jwt })
        });
        let credentials = Reloading::new(paths, sources.reload_interval, load)?;
        Ok(Authenticator {
            credentials: Some(credentials),
        })
    }

    /// Static tokens only (tests and tools).
    pub fn from_config(tokens: &[TokenConfig]) -> Result<Authenticator, String> {
        Authenticator::from_sources(&CredentialSources {
            tokens: tokens.to_vec(),
            ..CredentialSources::default()
        })
    }

    pub fn is_open(&self) -> bool {
        self.credentials.is_none()
    }

    /// The principal an `Authorization` value (`Bearer <token>`) proves.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, DomainError> {
        let Some(credentials) = &self.credentials else {
            return Ok(anonymous());
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
        let credentials = credentials.current();
        if let Some(jwt) = &credentials.jwt {
            if token.split('.').count() == 3 {
                return jwt.verify(token);
            }
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        credentials
            .tokens
            .get(&hash)
            .cloned()
            .ok_or_else(|| DomainError::Unauthenticated("the token is not known".into()))
    }
}

/// The `[[tokens]]` of a tokens file.
#[derive(Deserialize)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenConfig>,
}

fn parse_tokens_file(bytes: &[u8]) -> Result<Vec<TokenConfig>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let config = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| e.to_string())?;
    let mut unknown = Vec::new();
    let file: Result<TokensFile, _> =
        serde_ignored::deserialize(config, |path| unknown.push(path.to_string()));
    if let Some(path) = unknown.first() {
        return Err(
            crate::config::unknown_table_field(path, TOKEN_FIELDS, "").unwrap_or_else(|| {
                format!("unknown key {path} (a tokens file holds [[tokens]] tables)")
            }),
        );
    }
    Ok(file.map_err(|e| e.to_string())?.tokens)
}

/// Static tokens by the hash of their text, checked.
fn static_tokens(tokens: &[TokenConfig]) -> Result<HashMap<[u8; 32], Principal>, TokenConfigError> {
    let mut known = HashMap::new();
    for token in tokens {
        let refuse = |reason: String| TokenConfigError {
            name: token.name.clone(),
            reason,
        };
        let hash = decode_hash(&token.sha256).ok_or_else(|| {
            refuse("sha256 must be the token's SHA-256 as 64 hexadecimal digits".into())
        })?;
        if token.name.starts_with(JWT_PREFIX) {
            return Err(refuse(format!(
                "names starting with '{JWT_PREFIX}' are JWT subjects'; choose another name"
            )));
        }
        let principal = principal_of(&token.name, &token.portals, token.all_portals, &token.roles)
            .map_err(refuse)?;
        if known.insert(hash, principal).is_some() {
            return Err(refuse("another token has the same hash".into()));
        }
    }
    Ok(known)
}

/// A principal from a name, portals and role names, as a token or a JWT
/// grants them; why not, otherwise.
fn principal_of(
    name: &str,
    portals: &[i64],
    all_portals: bool,
    roles: &[String],
) -> Result<Principal, String> {
    let roles = roles
        .iter()
        .map(|r| {
            Role::parse(r).ok_or_else(|| format!("unknown role '{r}' (roles: read, write, admin)"))
        })
        .collect::<Result<BTreeSet<Role>, _>>()?;
    if roles.is_empty() {
        return Err("roles must name at least one of read, write, admin".into());
    }
    let scope = match (all_portals, portals.is_empty()) {
        (true, true) => PortalScope::All,
        (false, false) => PortalScope::Only(portals.iter().copied().collect()),
        (true, false) => return Err("give portals or all_portals, not both".into()),
        (false, true) => return Err("give the portals it reaches, or all_portals = true".into()),
    };
    if let Some(bad) = portals.iter().find(|p| **p <= 0) {
        return Err(format!("portal ids are positive, not {bad}"));
    }
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err("the name must be 1 to 200 characters without control characters".into());
    }
    Ok(Principal {
        name: name.to_string(),
        scope,
        roles,
    })
}

/// One key JWTs may be signed with.
struct JwtKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Checks JWTs: signature by a configured key, issuer, audience, expiry.
struct JwtVerifier {
    keys: Vec<JwtKey>,
    issuer: String,
    audience: String,
    leeway: u64,
}

/// The claims a JWT grants with.
#[derive(Deserialize)]
struct GrantClaims {
    sub: String,
    #[serde(default)]
    portals: Vec<i64>,
    #[serde(default)]
    all_portals: bool,
    #[serde(default)]
    roles: Vec<String>,
}

impl JwtVerifier {
    fn new(
        settings: &JwtSettings,
        keys_file: Option<&[u8]>,
        secret_file: Option<&[u8]>,
    ) -> Result<JwtVerifier, String> {
        let mut keys = Vec::new();
        if let Some(bytes) = keys_file {
            keys.extend(public_keys(bytes).map_err(|e| format!("auth.jwt.keys_file: {e}"))?);
        }
        if let Some(bytes) = secret_file {
            let secret = bytes
                .strip_suffix(b"\r\n")
                .or_else(|| bytes.strip_suffix(b"\n"))
                .unwrap_or(bytes);
            if secret.len() < 32 {
                return Err("auth.jwt.secret_file: an HS256 secret is at least 32 bytes".into());
            }
            keys.push(JwtKey {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
            });
        }
        if keys.is_empty() {
            return Err("auth.jwt: the key files hold no key".into());
        }
        Ok(JwtVerifier {
            keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway_seconds,
        })
    }

    fn verify(&self, token: &str) -> Result<Principal, DomainError> {
        let refuse = |reason: &str| DomainError::Unauthenticated(format!("the JWT {reason}"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| refuse("is malformed"))?;
        // No header extension is understood here, so one marked critical
        // must be refused (RFC 7515, 4.1.11).
        if critical_extensions(token) {
            return Err(refuse(
                "names critical header extensions (crit) this service does not understand",
            ));
        }
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::HS256
        ) {
            return Err(refuse(
                "is signed with an algorithm other than RS256, ES256 or HS256",
            ));
        }
        let candidates = self.keys.iter().filter(|k| {
            k.algorithm == header.alg
                && match (&header.kid, &k.kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    _ => true,
                }
        });
        let mut outcome = Err(refuse("is not signed by a configured key"));
        for key in candidates {
            let mut validation = Validation::new(key.algorithm);
            validation.set_issuer(&[&self.issuer]);
            validation.set_audience(&[&self.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.leeway = self.leeway;
            validation.validate_nbf = true;
            match jsonwebtoken::decode::<GrantClaims>(token, &key.key, &validation) {
                Ok(data) => {
                    let c = data.claims;
                    // Subjects live in a namespace of their own, apart
                    // from static token names.
                    let name = format!("{JWT_PREFIX}{}", c.sub);
                    return principal_of(&name, &c.portals, c.all_portals, &c.roles)
                        .map_err(|e| refuse(&format!("grants nothing usable: {e}")));
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as Jwt;
                    let reason = match e.kind() {
                        Jwt::InvalidSignature => continue,
                        Jwt::ExpiredSignature => "has expired",
                        Jwt::ImmatureSignature => "is not valid yet",
                        Jwt::InvalidIssuer => "has an issuer this service does not accept",
                        Jwt::InvalidAudience => "is not meant for this service (audience)",
                        Jwt::MissingRequiredClaim(_) => "lacks one of sub, iss, aud, exp",
                        _ => "is malformed",
                    };
                    outcome = Err(refuse(reason));
                }
            }
        }
        outcome
    }
}

/// What a JWT principal's name starts with (then its `sub`); no static
/// token's name may.
pub const JWT_PREFIX: &str = "jwt:";

/// Whether the JWT's protected header carries `crit`.
fn critical_extensions(token: &str) -> bool {
    use base64::Engine;
    let Some(encoded) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
        .is_ok_and(|header| header.contains_key("crit"))
}

/// The RS256 and ES256 keys of a JWKS document or of PEM public keys.
fn public_keys(bytes: &[u8]) -> Result<Vec<JwtKey>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    if text.trim_start().starts_with('{') {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
        return set
            .keys
            .iter()
            .map(|jwk| {
                use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
                let algorithm = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                        Algorithm::ES256
                    }
                    _ => return Err("keys are RSA or EC P-256".to_string()),
                };
                let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("a key: {e}"))?;
                Ok(JwtKey {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key,
                })
            })
            .collect();
    }
    let blocks = pem::parse_many(bytes).map_err(|e| format!("not PEM: {e}"))?;
    blocks
        .iter()
        .map(|block| {
            let encoded = pem::encode(block);
            let (algorithm, key) = match DecodingKey::from_ec_pem(encoded.as_bytes()) {
                Ok(key) => (Algorithm::ES256, key),
                Err(_) => (
                    Algorithm::RS256,
                    DecodingKey::from_rsa_pem(encoded.as_bytes())
                        .map_err(|_| "PEM blocks are RSA or EC public keys".to_string())?,
                ),
            };
            Ok(JwtKey {
                kid: None,
                algorithm,
                key,
            })
        })
        .collect()
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
    fn an_authenticator_shows_its_mode_and_never_its_credentials() {
        let open = Authenticator::from_config(&[]).unwrap();
        assert_eq!(format!("{open:?}"), "Authenticator::Open");
        let sync = token("sync", "s3cret-token", &[7], &["read"]);
        let hash = sync.sha256.clone();
        let auth = Authenticator::from_config(&[sync]).unwrap();
        let shown = format!("{auth:?}");
        assert_eq!(shown, "Authenticator::Credentials");
        assert!(!shown.contains(&hash) && !shown.contains("sync"));
    }

    #[test]
    fn a_token_name_is_one_to_200_characters_without_controls() {
        let refused = |name: &str| {
            let err = Authenticator::from_config(&[token(name, "t0ken", &[7], &["read"])])
                .map(|_| ())
                .unwrap_err();
            assert!(
                err.ends_with("the name must be 1 to 200 characters without control characters"),
                "{name:?}: {err}"
            );
        };
        refused("");
        refused(&"n".repeat(201));
        refused("crm\u{7}sync");
        refused("crm\nsync");
        let long = "n".repeat(200);
        for name in ["crm-sync", long.as_str()] {
            assert!(Authenticator::from_config(&[token(name, "t0ken", &[7], &["read"])]).is_ok());
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
