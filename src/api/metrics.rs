//! GET /metrics: Prometheus text for admins or a bearer of `metrics.token`.

use super::{Ctx, perimeter};
use crate::app::App;
use crate::http::{ApiError, Resp};

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn render(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let presented = ctx
        .req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    let by_token = match (&app.config.metrics_token, presented) {
        (Some(t), Some(p)) if !t.expose().is_empty() => same(t.expose().as_bytes(), p.as_bytes()),
        _ => false,
    };
    if !by_token {
        let caller = perimeter::authenticate(app, ctx.req)?;
        if !caller.is_admin() {
            return Err(ApiError::forbidden("admins or the metrics token only"));
        }
    }
    let mut r = Resp::json(200, &()).with_header("Cache-Control", "no-store");
    r.headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
    r.headers
        .push(("Content-Type".into(), "text/plain; version=0.0.4".into()));
    r.body = app.metrics.render().into_bytes();
    Ok(r)
}
