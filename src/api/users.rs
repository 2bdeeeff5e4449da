//! /api/users: user administration for admins — list, change a role, delete. The last
//! admin can be neither demoted nor deleted.

use super::Ctx;
use crate::app::App;
use crate::http::{ApiError, Resp};
use crate::model::{AuditEvent, Role};
use crate::storage::StorageError;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct RoleBody {
    role: String,
}

fn not_found_or(e: StorageError) -> ApiError {
    match e {
        StorageError::NotFound => ApiError::not_found("no such user"),
        StorageError::Conflict(m) => ApiError::conflict(m),
        other => other.into(),
    }
}

pub fn list(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let limit = super::params::page_limit(ctx, 200)?;
    let cursor = ctx.req.query_param("cursor");
    let users = app.storage.list_users(cursor.as_deref(), limit)?;
    let next = (users.len() as u32 == limit)
        .then(|| users.last().map(|u| u.id.clone()))
        .flatten();
    Ok(Resp::json(
        200,
        &json!({ "users": users, "next_cursor": next }),
    ))
}

pub fn set_role(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let body: RoleBody = ctx.req.json()?;
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError::invalid("role", "role must be \"admin\" or \"user\""))?;
    let id = ctx.req.param("id");
    let audit = AuditEvent::security(
        "user.role_changed",
        &ctx.actor,
        Some(json!({ "target": id, "role": role.as_str() })),
    );
    let user = app
        .storage
        .set_role(id, role, &audit)
        .map_err(not_found_or)?;
    Ok(Resp::json(200, &json!({ "user": user })))
}

pub fn delete(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let id = ctx.req.param("id");
    let audit = AuditEvent::security("user.deleted", &ctx.actor, Some(json!({ "target": id })));
    app.storage.delete_user(id, &audit).map_err(not_found_or)?;
    Ok(Resp::empty(204))
}
