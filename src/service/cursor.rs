//! Resume cursors for streamed reads: an opaque token holding a keyset
//! position, bound to the portal and the request that produced it, and signed
//! with HMAC-SHA256 so a tampered or foreign token is refused. Tokens carry
//! no server state, so they stay valid across restarts and replicas that
//! share the secret.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::DomainError;

type HmacSha256 = Hmac<Sha256>;

/// The length of a cursor's tag: the first 16 bytes of its HMAC-SHA256.
const SIGNATURE_BYTES: usize = 16;

/// Signs and checks cursors with one secret.
#[derive(Clone)]
pub struct CursorCodec {
    secret: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Envelope<P> {
    /// Portal the cursor belongs to.
    p: i64,
    /// Fingerprint of the request the cursor continues.
    r: String,
    /// Keyset position: the last row delivered.
    k: P,
}

fn invalid() -> DomainError {
    DomainError::InvalidCursor
}

/// A short fingerprint of the request's identifying fields.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0x1f]);
    }
    let digest = hasher.finalize();
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

impl CursorCodec {
    pub fn new(secret: &[u8]) -> CursorCodec {
        CursorCodec {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(payload);
        mac.finalize().into_bytes()[..SIGNATURE_BYTES].to_vec()
    }

    /// Encodes `position` as a cursor for `portal` and `request`.
    pub fn encode<P: Serialize>(&self, portal: i64, request: &str, position: &P) -> String {
        let envelope = Envelope {
            p: portal,
            r: request.to_string(),
            k: position,
        };
        let payload = serde_json::to_vec(&envelope).expect("positions serialize");
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(self.mac(&payload))
        )
    }

    /// Decodes a cursor, refusing one that is malformed, tampered with, or
    /// made for another portal or request.
    pub fn decode<P: DeserializeOwned>(
        &self,
        cursor: &str,
        portal: i64,
        request: &str,
    ) -> Result<P, DomainError> {
        let (payload, signature) = cursor.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| invalid())?;
        // The whole tag: a shorter one would match a prefix of the MAC, and
        // a one-byte tag is guessed in 256 tries.
        if signature.len() != SIGNATURE_BYTES {
            return Err(invalid());
        }
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(&payload);
        mac.verify_truncated_left(&signature)
            .map_err(|_| invalid())?;
        let envelope: Envelope<P> = serde_json::from_slice(&payload).map_err(|_| invalid())?;
        if envelope.p != portal || envelope.r != request {
            return Err(invalid());
        }
        Ok(envelope.k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `tests/hostile_input.rs`: a signature cut to its first bytes
    /// was accepted, so a one-byte tag could be guessed in 256 tries.
    #[test]
    fn a_signature_cut_short_is_refused() {
        let codec = CursorCodec::new(b"secret");
        let cursor = codec.encode(3, "r", &1_i64);
        let (payload, signature) = cursor.split_once('.').unwrap();
        for keep in 0..signature.len() {
            let cut = format!("{payload}.{}", &signature[..keep]);
            assert!(
                codec.decode::<i64>(&cut, 3, "r").is_err(),
                "{keep} characters"
            );
        }
        assert_eq!(codec.decode::<i64>(&cursor, 3, "r").unwrap(), 1);
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering_and_other_requests() {
        let codec = CursorCodec::new(b"secret");
        let request = fingerprint(&["list", "0-1", "7"]);
        let cursor = codec.encode(3, &request, &("0-2".to_string(), 42_i64));
        assert_eq!(
            codec.decode::<(String, i64)>(&cursor, 3, &request).unwrap(),
            ("0-2".to_string(), 42)
        );
        assert!(
            codec.decode::<(String, i64)>(&cursor, 4, &request).is_err(),
            "another portal"
        );
        assert!(codec
            .decode::<(String, i64)>(&cursor, 3, &fingerprint(&["list", "0-1", "8"]))
            .is_err());
        let mut tampered = cursor.clone().into_bytes();
        tampered[3] ^= 1;
        assert!(codec
            .decode::<(String, i64)>(&String::from_utf8(tampered).unwrap(), 3, &request)
            .is_err());
        assert!(CursorCodec::new(b"other")
            .decode::<(String, i64)>(&cursor, 3, &request)
            .is_err());
        assert!(codec
            .decode::<(String, i64)>("garbage", 3, &request)
            .is_err());
    }
}
