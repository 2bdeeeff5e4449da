//! The API: the route table and the dispatcher that runs the perimeter before handlers.
//! Handlers live one file per resource; none of them writes SQL.

mod health;

use crate::app::App;
use crate::http::{ApiError, Dispatch, Found, Req, Resp, Router, router};
use std::sync::Arc;

/// Every route of the API.
pub fn routes() -> Router<App> {
    let mut r = Router::new();
    r.get("/api/health", health::health);
    r
}

/// Builds the function the HTTP server calls for each request.
pub fn dispatcher(app: Arc<App>) -> Dispatch {
    let router = Arc::new(routes());
    Arc::new(move |req: &Req| dispatch(&app, &router, req))
}

fn dispatch(app: &App, router: &Router<App>, req: &Req) -> Resp {
    let show = app.config.errors_detail;
    let result = match router.find(req.method, &req.path) {
        Found::Route {
            handler,
            pattern,
            params,
        } => {
            let mut req = req.clone();
            req.params = params;
            req.route = pattern.to_string();
            handler(app, &req)
        }
        Found::MethodNotAllowed(allowed) => Err(router::method_not_allowed(&allowed)),
        Found::NotFound => Err(ApiError::not_found(format!("no route for {}", req.path))),
    };
    result.unwrap_or_else(|e| Resp::error(&e, &req.request_id, show))
}
