//! The perimeter every request crosses before a handler: client IP, CORS and preflight,
//! the origin check, rate limits with their headers, and authentication.

use super::{Access, Handler};
use crate::app::App;
use crate::auth::{self, AuthContext, AuthError};
use crate::config::{CorsConfig, ServerConfig};
use crate::http::{ApiError, ErrorCode, Req, Resp, Router};
use crate::ratelimit::{Concurrency, InFlight, SlidingWindow};
use std::net::IpAddr;
use std::time::Instant;

/// The client's IP: the peer, unless the peer is a trusted proxy, in which case the
/// right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(server: &ServerConfig, req: &Req) -> String {
    let Some(peer) = req.peer.map(|p| p.ip()) else {
        return "unknown".into();
    };
    if !server.is_trusted_proxy(peer) {
        return peer.to_string();
    }
    let Some(xff) = req.header("x-forwarded-for") else {
        return peer.to_string();
    };
    xff.rsplit(',')
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !server.is_trusted_proxy(*ip))
        .map_or_else(|| peer.to_string(), |ip| ip.to_string())
}

fn origin_allowed(cors: &CorsConfig, origin: &str) -> bool {
    cors.origins
        .iter()
        .any(|o| o == "*" || o.trim_end_matches('/') == origin)
}

/// CORS headers for an allowed `Origin`; none at all for a missing or disallowed one.
pub fn cors_headers(cors: &CorsConfig, req: &Req) -> Vec<(String, String)> {
    match req.header("origin") {
        Some(o) if origin_allowed(cors, o) => vec![
            ("Access-Control-Allow-Origin".into(), o.to_string()),
            ("Vary".into(), "Origin".into()),
            (
                "Access-Control-Expose-Headers".into(),
                "x-request-id, retry-after, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset, x-vel-overhead-ms"
                    .into(),
            ),
        ],
        _ => Vec::new(),
    }
}

/// Answers `OPTIONS` without auth: a CORS preflight gets the allowed methods and headers
/// (only for an allowed origin); any other OPTIONS gets `Allow`.
pub fn preflight(
    app: &App,
    router: &Router<(Access, Handler)>,
    req: &Req,
    cors: Vec<(String, String)>,
) -> Resp {
    let methods = router.methods_for(&req.path);
    if methods.is_empty() {
        let e = ApiError::not_found(format!("no route for {}", req.path));
        return Resp::error(&e, &req.request_id, app.config.errors_detail);
    }
    let mut names: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
    names.push("OPTIONS");
    let list = names.join(", ");
    let mut resp = Resp::empty(204).with_header("Allow", list.clone());
    if !cors.is_empty() {
        resp.headers.extend(cors);
        resp.headers.extend([
            ("Access-Control-Allow-Methods".to_string(), list),
            (
                "Access-Control-Allow-Headers".to_string(),
                "authorization, content-type, x-request-id, idempotency-key".to_string(),
            ),
            (
                "Access-Control-Max-Age".to_string(),
                app.config.cors.max_age_s.to_string(),
            ),
        ]);
    }
    resp
}

/// With `cors.check_origin`, refuses a state-changing request whose `Origin` is present
/// and not on the allow-list (a browser on another site acting with a user's token).
pub fn check_origin(cors: &CorsConfig, req: &Req) -> Result<(), ApiError> {
    if !cors.check_origin || !req.method.is_unsafe() {
        return Ok(());
    }
    match req.header("origin") {
        Some(o) if !origin_allowed(cors, o) => Err(ApiError::forbidden("origin not allowed")),
        _ => Ok(()),
    }
}

/// Counts one request against `window` for `key`, adding the `x-ratelimit-*` headers;
/// 429 `rate_limited` with `Retry-After` when over.
pub fn limit(
    window: &SlidingWindow,
    key: &str,
    headers: &mut Vec<(String, String)>,
) -> Result<(), ApiError> {
    let d = window.check(key, Instant::now());
    let h = [
        ("x-ratelimit-limit", d.limit.to_string()),
        ("x-ratelimit-remaining", d.remaining.to_string()),
        ("x-ratelimit-reset", d.reset_s.to_string()),
    ];
    headers.extend(h.iter().map(|(k, v)| (k.to_string(), v.clone())));
    if d.allowed {
        return Ok(());
    }
    let mut e = ApiError::new(
        ErrorCode::RateLimited,
        format!("rate limit exceeded; retry in {}s", d.reset_s),
    )
    .with_header("Retry-After", d.reset_s.to_string());
    e.headers
        .extend(h.iter().map(|(k, v)| (k.to_string(), v.clone())));
    headers.clear();
    Err(e)
}

/// A slot in a server-wide gate (password hashing, provider calls), or 503 at once when
/// all are taken: failing fast keeps the remaining workers free for every other route.
pub fn slot(gate: &Concurrency, busy_with: &str) -> Result<InFlight, ApiError> {
    gate.enter("").ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("the server is busy {busy_with}; retry shortly"),
        )
        .with_header("Retry-After", "1")
    })
}

/// Enters the per-user in-flight limit; 429 `too_many_concurrent` when full.
pub fn enter(c: &Concurrency, user_id: &str) -> Result<InFlight, ApiError> {
    c.enter(user_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::TooManyConcurrent,
            format!("at most {} requests in flight per user", c.limit()),
        )
        .with_header("Retry-After", "1")
    })
}

/// The caller of a User/Admin route, or 401. One message for every failure, so the
/// response does not tell which check failed; the reason goes to the debug log.
pub fn authenticate(app: &App, req: &Req) -> Result<AuthContext, ApiError> {
    match auth::authenticate(&app.storage, &app.keys, req.header("authorization")) {
        Ok(c) => Ok(c),
        Err(AuthError::Storage(e)) => Err(e.into()),
        Err(AuthError::Missing) => Err(unauthorized()),
        Err(AuthError::Invalid(why)) => {
            log::debug!(
                "auth: rejected credential (request_id={}): {why}",
                req.request_id
            );
            Err(unauthorized())
        }
    }
}

fn unauthorized() -> ApiError {
    ApiError::unauthorized("missing or invalid credentials")
        .with_header("WWW-Authenticate", "Bearer")
}
