//! `Req` and `Resp`: the plain request and response values handlers see, with the JSON
//! helpers (content type → 415, syntax → 400, wrong shape → 422). No sockets here.

use super::error::{ApiError, ErrorCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other,
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }

    /// Whether the method changes state (for CSRF-style origin checks).
    pub fn is_unsafe(self) -> bool {
        matches!(
            self,
            Method::Post | Method::Put | Method::Patch | Method::Delete
        )
    }
}

/// A fully read request. Header names are lower-case.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub request_id: String,
    pub peer: Option<SocketAddr>,
    /// Path parameters filled in by the router (`:id` → value).
    pub params: Vec<(String, String)>,
    /// The route pattern that matched (for logs, metrics and audit), e.g. `/api/agents/:id`.
    pub route: String,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The first value of a query-string parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// Parses the body as JSON of type `T`: 415 unless the content type is JSON, 400 for
    /// malformed JSON, 422 for JSON of the wrong shape.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let ct = self.header("content-type").unwrap_or("");
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json"
            && !(mime.starts_with("application/") && mime.ends_with("+json"))
        {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "request body must be JSON (Content-Type: application/json)",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ApiError::new(
                    ErrorCode::ValidationFailed,
                    format!("invalid request body: {e}"),
                ),
                _ => ApiError::bad_request(format!("malformed JSON: {e}")),
            }
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response on its way out. `user_id` lets the http layer log who made the request.
#[derive(Clone, Debug, Default)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub user_id: Option<String>,
}

impl Resp {
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Resp {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Resp {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
            user_id: None,
        }
    }

    pub fn empty(status: u16) -> Resp {
        Resp {
            status,
            ..Resp::default()
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Resp {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The error envelope for `err`, with its extra headers.
    pub fn error(err: &ApiError, request_id: &str, show_detail: bool) -> Resp {
        let mut r = Resp::json(err.code.status(), &err.body(request_id, show_detail));
        r.headers.extend(err.headers.iter().cloned());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ct: &str, body: &str) -> Req {
        Req {
            method: Method::Post,
            path: "/".into(),
            query: "a=1&b=x%20y&c=%zz".into(),
            headers: vec![("content-type".into(), ct.into())],
            body: body.as_bytes().to_vec(),
            request_id: "r".into(),
            peer: None,
            params: vec![],
            route: "/".into(),
        }
    }

    #[test]
    fn json_errors_map_to_400_415_422() {
        #[derive(serde::Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            a: u32,
        }
        assert_eq!(
            req("text/plain", "{}")
                .json::<T>()
                .unwrap_err()
                .code
                .status(),
            415
        );
        assert_eq!(
            req("application/json", "{")
                .json::<T>()
                .unwrap_err()
                .code
                .status(),
            400
        );
        assert_eq!(
            req("application/json", "{\"a\":\"x\"}")
                .json::<T>()
                .unwrap_err()
                .code
                .status(),
            422
        );
        assert_eq!(
            req("application/json; charset=utf-8", "{\"a\":7}")
                .json::<T>()
                .unwrap()
                .a,
            7
        );
    }

    #[test]
    fn query_params_are_decoded() {
        let r = req("", "");
        assert_eq!(r.query_param("a").as_deref(), Some("1"));
        assert_eq!(r.query_param("b").as_deref(), Some("x y"));
        assert_eq!(r.query_param("c").as_deref(), Some("%zz"));
        assert_eq!(r.query_param("d"), None);
    }
}
