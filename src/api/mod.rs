//! The API: the route table (each route with its access rule) and the dispatcher that runs
//! the perimeter — CORS, origin check, rate limits, auth — before handlers, and audits after.

mod accounts;
mod agents;
mod audit;
mod health;
mod integrations;
mod metrics;
mod params;
mod perimeter;
mod tokens;
mod usage;
mod users;

use crate::app::App;
use crate::auth::AuthContext;
use crate::http::{ApiError, Dispatch, Found, Method, Req, Resp, Router, router};
use crate::model::{Actor, AuditEvent};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone; limited per client IP when rate limiting is on (sign-up, login).
    PublicAuth,
    /// Anyone, unlimited, not audited per request (health probes).
    Probe,
    User,
    Admin,
}

/// What a handler gets: the request, the caller (for User/Admin routes), and the actor
/// facts every audit row needs.
pub struct Ctx<'a> {
    pub req: &'a Req,
    pub auth: Option<AuthContext>,
    pub actor: Actor,
    /// When the dispatcher took the request (for `x-vel-overhead-ms`).
    pub started: Instant,
}

impl Ctx<'_> {
    /// The authenticated caller; the dispatcher guarantees one on User/Admin routes.
    pub fn caller(&self) -> Result<&AuthContext, ApiError> {
        self.auth
            .as_ref()
            .ok_or_else(|| ApiError::unauthorized("authentication required"))
    }
}

