//! `ApiError`: the one error type that knows HTTP status codes and the JSON error envelope
//! of SPEC §4. Lower layers convert into it; nothing below the handlers builds bodies.

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;

/// The error codes of SPEC §4, each with its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    RateLimited,
    TooManyConcurrent,
    Internal,
    ProviderError,
    ProviderUnavailable,
    /// The service itself (not a provider) cannot answer now: database busy or down.
    Unavailable,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            BadRequest => 400,
            Unauthorized => 401,
            Forbidden => 403,
            NotFound => 404,
            MethodNotAllowed => 405,
            Conflict => 409,
            PayloadTooLarge => 413,
            UnsupportedMediaType => 415,
            ValidationFailed => 422,
            RateLimited | TooManyConcurrent => 429,
            Internal => 500,
            ProviderError => 502,
            ProviderUnavailable | Unavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadRequest => "bad_request",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            Conflict => "conflict",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            ValidationFailed => "validation_failed",
            RateLimited => "rate_limited",
            TooManyConcurrent => "too_many_concurrent",
            Internal => "internal",
            ProviderError => "provider_error",
            ProviderUnavailable => "provider_unavailable",
            Unavailable => "unavailable",
        }
    }
}

/// An error on its way to the client. `detail` is shown only when `errors.detail` is on;
/// `message` is always safe to show a user.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub fields: BTreeMap<String, String>,
    pub detail: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Extra members of the error object (e.g. the providers and their reasons).
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            fields: BTreeMap::new(),
            detail: None,
            headers: Vec::new(),
            extra: Map::new(),
        }
    }

    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, m)
    }
    pub fn unauthorized(m: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, m)
    }
    pub fn forbidden(m: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, m)
    }
    pub fn conflict(m: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Conflict, m)
    }
    pub fn internal(m: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Internal, m)
    }

    /// A 422 naming the offending field.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        let mut e = ApiError::new(ErrorCode::ValidationFailed, message.clone());
        e.fields.insert(field.to_string(), message);
        e
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> ApiError {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> ApiError {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The JSON envelope: `{"error": {code, message, request_id, fields?, detail?}}`.
    pub fn body(&self, request_id: &str, show_detail: bool) -> Value {
        let mut err = Map::new();
        err.insert("code".into(), json!(self.code.as_str()));
        err.insert("message".into(), json!(self.message));
        err.insert("request_id".into(), json!(request_id));
        if !self.fields.is_empty() {
            err.insert("fields".into(), json!(self.fields));
        }
        if let (true, Some(d)) = (show_detail, &self.detail) {
            err.insert("detail".into(), json!(crate::logging::redact(d)));
        }
        for (k, v) in &self.extra {
            err.insert(k.clone(), v.clone());
        }
        json!({ "error": err })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        use crate::storage::StorageError as S;
        match e {
            S::NotFound => ApiError::not_found("not found"),
            S::Conflict(d) => ApiError::conflict("already exists").with_detail(d),
            S::Busy(d) => ApiError::new(ErrorCode::Unavailable, "the database is busy; try again")
                .with_header("Retry-After", "1")
                .with_detail(d),
            other => ApiError::internal("internal error").with_detail(other.to_string()),
        }
    }
}
