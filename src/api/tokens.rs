//! /api/tokens: personal API tokens (`vt_…`) for SDKs and scripts — shown once at creation,
//! stored as a hash, listed without the secret, revocable.

use super::Ctx;
use crate::app::App;
use crate::auth::{hash_personal_token, new_personal_token};
use crate::http::{ApiError, Resp};
use crate::model::AuditEvent;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct CreateBody {
    name: String,
}

pub fn create(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let caller = ctx.caller()?;
    let body: CreateBody = ctx.req.json()?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid(
            "name",
            "name must be 1 to 100 characters",
        ));
    }
    let token = new_personal_token();
    let prefix: String = token.chars().take(7).collect();
    let audit = AuditEvent::security("token.created", &ctx.actor, None);
    let saved = app.storage.create_api_token(
        &caller.user.id,
        name,
        &hash_personal_token(&token),
        &prefix,
        &audit,
    )?;
    let mut out = serde_json::to_value(&saved).unwrap_or_else(|_| json!({}));
    out["token"] = json!(token);
    Ok(Resp::json(201, &out).with_header("Cache-Control", "no-store"))
}

pub fn list(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let tokens = app.storage.list_api_tokens(&ctx.caller()?.user.id)?;
    Ok(Resp::json(200, &json!({ "tokens": tokens })))
}

pub fn revoke(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let caller = ctx.caller()?;
    let id = ctx.req.param("id");
    let audit = AuditEvent::security("token.revoked", &ctx.actor, Some(json!({ "target": id })));
    app.storage
        .revoke_api_token(&caller.user.id, id, &audit)
        .map_err(|e| match e {
            crate::storage::StorageError::NotFound => ApiError::not_found("no such token"),
            other => other.into(),
        })?;
    Ok(Resp::empty(204))
}