pub type Handler = fn(&App, &Ctx<'_>) -> Result<Resp, ApiError>;

/// Every route of the API with its access rule.
pub fn routes() -> Router<(Access, Handler)> {
    use Access::*;
    let mut r: Router<(Access, Handler)> = Router::new();
    r.get("/api/health", (Probe, health::health));
    r.post("/api/auth/register", (PublicAuth, accounts::register));
    r.post("/api/auth/login", (PublicAuth, accounts::login));
    r.post("/api/auth/logout", (User, accounts::logout));
    r.post("/api/auth/refresh", (User, accounts::refresh));
    r.get("/api/auth/me", (User, accounts::me));
    r.post("/api/tokens", (User, tokens::create));
    r.get("/api/tokens", (User, tokens::list));
    r.delete("/api/tokens/:id", (User, tokens::revoke));
    r.get("/api/users", (Admin, users::list));
    r.patch("/api/users/:id", (Admin, users::set_role));
    r.delete("/api/users/:id", (Admin, users::delete));
    r.get("/api/audit", (Admin, audit::list));
    r.post("/api/agents", (User, agents::create));
    r.get("/api/agents", (User, agents::list));
    r.get("/api/agents/:id", (User, agents::get));
    r.patch("/api/agents/:id", (User, agents::update));
    r.delete("/api/agents/:id", (User, agents::delete));
    r.post("/api/agents/:id/test", (User, agents::test));
    r.post("/api/agents/:id/chat", (User, agents::chat));
    r.get("/api/usage", (User, usage::get));
    r.get("/metrics", (Probe, metrics::render));
    r.get("/api/integrations", (User, integrations::list));
    r.put("/api/integrations/:provider", (User, integrations::put));
    r.delete("/api/integrations/:provider", (User, integrations::delete));
    r
}

/// Builds the function the HTTP server calls for each request.
pub fn dispatcher(app: Arc<App>) -> Dispatch {
    let router = Arc::new(routes());
    Arc::new(move |req: Req| dispatch(&app, &router, req))
}

/// The perimeter for a matched route, then its handler. Returns the actor (with the user
/// once known) for the audit row.
fn run_route(
    app: &App,
    req: &Req,
    (access, handler): (Access, Handler),
    mut actor: Actor,
    extra_headers: &mut Vec<(String, String)>,
    started: Instant,
) -> (Result<Resp, ApiError>, Actor) {
    let limits_on = app.config.rate_limit.enabled;
    if access == Access::PublicAuth && limits_on {
        let ip = actor.ip.clone().unwrap_or_default();
        if let Err(e) =
            perimeter::limit(&app.limits.auth_per_ip, &format!("ip:{ip}"), extra_headers)
        {
            return (Err(e), actor);
        }
    }
    let mut auth = None;
    let mut _in_flight = None;
    if matches!(access, Access::User | Access::Admin) {
        let caller = match perimeter::authenticate(app, req) {
            Ok(c) => c,
            Err(e) => return (Err(e), actor),
        };
        actor.user_id = Some(caller.user.id.clone());
        if access == Access::Admin && !caller.is_admin() {
            return (Err(ApiError::forbidden("admins only")), actor);
        }
        if limits_on {
            let key = format!("user:{}", caller.user.id);
            if let Err(e) = perimeter::limit(&app.limits.per_user, &key, extra_headers) {
                return (Err(e), actor);
            }
            match perimeter::enter(&app.limits.concurrent, &caller.user.id) {
                Ok(guard) => _in_flight = Some(guard),
                Err(e) => return (Err(e), actor),
            }
        }
        auth = Some(caller);
    }
    let ctx = Ctx {
        req,
        auth,
        actor,
        started,
    };
    let result = match catch_unwind(AssertUnwindSafe(|| handler(app, &ctx))) {
        Ok(r) => r,
        Err(_) => {
            log::error!(
                "api: handler for {} panicked (request_id={})",
                req.route,
                req.request_id
            );
            Err(ApiError::internal("internal error").with_detail("the handler panicked"))
        }
    };
    (result, ctx.actor)
}

fn dispatch(app: &App, router: &Router<(Access, Handler)>, mut req: Req) -> Resp {
    let started = Instant::now();
    let show = app.config.errors_detail;
    let actor = Actor {
        user_id: None,
        ip: Some(perimeter::client_ip(&app.config.server, &req)),
        user_agent: req
            .header("user-agent")
            .map(|s| s.chars().take(512).collect()),
        request_id: Some(req.request_id.clone()),
    };
    let cors = perimeter::cors_headers(&app.config.cors, &req);
    if req.method == Method::Options {
        return perimeter::preflight(app, router, &req, cors);
    }
    let mut extra_headers = Vec::new();
    let mut audited = true;
    let found = match perimeter::check_origin(&app.config.cors, &req) {
        Err(e) => Err(e),
        Ok(()) => match router.find(req.method, &req.path) {
            Found::Route {
                handler,
                pattern,
                params,
            } => {
                req.params = params;
                req.route = pattern.to_string();
                Ok(handler)
            }
            Found::MethodNotAllowed(allowed) => Err(router::method_not_allowed(&allowed)),
            Found::NotFound => Err(ApiError::not_found(format!("no route for {}", req.path))),
        },
    };
    let (result, actor) = match found {
        Err(e) => (Err(e), actor),
        Ok(route) => {
            audited = route.0 != Access::Probe;
            run_route(app, &req, route, actor, &mut extra_headers, started)
        }
    };
    let route = req.route.clone();
    let mut resp = result.unwrap_or_else(|e| Resp::error(&e, &req.request_id, show));
    resp.headers.extend(cors);
    resp.headers.extend(extra_headers);
    resp.user_id = actor.user_id.clone();
    let elapsed = started.elapsed().as_secs_f64();
    let route_label = if route.is_empty() {
        "unmatched"
    } else {
        route.as_str()
    };
    let class = match resp.status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    app.metrics.observe(
        "vel_http_request_duration_seconds",
        &[("method", req.method.as_str()), ("route", route_label)],
        elapsed,
    );
    app.metrics.inc(
        "vel_http_requests_total",
        &[
            ("method", req.method.as_str()),
            ("route", route_label),
            ("status", class),
        ],
    );
    if audited {
        let event = AuditEvent {
            action: "request".into(),
            actor,
            method: Some(req.method.as_str().into()),
            route: Some(if route.is_empty() {
                crate::logging::redact(&req.path)
                    .chars()
                    .take(200)
                    .collect()
            } else {
                route
            }),
            status: Some(resp.status),
            duration_ms: Some(elapsed * 1000.0),
            detail: None,
        };
        app.audit(event);
    }
    resp
}
