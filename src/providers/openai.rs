//! The OpenAI-compatible client (OpenAI, Groq, Perplexity differ only in base URL, models
//! and key format): the key check, and the error body mapping shared with completions.

use super::{CheckError, ProviderName};
use serde_json::Value;

/// The `error.code` / `error.type` / `error.message` of an OpenAI-style error body. The
/// message is never passed on as is: providers echo part of the key in it.
pub struct UpstreamError {
    pub code: String,
    pub kind: String,
}

pub fn parse_error(body: &str) -> UpstreamError {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let e = &v["error"];
    let s = |x: &Value| x.as_str().unwrap_or("").to_string();
    UpstreamError {
        code: s(&e["code"]),
        kind: s(&e["type"]),
    }
}

/// `GET {base_url}/models` with the key: 200 means the key works.
pub fn check_key(
    agent: &ureq::Agent,
    provider: ProviderName,
    base_url: &str,
    key: &str,
) -> Result<(), CheckError> {
    let url = format!("{}/models", base_url.trim_end_matches('/'));
    let resp = agent
        .get(&url)
        .header("Authorization", &format!("Bearer {key}"))
        .header("Accept", "application/json")
        .call();
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => {
            return Err(CheckError::Unreachable(format!(
                "{provider} could not be reached at {base_url}: {}",
                describe_transport_error(&e)
            )));
        }
    };
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    match status {
        200..=299 => Ok(()),
        401 | 403 => {
            let e = parse_error(&body);
            let why = if e.code.is_empty() {
                "invalid api key".to_string()
            } else {
                e.code
            };
            Err(CheckError::Rejected(format!(
                "{provider} rejected the key ({why})"
            )))
        }
        429 => {
            let e = parse_error(&body);
            if e.code == "insufficient_quota" || e.kind == "insufficient_quota" {
                Err(CheckError::Rejected(format!(
                    "{provider} accepted the key but its quota is exhausted (insufficient_quota)"
                )))
            } else {
                // Rate limited means the key authenticated.
                Ok(())
            }
        }
        404 => Err(CheckError::Unreachable(format!(
            "{provider} at {base_url} has no /models endpoint (404): is the base_url right?"
        ))),
        s => Err(CheckError::Unreachable(format!(
            "{provider} answered {s} at {base_url}"
        ))),
    }
}

/// A transport error in words, without anything from the request (no headers, no key).
pub fn describe_transport_error(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".to_string(),
        ureq::Error::Io(io) => format!("connection failed ({})", io.kind()),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::Tls(_) => "TLS handshake failed".to_string(),
        other => format!(
            "transport error ({})",
            crate::logging::redact(&other.to_string())
        ),
    }
}
