//! /api/agents: CRUD of the caller's agents (admins see all), `/test` (one tiny real call
//! with the key that would be used now) and `/chat` (a synchronous completion or tool call).

use super::Ctx;
use crate::app::App;
use crate::config::decl::KINDS;
use crate::http::{ApiError, ErrorCode, Resp};
use crate::model::Agent;
use crate::orchestrator::{RunOpts, Unserved, Work};
use crate::providers::{Message, ProviderName};
use crate::storage::StorageError;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The body of POST and PATCH: every field optional here; POST requires name and kind.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AgentBody {
    name: Option<String>,
    kind: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    system_prompt: Option<String>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    fallback: Option<bool>,
    tool: Option<String>,
    arguments: Option<Value>,
}

impl AgentBody {
    fn apply(self, a: &mut Agent) {
        let trim = |s: String| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        if let Some(v) = self.name {
            a.name = v.trim().to_string();
        }
        if let Some(v) = self.kind {
            a.kind = v;
        }
        if let Some(v) = self.provider {
            a.provider = v;
        }
        if let Some(v) = self.model {
            a.model = trim(v);
        }
        if let Some(v) = self.system_prompt {
            a.system_prompt = Some(v).filter(|s| !s.is_empty());
        }
        if self.temperature.is_some() {
            a.temperature = self.temperature;
        }
        if self.max_tokens.is_some() {
            a.max_tokens = self.max_tokens;
        }
        if let Some(v) = self.fallback {
            a.fallback = v;
        }
        if let Some(v) = self.tool {
            a.tool = trim(v);
        }
        if self.arguments.is_some() {
            a.arguments = self.arguments.filter(|v| !v.is_null());
        }
    }
}

fn validate(a: &Agent) -> Result<(), ApiError> {
    let n = a.name.chars().count();
    if n == 0 || n > 200 {
        return Err(ApiError::invalid(
            "name",
            "name must be 1 to 200 characters",
        ));
    }
    if !KINDS.contains(&a.kind.as_str()) {
        return Err(ApiError::invalid(
            "kind",
            format!("kind must be one of {}", KINDS.join(", ")),
        ));
    }
    if a.provider != "auto" && ProviderName::parse(&a.provider).is_none() {
        return Err(ApiError::invalid(
            "provider",
            "provider must be auto, openai, groq, perplexity, task_master or local",
        ));
    }
    if a.model.as_ref().is_some_and(|m| m.chars().count() > 200) {
        return Err(ApiError::invalid(
            "model",
            "model must be at most 200 characters",
        ));
    }
    if a.system_prompt.as_ref().is_some_and(|s| s.len() > 100_000) {
        return Err(ApiError::invalid(
            "system_prompt",
            "system_prompt must be at most 100000 bytes",
        ));
    }
    if a.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(ApiError::invalid(
            "temperature",
            "temperature must be between 0 and 2",
        ));
    }
    if a.max_tokens.is_some_and(|m| m == 0 || m > 1_000_000) {
        return Err(ApiError::invalid(
            "max_tokens",
            "max_tokens must be between 1 and 1000000",
        ));
    }
    if a.arguments.as_ref().is_some_and(|v| !v.is_object()) {
        return Err(ApiError::invalid(
            "arguments",
            "arguments must be a JSON object",
        ));
    }
    if a.kind == "tool" {
        if a.tool.is_none() {
            return Err(ApiError::invalid(
                "tool",
                "an agent of kind tool names its MCP tool",
            ));
        }
        if !matches!(a.provider.as_str(), "auto" | "task_master") {
            return Err(ApiError::invalid(
                "provider",
                "tool agents run on task_master",
            ));
        }
    } else if a.tool.is_some() || a.arguments.is_some() {
        return Err(ApiError::invalid(
            "tool",
            "tool and arguments are only for agents of kind tool",
        ));
    }
    Ok(())
}

