//! GET /api/health: what exists and whether it answers. 503 with `status: "down"` when the
//! database cannot answer; later parts (providers, workers) add their sections here.

use super::Ctx;
use crate::app::App;
use crate::http::{ApiError, Resp};
use serde_json::{Map, Value, json};

/// Per provider: whether an operator key (or none needed) makes it usable by everyone,
/// the circuit, this month's budget use, the last error, and the startup key check.
/// The flag is true when any circuit is open.
fn providers(app: &App) -> (Value, bool) {
    use crate::app::OperatorCheck;
    use crate::providers::ProviderName;
    let checks = app
        .operator_checks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut out = Map::new();
    let mut any_open = false;
    for p in ProviderName::ALL {
        let cfg = &app.config.providers[p.as_str()];
        let configured = p == ProviderName::Local
            || cfg.api_key.as_ref().is_some_and(|k| !k.expose().is_empty());
        let (check, last_error) = match checks.get(p.as_str()) {
            None => ("unchecked", None),
            Some(OperatorCheck::Pending) => ("pending", None),
            Some(OperatorCheck::Valid) => ("valid", None),
            Some(OperatorCheck::Failed(e)) => ("failed", Some(e.clone())),
        };
        let (circuit, open_until) = app.orchestrator.circuit(p);
        any_open |= circuit == crate::breaker::State::Open;
        let quota = app.orchestrator.quotas.status(p.as_str());
        let last_error = app.orchestrator.last_error(p).or(last_error);
        out.insert(
            p.as_str().into(),
            json!({
                "configured": configured,
                "circuit": circuit.as_str(),
                "open_until": open_until,
                "quota_used_pct": quota.used_pct.map(|v| (v * 10.0).round() / 10.0),
                "quota_exhausted": quota.exhausted,
                "last_error": last_error,
                "key_check": check,
            }),
        );
    }
    (Value::Object(out), any_open)
}

pub fn health(app: &App, _ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let db = app.storage.ping();
    let (ok, latency_ms, error) = match &db {
        Ok(d) => (true, d.as_secs_f64() * 1000.0, None),
        Err(e) => (false, 0.0, Some(e.to_string())),
    };
    if let Some(e) = &error {
        log::warn!("health: database check failed: {e}");
    }
    let (providers, any_open) = providers(app);
    let status = match (ok, any_open) {
        (false, _) => "down",
        (true, true) => "degraded",
        (true, false) => "ok",
    };
    let mut database = json!({ "ok": ok, "latency_ms": (latency_ms * 1000.0).round() / 1000.0 });
    if let (Some(e), true) = (&error, app.config.errors_detail) {
        database["error"] = json!(e);
    }
    let body = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": app.started.elapsed().as_secs(),
        "database": database,
        "providers": providers,
    });
    Ok(Resp::json(if ok { 200 } else { 503 }, &body).with_header("Cache-Control", "no-store"))
}
