//! GET /api/health: what exists and whether it answers. 503 with `status: "down"` when the
//! database cannot answer; later parts (providers, workers) add their sections here.

use super::Ctx;
use crate::app::App;
use crate::http::{ApiError, Resp};
use serde_json::json;

pub fn health(app: &App, _ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let db = app.storage.ping();
    let (ok, latency_ms, error) = match &db {
        Ok(d) => (true, d.as_secs_f64() * 1000.0, None),
        Err(e) => (false, 0.0, Some(e.to_string())),
    };
    if let Some(e) = &error {
        log::warn!("health: database check failed: {e}");
    }
    let status = if ok { "ok" } else { "down" };
    let mut database = json!({ "ok": ok, "latency_ms": (latency_ms * 1000.0).round() / 1000.0 });
    if let (Some(e), true) = (&error, app.config.errors_detail) {
        database["error"] = json!(e);
    }
    let body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": app.started.elapsed().as_secs(),
        "database": database,
    });
    Ok(Resp::json(if ok { 200 } else { 503 }, &body).with_header("Cache-Control", "no-store"))
}
