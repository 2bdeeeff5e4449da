//! Plain domain values shared by storage, the domain services and the handlers: users,
//! roles, personal tokens and audit events. No I/O, no SQL, no HTTP.

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

/// A user as the API shows it: never a hash.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub created_at: String,
}

/// A personal API token's public face (the secret itself is shown once, at creation).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    /// The first characters of the token (`vt_abcd`), so users can tell tokens apart.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// A user's stored provider key as the API shows it: a hint, never the key.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Integration {
    pub provider: String,
    pub key_hint: String,
    pub base_url: Option<String>,
    pub validated_at: String,
    pub updated_at: String,
}

/// Who did something and from where: attached to every audit row.
#[derive(Clone, Debug, Default)]
pub struct Actor {
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// One audit row. Security events have an `action` like `auth.login_failed`; per-request
/// rows have action `request` and the method/route/status/duration fields.
#[derive(Clone, Debug, Default)]
pub struct AuditEvent {
    pub action: String,
    pub actor: Actor,
    pub method: Option<String>,
    pub route: Option<String>,
    pub status: Option<u16>,
    pub duration_ms: Option<f64>,
    /// Extra facts (`target`, `provider`, …). Never a password, token or key.
    pub detail: Option<Value>,
}

impl AuditEvent {
    pub fn security(action: &str, actor: &Actor, detail: Option<Value>) -> AuditEvent {
        AuditEvent {
            action: action.to_string(),
            actor: actor.clone(),
            detail,
            ..AuditEvent::default()
        }
    }
}

/// An audit row as read back.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub created_at: String,
    pub action: String,
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub method: Option<String>,
    pub route: Option<String>,
    pub status: Option<i64>,
    pub duration_ms: Option<f64>,
    pub detail: Option<Value>,
}

/// Filters for reading the audit log, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub user_id: Option<String>,
    pub action: Option<String>,
    pub since: Option<String>,
    /// Only rows with an id below this (the cursor of the previous page).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// An agent: a provider (or `auto`), a model, a prompt and a kind of work.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Agent {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub kind: String,
    pub provider: String,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub fallback: bool,
    pub tool: Option<String>,
    pub arguments: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// One provider call as accounted in `usage_events`.
#[derive(Clone, Debug, Default)]
pub struct UsageEvent {
    pub user_id: Option<String>,
    pub agent_id: Option<String>,
    pub task_id: Option<String>,
    pub provider: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub latency_ms: u64,
    /// `ok`, or the error kind (`timeout`, `upstream_5xx`, …).
    pub outcome: String,
    pub key_source: Option<String>,
}

/// A row for the background writer: batched, flushed before reads and at shutdown.
#[derive(Clone, Debug)]
pub enum Record {
    Audit(AuditEvent),
    Usage(UsageEvent),
}

/// Usage summed per provider and model.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UsageTotal {
    pub provider: String,
    pub model: String,
    pub calls: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}
