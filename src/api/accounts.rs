//! /api/auth/*: register, login, logout, refresh, me. Passwords are checked against the
//! policy here, hashed with bcrypt, and never stored, logged or audited.

use super::Ctx;
use crate::app::App;
use crate::auth::password::{self, Email, Password};
use crate::auth::{Credential, jwt::Claims};
use crate::http::{ApiError, Resp};
use crate::model::{AuditEvent, Role, User};
use crate::storage::StorageError;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct RegisterBody {
    email: String,
    password: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

/// A slot for one bcrypt run, or 503 at once when half the workers are already hashing
/// (failing fast keeps the other half free for every other route).
fn bcrypt_slot(app: &App) -> Result<crate::ratelimit::InFlight, ApiError> {
    super::perimeter::slot(&app.bcrypt_slots, "checking passwords")
}

/// `{user, token, expires_at}` for a freshly issued login token.
fn session(app: &App, user: &User) -> Result<serde_json::Value, ApiError> {
    let (token, claims) = app
        .keys
        .issue(&user.id, user.role.as_str())
        .map_err(|e| ApiError::internal("could not issue a token").with_detail(e))?;
    Ok(json!({ "user": user, "token": token, "expires_at": expiry(&claims) }))
}

fn expiry(c: &Claims) -> String {
    time::OffsetDateTime::from_unix_timestamp(c.exp)
        .map(crate::storage::rfc3339)
        .unwrap_or_default()
}

pub fn register(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    if !app.config.auth.allow_registration {
        return Err(ApiError::forbidden("registration is closed on this server"));
    }
    let body: RegisterBody = ctx.req.json()?;
    let email = Email::parse(&body.email).map_err(|m| ApiError::invalid("email", m))?;
    let pw = Password::parse(&body.password, email.as_str())
        .map_err(|m| ApiError::invalid("password", m))?;
    let name = body
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::invalid(
            "name",
            "name must be at most 200 characters",
        ));
    }
    let slot = bcrypt_slot(app)?;
    let hash = pw
        .hash(app.config.auth.bcrypt_cost)
        .map_err(|e| ApiError::internal("could not hash the password").with_detail(e))?;
    drop(slot);
    let audit = AuditEvent::security(
        "user.registered",
        &ctx.actor,
        Some(json!({ "email": email.as_str() })),
    );
    let user = match app
        .storage
        .create_user(email.as_str(), name, &hash, Role::User, &audit)
    {
        Ok(u) => u,
        Err(StorageError::Conflict(_)) => {
            return Err(ApiError::conflict(
                "an account with this email already exists",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Resp::json(201, &session(app, &user)?))
}

pub fn login(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let body: LoginBody = ctx.req.json()?;
    // A malformed email is treated like an unknown one: same answer, same time.
    let email = Email::parse(&body.email).ok();
    let found = match &email {
        Some(e) => app.storage.user_by_email(e.as_str())?,
        None => None,
    };
    let cost = app.config.auth.bcrypt_cost;
    let slot = bcrypt_slot(app)?;
    let ok = password::verify(
        &body.password,
        found.as_ref().map(|u| u.password_hash.as_str()),
        cost,
    );
    drop(slot);
    match found {
        Some(u) if ok => {
            let mut actor = ctx.actor.clone();
            actor.user_id = Some(u.user.id.clone());
            app.storage
                .record_event(&AuditEvent::security("auth.login", &actor, None))?;
            Ok(Resp::json(200, &session(app, &u.user)?))
        }
        other => {
            let mut actor = ctx.actor.clone();
            actor.user_id = other.map(|u| u.user.id);
            let shown: String = body.email.trim().to_lowercase().chars().take(254).collect();
            let event =
                AuditEvent::security("auth.login_failed", &actor, Some(json!({ "email": shown })));
            app.storage.record_event(&event)?;
            Err(ApiError::unauthorized("invalid email or password"))
        }
    }
}

/// Revokes the credential the caller used: a login token's id, or the personal token.
pub fn logout(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let caller = ctx.caller()?;
    let audit = AuditEvent::security("auth.logout", &ctx.actor, None);
    match &caller.credential {
        Credential::Jwt { jti, exp } => {
            let exp = time::OffsetDateTime::from_unix_timestamp(*exp)
                .map(crate::storage::rfc3339)
                .unwrap_or_else(|_| crate::storage::now_rfc3339());
            app.storage
                .revoke_jti(jti, &caller.user.id, &exp, Some(&audit))?;
        }
        Credential::Token { id } => app.storage.revoke_api_token(&caller.user.id, id, &audit)?,
    }
    Ok(Resp::empty(204))
}

/// A new login token; the old one is revoked at once.
pub fn refresh(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let caller = ctx.caller()?;
    let Credential::Jwt { jti, exp } = &caller.credential else {
        return Err(ApiError::bad_request(
            "personal API tokens do not expire; there is nothing to refresh",
        ));
    };
    let body = session(app, &caller.user)?;
    let exp = time::OffsetDateTime::from_unix_timestamp(*exp)
        .map(crate::storage::rfc3339)
        .unwrap_or_else(|_| crate::storage::now_rfc3339());
    let audit = AuditEvent::security("auth.refresh", &ctx.actor, None);
    app.storage
        .revoke_jti(jti, &caller.user.id, &exp, Some(&audit))?;
    Ok(Resp::json(200, &body))
}

pub fn me(_app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    Ok(Resp::json(200, &json!({ "user": ctx.caller()?.user })))
}