/// The caller's own agent, or any for admins; 404 otherwise (ids cannot be probed).
fn load(app: &App, ctx: &Ctx<'_>) -> Result<Agent, ApiError> {
    app.storage
        .agent(ctx.req.param("id"), owner_scope(ctx)?)?
        .ok_or_else(|| ApiError::not_found("no such agent"))
}

/// The owner to filter by: the caller, or nobody (all agents) for admins.
fn owner_scope<'a>(ctx: &'a Ctx<'_>) -> Result<Option<&'a str>, ApiError> {
    let caller = ctx.caller()?;
    Ok((!caller.is_admin()).then_some(caller.user.id.as_str()))
}

pub fn create(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let caller = ctx.caller()?;
    let body: AgentBody = ctx.req.json()?;
    if body.name.is_none() {
        return Err(ApiError::invalid("name", "name is required"));
    }
    if body.kind.is_none() {
        return Err(ApiError::invalid(
            "kind",
            format!("kind is required: one of {}", KINDS.join(", ")),
        ));
    }
    let mut a = Agent {
        id: String::new(),
        user_id: caller.user.id.clone(),
        name: String::new(),
        kind: String::new(),
        provider: "auto".into(),
        model: None,
        system_prompt: None,
        temperature: None,
        max_tokens: None,
        fallback: true,
        tool: None,
        arguments: None,
        created_at: String::new(),
        updated_at: String::new(),
    };
    body.apply(&mut a);
    validate(&a)?;
    Ok(Resp::json(201, &app.storage.create_agent(&a)?))
}

pub fn list(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let limit = super::params::page_limit(ctx, 500)?;
    let agents = app.storage.list_agents(owner_scope(ctx)?, limit)?;
    Ok(Resp::json(200, &json!({ "agents": agents })))
}

pub fn get(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    Ok(Resp::json(200, &load(app, ctx)?))
}

pub fn update(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let mut a = load(app, ctx)?;
    let body: AgentBody = ctx.req.json()?;
    body.apply(&mut a);
    validate(&a)?;
    let saved = app
        .storage
        .update_agent(&a, owner_scope(ctx)?)
        .map_err(|e| match e {
            StorageError::NotFound => ApiError::not_found("no such agent"),
            other => other.into(),
        })?;
    Ok(Resp::json(200, &saved))
}

