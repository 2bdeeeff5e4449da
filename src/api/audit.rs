//! GET /api/audit: the audit log for admins, newest first, filtered by user, action and
//! time, paginated by an opaque id cursor.

use super::Ctx;
use super::params::{page_limit, time};
use crate::app::App;
use crate::http::{ApiError, Resp};
use crate::model::AuditQuery;
use serde_json::json;

pub fn list(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let q = &ctx.req;
    let since = time(ctx, "since")?;
    let before_id = match q.query_param("cursor") {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .map_err(|_| ApiError::invalid("cursor", "invalid cursor"))?,
        ),
    };
    let query = AuditQuery {
        user_id: q.query_param("user_id"),
        action: q.query_param("action"),
        since,
        before_id,
        limit: page_limit(ctx, 500)?,
    };
    // Rows queued by the batching writer are on disk before we read.
    app.records.flush();
    let rows = app.storage.audit_rows(&query)?;
    let next = (rows.len() as u32 == query.limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Resp::json(
        200,
        &json!({ "entries": rows, "next_cursor": next }),
    ))
}
