//! /api/integrations/:provider: users' own provider keys — stored sealed only after a
//! format check and a live check; listed as hints; deleted. The key is never echoed.

use super::Ctx;
use crate::app::App;
use crate::http::{ApiError, ErrorCode, Resp};
use crate::integrations::{self, PutError};
use crate::model::AuditEvent;
use crate::providers::ProviderName;
use crate::storage::StorageError;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct PutBody {
    api_key: String,
    base_url: Option<String>,
}

/// The provider in the path; unknown names (and `local`, which takes no key) are 404.
fn provider(ctx: &Ctx<'_>) -> Result<ProviderName, ApiError> {
    ProviderName::parse(ctx.req.param("provider"))
        .filter(|p| p.takes_keys())
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown provider (expected openai, groq, perplexity or task_master)",
            )
        })
}

pub fn put(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let caller = ctx.caller()?;
    let p = provider(ctx)?;
    let body: PutBody = ctx.req.json()?;
    let base_url = body
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let audit = AuditEvent::security("integration.stored", &ctx.actor, None);
    match integrations::put(app, &caller.user.id, p, &body.api_key, base_url, &audit) {
        Ok((row, _)) => Ok(Resp::json(200, &row)),
        Err(PutError::Invalid(field, m)) => Err(ApiError::invalid(field, m)),
        Err(PutError::Rejected(m)) => Err(ApiError::invalid("api_key", m)),
        Err(PutError::Unreachable(m)) => Err(ApiError::new(ErrorCode::ProviderError, m)),
        Err(PutError::Storage(e)) => Err(e.into()),
    }
}

pub fn list(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let rows = app.storage.list_integrations(&ctx.caller()?.user.id)?;
    Ok(Resp::json(200, &json!({ "integrations": rows })))
}

pub fn delete(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let caller = ctx.caller()?;
    let p = provider(ctx)?;
    let audit = AuditEvent::security(
        "integration.deleted",
        &ctx.actor,
        Some(json!({ "provider": p.as_str() })),
    );
    match app
        .storage
        .delete_integration(&caller.user.id, p.as_str(), &audit)
    {
        Ok(()) => Ok(Resp::empty(204)),
        Err(StorageError::NotFound) => Err(ApiError::not_found(format!("no {p} key stored"))),
        Err(e) => Err(e.into()),
    }
}
