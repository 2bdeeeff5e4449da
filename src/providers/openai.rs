//! The OpenAI-compatible client (OpenAI, Groq, Perplexity differ only in base URL, models
//! and key format): the key check, and the error body mapping shared with completions.

use super::{ChatRequest, CheckError, Completion, ErrorKind, ProviderError, ProviderName};
use serde_json::{Value, json};
use std::time::Duration;

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

/// `POST {base_url}/chat/completions`. The response is read in one piece here; a later
/// streaming variant reads the same response as SSE (`stream: true`) instead.
pub fn chat(
    agent: &ureq::Agent,
    provider: ProviderName,
    base_url: &str,
    key: &str,
    req: &ChatRequest<'_>,
) -> Result<Completion, ProviderError> {
    let url = format!("{}/chat/completions", base_url.trim_end_matches('/'));
    let mut body = json!({ "model": req.model, "messages": req.messages });
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(m) = req.max_tokens {
        body["max_tokens"] = json!(m);
    }
    let resp = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .send(body.to_string());
    let mut resp = resp.map_err(|e| transport_error(provider, &e))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(300.0)));
    let text = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .map_err(|e| transport_error(provider, &e))?;
    if (200..300).contains(&status) {
        return parse_completion(provider, &text, req.model);
    }
    Err(status_error(provider, status, &text, retry_after))
}

const MAX_BODY: u64 = 16 * 1024 * 1024;

fn parse_completion(
    provider: ProviderName,
    text: &str,
    asked: &str,
) -> Result<Completion, ProviderError> {
    let v: Value = serde_json::from_str(text).map_err(|_| {
        ProviderError::new(
            provider,
            ErrorKind::BadResponse,
            "answered 200 with a body that is not JSON",
        )
    })?;
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| {
            ProviderError::new(
                provider,
                ErrorKind::BadResponse,
                "answered 200 without choices[0].message.content",
            )
        })?;
    let u = &v["usage"];
    Ok(Completion {
        output: Value::String(content.to_string()),
        model: v["model"].as_str().unwrap_or(asked).to_string(),
        prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
        completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
    })
}

/// Maps a non-2xx answer to a clear error that names the provider and never the key.
fn status_error(
    provider: ProviderName,
    status: u16,
    body: &str,
    retry_after: Option<Duration>,
) -> ProviderError {
    let e = parse_error(body);
    let is = |s: &str| e.code == s || e.kind == s;
    let (kind, msg) = match status {
        401 | 403 => (ErrorKind::InvalidKey, format!("invalid api key ({status})")),
        429 if is("insufficient_quota") => (
            ErrorKind::QuotaExhausted,
            "quota exhausted (insufficient_quota)".to_string(),
        ),
        429 => (
            ErrorKind::RateLimited { retry_after },
            "rate limited (429)".to_string(),
        ),
        404 if is("model_not_found") || e.kind == "invalid_request_error" && !e.code.is_empty() => {
            (ErrorKind::ModelNotFound, "model not found".to_string())
        }
        404 => (
            ErrorKind::BadRequest(404),
            "not found (404): check the base_url".to_string(),
        ),
        s if s >= 500 => (ErrorKind::Upstream5xx(s), format!("upstream 5xx ({s})")),
        s => {
            let code = if e.code.is_empty() {
                String::new()
            } else {
                format!(": {}", e.code)
            };
            (
                ErrorKind::BadRequest(s),
                format!("request refused ({s}{code})"),
            )
        }
    };
    ProviderError::new(provider, kind, msg)
}

fn transport_error(provider: ProviderName, e: &ureq::Error) -> ProviderError {
    let kind = match e {
        ureq::Error::Timeout(_) => ErrorKind::Timeout,
        ureq::Error::Io(io)
            if io.kind() == std::io::ErrorKind::TimedOut
                || io.kind() == std::io::ErrorKind::WouldBlock =>
        {
            ErrorKind::Timeout
        }
        _ => ErrorKind::Connection,
    };
    let what = if kind == ErrorKind::Timeout {
        "timeout".to_string()
    } else {
        describe_transport_error(e)
    };
    ProviderError::new(provider, kind, what)
}
