//! The OpenAI-compatible client (OpenAI, Groq, Perplexity differ only in base URL, models
//! and key format): the key check, and the error body mapping shared with completions.

use super::{ChatRequest, CheckError, Completion, ErrorKind, ProviderError, ProviderName};
use serde_json::Value;
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
    let body = serde_json::to_string(&WireRequest {
        model: req.model,
        messages: req.messages,
        temperature: req.temperature,
        max_tokens: req.max_tokens,
    })
    .map_err(|e| ProviderError::new(provider, ErrorKind::BadResponse, e.to_string()))?;
    let resp = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .send(body);
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

/// The request body of a chat completion.
#[derive(serde::Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [super::Message],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

/// The parts of a completion vel_tutor reads; every other field is skipped unparsed.
#[derive(serde::Deserialize)]
struct WireCompletion {
    model: Option<String>,
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(serde::Deserialize)]
struct WireChoice {
    message: WireMessage,
}

#[derive(serde::Deserialize)]
struct WireMessage {
    content: Option<String>,
}

#[derive(serde::Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// Reads a 2xx completion: typed first (no JSON tree for the fields nobody reads), then,
/// if some field has an unexpected type, leniently through a `Value`.
fn parse_completion(
    provider: ProviderName,
    text: &str,
    asked: &str,
) -> Result<Completion, ProviderError> {
    if let Ok(w) = serde_json::from_str::<WireCompletion>(text)
        && let Some(content) = w.choices.into_iter().next().and_then(|c| c.message.content)
    {
        let usage = w.usage.unwrap_or(WireUsage {
            prompt_tokens: None,
            completion_tokens: None,
        });
        return Ok(Completion {
            output: Value::String(content),
            model: w.model.unwrap_or_else(|| asked.to_string()),
            prompt_tokens: usage.prompt_tokens.unwrap_or(0),
            completion_tokens: usage.completion_tokens.unwrap_or(0),
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI: ProviderName = ProviderName::OpenAi;

    #[test]
    fn a_completion_is_read_with_its_usage_and_model() {
        let body = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-2024-08-06",
            "choices":[{"index":0,"message":{"role":"assistant","content":"42","refusal":null},
            "logprobs":null,"finish_reason":"stop"}],
            "usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13,
            "prompt_tokens_details":{"cached_tokens":0}},"system_fingerprint":"fp"}"#;
        let c = parse_completion(OPENAI, body, "gpt-4o").expect("parsed");
        assert_eq!(c.output, Value::String("42".into()));
        assert_eq!(c.model, "gpt-4o-2024-08-06");
        assert_eq!((c.prompt_tokens, c.completion_tokens), (12, 1));
    }

    #[test]
    fn odd_field_types_fall_back_to_the_lenient_reading() {
        // Token counts as strings and a numeric model: not what the typed reading expects.
        let body = r#"{"model":7,"choices":[{"message":{"content":"hi"}}],
            "usage":{"prompt_tokens":"12","completion_tokens":3}}"#;
        let c = parse_completion(OPENAI, body, "asked-model").expect("parsed");
        assert_eq!(c.output, Value::String("hi".into()));
        assert_eq!(c.model, "asked-model");
        assert_eq!((c.prompt_tokens, c.completion_tokens), (0, 3));
        // No usage at all: zero tokens, the model asked for.
        let c = parse_completion(OPENAI, r#"{"choices":[{"message":{"content":"x"}}]}"#, "m")
            .expect("parsed");
        assert_eq!((c.model.as_str(), c.prompt_tokens), ("m", 0));
    }

    #[test]
    fn a_completion_without_content_is_a_bad_response() {
        for body in [
            r#"{"choices":[]}"#,
            r#"{"choices":[{"message":{"content":null,"tool_calls":[]}}]}"#,
            "not json",
        ] {
            let e = parse_completion(OPENAI, body, "m").expect_err(body);
            assert_eq!(e.kind, ErrorKind::BadResponse, "{body}");
        }
    }
}
