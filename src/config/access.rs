//! The `[auth]` table: who may call — static tokens (by their hash), a
//! tokens file, JWTs — as plain data; `auth::Authenticator::from_settings`
//! reads and checks it.
use std::path::PathBuf;

use serde::Deserialize;

/// Who may call (TOML `[[auth.tokens]]`, the `[[tokens]]` of
/// `auth.tokens_file`, e.g. a mounted Kubernetes Secret, and `[auth.jwt]`);
/// none: the service runs open, which `serve` allows on loopback addresses
/// only.
#[derive(Clone, Debug, Deserialize)]
pub struct AuthSettings {
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    #[serde(default)]
    pub tokens_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub jwt: Option<JwtSettings>,
    /// How often the tokens file and JWT key files are looked at for changes.
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
}

fn default_reload_interval_ms() -> u64 {
    5_000
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            tokens: Vec::new(),
            tokens_file: None,
            jwt: None,
            reload_interval_ms: default_reload_interval_ms(),
        }
    }
}

impl AuthSettings {
    /// How often credential files are looked at (and open streams' callers
    /// checked again).
    pub fn reload_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.reload_interval_ms)
    }
}

/// One static token (TOML `[[auth.tokens]]`).
#[derive(Clone, Debug, Deserialize)]
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

/// JWTs accepted as bearer tokens (TOML `[auth.jwt]`). A token's claims:
/// `sub` (its name is `jwt:` and the subject), `portals` (ids) or `all_portals: true`, `roles`, and the
/// registered `iss`, `aud` and `exp`.
#[derive(Clone, Debug, Deserialize)]
pub struct JwtSettings {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (one of its audiences).
    pub audience: String,
    /// Public keys for RS256 and ES256: a JWKS document, or PEM public keys.
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// The HS256 shared secret (the file's text, at least 32 bytes).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_leeway() -> u64 {
    30
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwts_tolerate_thirty_seconds_of_skew_unless_told_otherwise() {
        let parse = |text: &str| serde_json::from_str::<JwtSettings>(text).unwrap();
        let base = r#""issuer": "https://idp", "audience": "association-service""#;
        assert_eq!(parse(&format!("{{{base}}}")).leeway_seconds, 30);
        let told = parse(&format!(r#"{{{base}, "leeway_seconds": 0}}"#));
        assert_eq!(told.leeway_seconds, 0);
    }
}
