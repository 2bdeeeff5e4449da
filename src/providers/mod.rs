//! Providers: the names vel_tutor knows, their key formats, the HTTP agents that reach
//! them, and the live key check. Knows nothing of users, storage or HTTP handlers.

pub mod local;
pub mod mcp;
pub mod openai;
mod resolver;

use crate::config::ProviderConfig;
use std::fmt;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderName {
    OpenAi,
    Groq,
    Perplexity,
    TaskMaster,
    Local,
}

impl ProviderName {
    pub const ALL: [ProviderName; 5] = [
        ProviderName::OpenAi,
        ProviderName::Groq,
        ProviderName::Perplexity,
        ProviderName::TaskMaster,
        ProviderName::Local,
    ];

    pub fn parse(s: &str) -> Option<ProviderName> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderName::OpenAi => "openai",
            ProviderName::Groq => "groq",
            ProviderName::Perplexity => "perplexity",
            ProviderName::TaskMaster => "task_master",
            ProviderName::Local => "local",
        }
    }

    /// OpenAI, Groq and Perplexity speak the OpenAI chat-completions API.
    pub fn is_openai_compatible(self) -> bool {
        matches!(
            self,
            ProviderName::OpenAi | ProviderName::Groq | ProviderName::Perplexity
        )
    }

    /// Whether users can store a key for it (the local provider needs none).
    pub fn takes_keys(self) -> bool {
        self != ProviderName::Local
    }

    /// The provider-specific shape of a key, checked before any network call.
    pub fn check_key_format(self, key: &str) -> Result<(), String> {
        let key = key.trim();
        let (prefix, example) = match self {
            ProviderName::OpenAi => ("sk-", "sk-…"),
            ProviderName::Groq => ("gsk_", "gsk_…"),
            ProviderName::Perplexity => ("pplx-", "pplx-…"),
            ProviderName::TaskMaster if !key.is_empty() => return Ok(()),
            ProviderName::TaskMaster => return Err("task_master keys must not be empty".into()),
            ProviderName::Local => return Err("the local provider takes no key".into()),
        };
        let body_ok = key.len() > prefix.len() + 8
            && key.len() <= 512
            && key.chars().all(|c| c.is_ascii_graphic());
        if key.starts_with(prefix) && body_ok {
            Ok(())
        } else {
            Err(format!(
                "{} keys look like {example} (the prefix {prefix} followed by at least 9 printable characters)",
                self.as_str()
            ))
        }
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a user may see of a key: its first 3–4 and last 4 characters.
pub fn key_hint(key: &str) -> String {
    let chars: Vec<char> = key.trim().chars().collect();
    if chars.len() < 12 {
        return "…".to_string();
    }
    let head = if chars.len() >= 16 { 4 } else { 3 };
    let tail: String = chars[chars.len() - 4..].iter().collect();
    let head: String = chars[..head].iter().collect();
    format!("{head}…{tail}")
}

/// One chat message.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// What a chat completion asks for.
#[derive(Clone, Debug)]
pub struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: &'a [Message],
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
}

/// A finished completion with the provider's usage figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub output: serde_json::Value,
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// What went wrong calling a provider, in the words of SPEC §5.
#[derive(Clone, Debug, PartialEq)]
pub enum ErrorKind {
    InvalidKey,
    ModelNotFound,
    RateLimited {
        retry_after: Option<Duration>,
    },
    QuotaExhausted,
    Upstream5xx(u16),
    Timeout,
    /// Connection refused or reset, or a body cut off.
    Connection,
    /// Any other 4xx: the request itself is wrong.
    BadRequest(u16),
    /// 2xx with a body we cannot read.
    BadResponse,
    /// An MCP tool answered `isError: true`.
    ToolError,
    /// An MCP JSON-RPC error.
    Rpc(i64),
}

/// A provider call's failure: the provider, what kind, and a message safe to show (it
/// never contains the key).
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderError {
    pub provider: ProviderName,
    pub kind: ErrorKind,
    pub message: String,
}

