//! Login tokens: HS256 JWTs with `sub, role, iss, iat, exp, jti` and a `kid` naming the
//! secret that signed them, verified against the current and the previous secrets.

use crate::config::Secret;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// The signing secrets: the current one signs; every one verifies.
pub struct Keys {
    issuer: String,
    ttl_s: i64,
    current: (String, EncodingKey),
    verify: Vec<(String, DecodingKey)>,
    /// Tokens whose signature, algorithm and issuer already checked out: a repeat costs a
    /// lookup instead of base64, a JSON parse and an HMAC (the process holds the signing
    /// secret itself, so keeping live tokens in memory exposes nothing new).
    /// Expiry is still checked on every use; revocation lives in storage.
    verified: Mutex<HashMap<String, Claims>>,
}

/// Most verified tokens remembered (the map is cleared when full).
const VERIFIED_CACHE: usize = 8192;

/// A short, public id of a secret: the first 16 hex digits of its SHA-256.
fn kid(secret: &Secret) -> String {
    hex::encode(&Sha256::digest(secret.expose().as_bytes())[..8])
}

impl Keys {
    /// Fails when the current secret is empty.
    pub fn new(
        current: &Secret,
        previous: &[Secret],
        issuer: &str,
        ttl_hours: u64,
    ) -> Result<Keys, String> {
        let encoding = EncodingKey::from_secret(current.expose().as_bytes())
            .map_err(|_| "auth.secret_key_base is empty: set SECRET_KEY_BASE".to_string())?;
        let verify = std::iter::once(current)
            .chain(previous)
            .filter_map(|s| {
                Some((
                    kid(s),
                    DecodingKey::from_secret(s.expose().as_bytes()).ok()?,
                ))
            })
            .collect();
        Ok(Keys {
            issuer: issuer.to_string(),
            ttl_s: ttl_hours as i64 * 3600,
            current: (kid(current), encoding),
            verify,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Signs a fresh token for `sub`; returns it with its claims.
    pub fn issue(&self, sub: &str, role: &str) -> Result<(String, Claims), String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: sub.to_string(),
            role: role.to_string(),
            iss: self.issuer.clone(),
            iat: now,
            exp: now + self.ttl_s,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current.0.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.current.1).map_err(|e| e.to_string())?;
        Ok((token, claims))
    }

    /// Verifies signature (HS256 only), issuer and expiry. The `kid` picks the secret; a
    /// token without one is tried against each secret.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        if let Some(c) = cached {
            return if c.exp > now {
                Ok(c)
            } else {
                Err("ExpiredSignature".into())
            };
        }
        let claims = self.verify_uncached(token)?;
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str) -> Result<Claims, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("bad token header: {e}"))?;
        if header.alg != Algorithm::HS256 {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[self.issuer.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "sub", "iat"]);
        v.leeway = 0;
        let candidates: Vec<&DecodingKey> = match &header.kid {
            Some(k) => self
                .verify
                .iter()
                .filter(|(id, _)| id == k)
                .map(|(_, key)| key)
                .collect(),
            None => self.verify.iter().map(|(_, key)| key).collect(),
        };
        let mut last = "unknown signing key".to_string();
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &v) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_secret_still_verifies_and_others_do_not() {
        let old = Secret::new("old-secret-0123456789-0123456789-xx");
        let new = Secret::new("new-secret-0123456789-0123456789-yy");
        let before = Keys::new(&old, &[], "vel_tutor", 24).unwrap();
        let (t, _) = before.issue("u1", "user").unwrap();
        let rotated = Keys::new(&new, std::slice::from_ref(&old), "vel_tutor", 24).unwrap();
        assert_eq!(rotated.verify(&t).unwrap().sub, "u1");
        let forgot = Keys::new(&new, &[], "vel_tutor", 24).unwrap();
        assert!(forgot.verify(&t).is_err());
        let other_issuer = Keys::new(&old, &[], "someone-else", 24).unwrap();
        assert!(
            other_issuer
                .verify(&t)
                .unwrap_err()
                .to_lowercase()
                .contains("issuer")
        );
    }
}
