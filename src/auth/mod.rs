//! Authentication: who is calling (`AuthContext`) from a Bearer JWT or personal token, and
//! the account services (register, login, tokens) that decide before storage does.

pub mod jwt;
pub mod password;

use crate::model::{Role, User};
use crate::storage::{Storage, StorageError};
use base64::Engine;
use sha2::{Digest, Sha256};

/// How the caller proved who they are.
#[derive(Clone, Debug)]
pub enum Credential {
    /// A login JWT, with its id and expiry (for logout/refresh revocation).
    Jwt { jti: String, exp: i64 },
    /// A personal API token (`vt_…`).
    Token { id: String },
}

/// The authenticated caller. The role is the one in the database now, not the one in
/// the token, so a role change applies on the next request.
#[derive(Clone, Debug)]
pub struct AuthContext {
    pub user: User,
    pub credential: Credential,
}

impl AuthContext {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
}

/// Why a caller was refused. The message is safe to show; the reason is for logs.
#[derive(Debug)]
pub enum AuthError {
    Missing,
    Invalid(String),
    Storage(StorageError),
}

impl From<StorageError> for AuthError {
    fn from(e: StorageError) -> Self {
        AuthError::Storage(e)
    }
}

pub const TOKEN_PREFIX: &str = "vt_";

/// A fresh personal token: `vt_` + 43 URL-safe characters (32 random bytes).
pub fn new_personal_token() -> String {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).expect("the operating system's random source failed");
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
    )
}

/// What is stored for a personal token: its SHA-256 (the token has 256 bits of entropy,
/// so a fast hash is enough and lookups stay O(1)).
pub fn hash_personal_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Resolves an `Authorization` header value to the caller.
pub fn authenticate(
    storage: &Storage,
    keys: &jwt::Keys,
    header: Option<&str>,
) -> Result<AuthContext, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AuthError::Invalid("not a Bearer credential".into()))?;
    if token.starts_with(TOKEN_PREFIX) {
        let owner = storage
            .token_owner(&hash_personal_token(token))?
            .ok_or_else(|| AuthError::Invalid("unknown or revoked personal token".into()))?;
        // last_used_at is kept to the minute: one write a minute per token, not per request.
        let stale =
            crate::storage::rfc3339(time::OffsetDateTime::now_utc() - time::Duration::minutes(1));
        if owner
            .last_used_at
            .as_deref()
            .is_none_or(|t| t < stale.as_str())
        {
            storage.touch_api_token(&owner.token_id)?;
        }
        return Ok(AuthContext {
            user: owner.user,
            credential: Credential::Token { id: owner.token_id },
        });
    }
    let claims = keys.verify(token).map_err(AuthError::Invalid)?;
    let user = storage
        .user_for_jwt(&claims.sub, &claims.jti)?
        .ok_or_else(|| {
            AuthError::Invalid("the token is revoked or its user no longer exists".into())
        })?;
    Ok(AuthContext {
        user,
        credential: Credential::Jwt {
            jti: claims.jti,
            exp: claims.exp,
        },
    })
}