pub fn delete(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    match app
        .storage
        .delete_agent(ctx.req.param("id"), owner_scope(ctx)?)
    {
        Ok(()) => Ok(Resp::empty(204)),
        Err(StorageError::NotFound) => Err(ApiError::not_found("no such agent")),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatBody {
    messages: Option<Vec<Message>>,
    arguments: Option<Value>,
    max_tokens: Option<u32>,
}

/// The error for a request no provider served: 502 when one was called and failed,
/// 503 when none could even be tried; each provider listed with its reason.
fn unserved(u: &Unserved) -> ApiError {
    let code = if u.any_called() {
        ErrorCode::ProviderError
    } else {
        ErrorCode::ProviderUnavailable
    };
    let mut e = ApiError::new(
        code,
        format!("no provider could serve this request: {}", u.summary()),
    );
    let list: Vec<Value> = u
        .refusals
        .iter()
        .map(|r| json!({ "provider": r.provider.as_str(), "reason": r.reason, "called": r.called }))
        .collect();
    e.extra.insert("providers".into(), Value::Array(list));
    if !u.any_called() {
        e.headers.push(("Retry-After".into(), "30".into()));
    }
    e
}

/// Merges the request's arguments over the agent's defaults (top-level keys).
fn merged_arguments(agent: &Agent, given: Option<Value>) -> Result<Value, ApiError> {
    let mut out: Map<String, Value> = agent
        .arguments
        .as_ref()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    match given {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => out.extend(m),
        Some(_) => {
            return Err(ApiError::invalid(
                "arguments",
                "arguments must be a JSON object",
            ));
        }
    }
    Ok(Value::Object(out))
}

fn check_messages(messages: &[Message]) -> Result<(), ApiError> {
    if messages.is_empty() || messages.len() > 1000 {
        return Err(ApiError::invalid(
            "messages",
            "messages must hold 1 to 1000 messages",
        ));
    }
    if let Some(m) = messages
        .iter()
        .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
    {
        return Err(ApiError::invalid(
            "messages",
            format!("role {:?} is not system, user or assistant", m.role),
        ));
    }
    Ok(())
}

pub fn chat(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let caller = ctx.caller()?;
    let agent = load(app, ctx)?;
    let body: ChatBody = ctx.req.json()?;
    let messages = body.messages.unwrap_or_default();
    let work = if agent.kind == "tool" {
        Work::Tool {
            arguments: merged_arguments(&agent, body.arguments)?,
        }
    } else {
        check_messages(&messages)?;
        if body.max_tokens.is_some_and(|m| m == 0 || m > 1_000_000) {
            return Err(ApiError::invalid(
                "max_tokens",
                "max_tokens must be between 1 and 1000000",
            ));
        }
        Work::Chat {
            messages: &messages,
            max_tokens: body.max_tokens,
        }
    };
    let opts = RunOpts {
        fallback: true,
        attempts: None,
    };
    let served = app
        .orchestrator
        .run(app, &caller.user.id, &agent, &work, opts)
        .map_err(|u| with_overhead(unserved(&u), ctx, u.upstream))?;
    let c = &served.completion;
    let mut out = json!({
        "output": c.output,
        "provider": served.provider.as_str(),
        "model": c.model,
        "usage": { "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens },
        "cost_usd": served.cost_usd,
        "latency_ms": served.latency.as_millis() as u64,
    });
    if let Some(f) = served.fallback_from {
        out["fallback_from"] = json!(f.as_str());
    }
    Ok(Resp::json(200, &out).with_header("x-vel-overhead-ms", overhead(ctx, served.upstream)))
}

/// vel_tutor's own time on this request so far: everything but the upstream calls.
fn overhead(ctx: &Ctx<'_>, upstream: std::time::Duration) -> String {
    let own = ctx.started.elapsed().saturating_sub(upstream);
    format!("{:.3}", own.as_secs_f64() * 1000.0)
}

fn with_overhead(e: ApiError, ctx: &Ctx<'_>, upstream: std::time::Duration) -> ApiError {
    e.with_header("x-vel-overhead-ms", overhead(ctx, upstream))
}

/// One tiny real call on the provider that would serve the agent now (no fallback, no
/// retries): a one-token chat, or for tool agents the MCP tool list.
pub fn test(app: &App, ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    let caller = ctx.caller()?;
    let agent = load(app, ctx)?;
    let ping = [Message {
        role: "user".into(),
        content: "ping".into(),
    }];
    let work = if agent.kind == "tool" {
        Work::ListTools
    } else {
        Work::Chat {
            messages: &ping,
            max_tokens: Some(1),
        }
    };
    let opts = RunOpts {
        fallback: false,
        attempts: Some(1),
    };
    match app
        .orchestrator
        .run(app, &caller.user.id, &agent, &work, opts)
    {
        Ok(s) => {
            if let (Work::ListTools, Some(tool)) = (&work, &agent.tool) {
                let offered = s
                    .completion
                    .output
                    .as_array()
                    .is_some_and(|a| a.iter().any(|t| t == tool));
                if !offered {
                    let e = ApiError::new(
                        ErrorCode::ProviderError,
                        format!("{} does not offer the tool {tool}", s.provider),
                    );
                    return Err(e);
                }
            }
            let body = json!({
                "ok": true,
                "provider": s.provider.as_str(),
                "model": s.completion.model,
                "latency_ms": s.latency.as_millis() as u64,
            });
            Ok(Resp::json(200, &body).with_header("x-vel-overhead-ms", overhead(ctx, s.upstream)))
        }
        Err(u) => {
            let mut e = unserved(&u);
            e.code = ErrorCode::ProviderError;
            e.headers.retain(|(k, _)| k != "Retry-After");
            Err(with_overhead(e, ctx, u.upstream))
        }
    }
}
