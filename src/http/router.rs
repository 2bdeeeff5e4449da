//! A small router: patterns with `:param` segments, method matching, and the difference
//! between 404 (no such path) and 405 (path exists, method does not; with `Allow`).

use super::error::{ApiError, ErrorCode};
use super::message::Method;

struct Route<H> {
    method: Method,
    pattern: String,
    segments: Vec<String>,
    handler: H,
}

/// What a lookup found. `H` is whatever the app stores per route (a handler and its
/// access rule, say); the router only copies it out.
pub enum Found<'a, H> {
    Route {
        handler: H,
        pattern: &'a str,
        params: Vec<(String, String)>,
    },
    /// The path exists under other methods (listed for `Allow`).
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

pub struct Router<H> {
    routes: Vec<Route<H>>,
}

impl<H: Copy> Default for Router<H> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<H: Copy> Router<H> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, method: Method, pattern: &str, handler: H) -> &mut Self {
        self.routes.push(Route {
            method,
            pattern: pattern.to_string(),
            segments: split(pattern).map(String::from).collect(),
            handler,
        });
        self
    }

    pub fn get(&mut self, p: &str, h: H) -> &mut Self {
        self.add(Method::Get, p, h)
    }
    pub fn post(&mut self, p: &str, h: H) -> &mut Self {
        self.add(Method::Post, p, h)
    }
    pub fn put(&mut self, p: &str, h: H) -> &mut Self {
        self.add(Method::Put, p, h)
    }
    pub fn patch(&mut self, p: &str, h: H) -> &mut Self {
        self.add(Method::Patch, p, h)
    }
    pub fn delete(&mut self, p: &str, h: H) -> &mut Self {
        self.add(Method::Delete, p, h)
    }

    /// Finds the route for `method` and `path`. HEAD falls back to GET.
    pub fn find(&self, method: Method, path: &str) -> Found<'_, H> {
        let parts: Vec<&str> = split(path).collect();
        let mut allowed = Vec::new();
        for want in [method, Method::Get] {
            for r in &self.routes {
                let Some(params) = matches(&r.segments, &parts) else {
                    continue;
                };
                if r.method == want {
                    return Found::Route {
                        handler: r.handler,
                        pattern: &r.pattern,
                        params,
                    };
                }
                if want == method && !allowed.contains(&r.method) {
                    allowed.push(r.method);
                }
            }
            if method != Method::Head {
                break;
            }
        }
        if allowed.is_empty() {
            Found::NotFound
        } else {
            Found::MethodNotAllowed(allowed)
        }
    }

    /// The methods a path answers to (for CORS preflight), empty when the path is unknown.
    pub fn methods_for(&self, path: &str) -> Vec<Method> {
        let parts: Vec<&str> = split(path).collect();
        self.routes
            .iter()
            .filter(|r| matches(&r.segments, &parts).is_some())
            .map(|r| r.method)
            .collect()
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn matches(pattern: &[String], parts: &[&str]) -> Option<Vec<(String, String)>> {
    if pattern.len() != parts.len() {
        return None;
    }
    let mut params = Vec::new();
    for (p, s) in pattern.iter().zip(parts) {
        if let Some(name) = p.strip_prefix(':') {
            params.push((name.to_string(), (*s).to_string()));
        } else if p != s {
            return None;
        }
    }
    Some(params)
}

/// The 405 error with its `Allow` header.
pub fn method_not_allowed(allowed: &[Method]) -> ApiError {
    let mut names: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
    names.push("OPTIONS");
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed for this path",
    )
    .with_header("Allow", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_methods_and_misses() {
        let mut r: Router<u8> = Router::new();
        r.get("/api/agents/:id", 1).delete("/api/agents/:id", 2);
        match r.find(Method::Get, "/api/agents/abc") {
            Found::Route {
                params,
                pattern,
                handler,
            } => {
                assert_eq!(handler, 1);
                assert_eq!(params, vec![("id".to_string(), "abc".to_string())]);
                assert_eq!(pattern, "/api/agents/:id");
            }
            _ => panic!("expected a route"),
        }
        match r.find(Method::Post, "/api/agents/abc") {
            Found::MethodNotAllowed(m) => assert_eq!(m, vec![Method::Get, Method::Delete]),
            _ => panic!("expected 405"),
        }
        assert!(matches!(
            r.find(Method::Get, "/api/agents"),
            Found::NotFound
        ));
        assert!(matches!(
            r.find(Method::Head, "/api/agents/x"),
            Found::Route { .. }
        ));
        let e = method_not_allowed(&[Method::Get, Method::Delete]);
        assert_eq!(e.headers[0].1, "GET, DELETE, OPTIONS");
    }
}
