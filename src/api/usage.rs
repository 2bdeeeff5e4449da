//! GET /api/usage: tokens and USD per provider and model since a time (default: the start
//! of this month) — the caller's own, or for admins everyone's or one user's — and quotas.

use super::Ctx;
use crate::app::App;
use crate::http::{ApiError, Resp};
use crate::providers::ProviderName;
use serde_json::{Map, Value, json};

pub fn get(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let caller = ctx.caller()?;
    let since =
        super::params::time(ctx, "since")?.unwrap_or_else(crate::orchestrator::quota::month_start);
    let asked = ctx.req.query_param("user_id");
    let scope = match (caller.is_admin(), asked) {
        (true, who) => who,
        (false, Some(other)) if other != caller.user.id => {
            return Err(ApiError::not_found("no such user"));
        }
        (false, _) => Some(caller.user.id.clone()),
    };
    // Rows queued by the batching writer are on disk before we read.
    app.records.flush();
    let totals = app.storage.usage_totals(scope.as_deref(), &since)?;
    let cost: f64 = totals.iter().map(|t| t.cost_usd).sum();
    let mut quota = Map::new();
    for p in ProviderName::ALL {
        let s = app.orchestrator.quotas.status(p.as_str());
        let v = if caller.is_admin() {
            json!({ "monthly_usd": s.budget_usd, "used_usd": s.used_usd, "used_pct": s.used_pct, "exhausted": s.exhausted })
        } else {
            json!({ "exhausted": s.exhausted })
        };
        quota.insert(p.as_str().into(), v);
    }
    let body = json!({
        "since": since,
        "user_id": scope,
        "total_cost_usd": cost,
        "by_model": totals,
        "quota": Value::Object(quota),
    });
    Ok(Resp::json(200, &body))
}