impl ProviderError {
    pub fn new(
        provider: ProviderName,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> ProviderError {
        ProviderError {
            provider,
            kind,
            message: crate::logging::redact(&message.into()),
        }
    }

    /// 5xx, 429, connection resets and timeouts are worth another attempt.
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::RateLimited { .. }
                | ErrorKind::Upstream5xx(_)
                | ErrorKind::Timeout
                | ErrorKind::Connection
        )
    }

    /// Failures that say the provider (not this key or request) is unwell.
    pub fn counts_against_provider(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Upstream5xx(_)
                | ErrorKind::Timeout
                | ErrorKind::Connection
                | ErrorKind::BadResponse
        )
    }

    /// The short outcome label used in usage rows and metrics.
    pub fn outcome(&self) -> &'static str {
        match self.kind {
            ErrorKind::InvalidKey => "invalid_api_key",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::RateLimited { .. } => "rate_limited",
            ErrorKind::QuotaExhausted => "quota_exhausted",
            ErrorKind::Upstream5xx(_) => "upstream_5xx",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::BadRequest(_) => "bad_request",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::ToolError => "tool_error",
            ErrorKind::Rpc(_) => "rpc_error",
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.provider, self.message)
    }
}

/// Why a live key check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// The provider answered and refused the key (→ 422).
    Rejected(String),
    /// The provider could not be reached or answered nonsense (→ 502).
    Unreachable(String),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Rejected(m) | CheckError::Unreachable(m) => f.write_str(m),
        }
    }
}

/// A blocking HTTP agent for one provider: its timeout covers connect + response, up to
/// `pool` idle connections are kept, statuses are values (not errors).
pub fn agent(timeout_ms: u64, pool: u32) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_millis(timeout_ms)))
        .max_idle_connections_per_host(pool as usize)
        .max_idle_connections(pool as usize)
        .user_agent(concat!("vel_tutor/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        resolver::CachingResolver::default(),
    )
}

/// Checks `key` against the live provider at `base_url`: `GET {base_url}/models` for the
/// OpenAI-compatible ones, MCP `initialize` for Task Master. The key never appears in
/// the error.
pub fn check_key(
    provider: ProviderName,
    key: &str,
    base_url: &str,
    cfg: &ProviderConfig,
) -> Result<(), CheckError> {
    // A key check is a small call: it waits at most 15 s even for slow providers.
    let agent = agent(cfg.timeout_ms.min(15_000), 1);
    if provider.is_openai_compatible() {
        openai::check_key(&agent, provider, base_url, key)
    } else if provider == ProviderName::TaskMaster {
        let mut session = mcp::Session::new(&agent, base_url, &cfg.auth_header, key);
        let checked = session.initialize();
        // The check's session is not used again: end it rather than leave it on the server.
        session.close();
        checked.map(|_| ()).map_err(|e| match e {
            mcp::McpError::Unauthorized(m) => {
                CheckError::Rejected(format!("task_master rejected the key: {m}"))
            }
            other => CheckError::Unreachable(format!("task_master: {other}")),
        })
    } else {
        Ok(())
    }
}

/// Whether `url` is an absolute http(s) URL with a host.
pub fn valid_base_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !host.contains(char::is_whitespace) && !host.contains('@')
    }) && url.len() <= 2048
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_formats_per_provider() {
        use ProviderName::*;
        let cases = [
            (OpenAi, "sk-proj-abcdefghijkl", true),
            (OpenAi, "gsk_abcdefghijkl", false),
            (OpenAi, "sk-short", false),
            (Groq, "gsk_abcdefghijkl", true),
            (Groq, "sk-abcdefghijkl", false),
            (Perplexity, "pplx-abcdefghijkl", true),
            (Perplexity, "pplx abcdefghijkl", false),
            (TaskMaster, "anything", true),
            (TaskMaster, "  ", false),
            (OpenAi, "sk-abc def ghijklmn", false),
        ];
        for (p, key, ok) in cases {
            assert_eq!(p.check_key_format(key).is_ok(), ok, "{p} {key:?}");
        }
        let e = Groq.check_key_format("nope").unwrap_err();
        assert!(e.contains("gsk_"), "{e}");
    }

    #[test]
    fn hints_show_only_the_ends() {
        assert_eq!(key_hint("sk-proj-abcdefghijkla1b2"), "sk-p…a1b2");
        assert_eq!(key_hint("gsk_123456789a1b2"), "gsk_…a1b2");
        assert_eq!(key_hint("short-key-1"), "…");
        assert_eq!(key_hint("tm-secret-xyz"), "tm-…-xyz");
    }

    #[test]
    fn base_urls() {
        assert!(valid_base_url("https://api.openai.com/v1"));
        assert!(valid_base_url("http://127.0.0.1:9000/v1"));
        for bad in [
            "ftp://x",
            "https://",
            "api.openai.com",
            "http://user@host/",
            "javascript:alert(1)",
        ] {
            assert!(!valid_base_url(bad), "{bad}");
        }
    }
}
