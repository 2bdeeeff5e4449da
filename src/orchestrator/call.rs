//! One call to one provider: a chat completion (OpenAI-compatible or local) or an MCP
//! tool call, with MCP failures mapped to provider errors. No retries, no accounting here.

use super::{Orchestrator, Work};
use crate::app::App;
use crate::integrations::ResolvedKey;
use crate::model::Agent;
use crate::providers::{
    self, ChatRequest, Completion, ErrorKind, Message, ProviderError, ProviderName, local, mcp,
};
use serde_json::json;

impl Orchestrator {
    /// One call to one provider.
    pub(super) fn call(
        &self,
        app: &App,
        p: ProviderName,
        key: &ResolvedKey,
        model: &str,
        agent: &Agent,
        work: &Work<'_>,
    ) -> Result<Completion, ProviderError> {
        match work {
            Work::Chat {
                messages,
                max_tokens,
            } => {
                let mut all: Vec<Message> = Vec::with_capacity(messages.len() + 1);
                if let Some(sp) = agent.system_prompt.as_ref().filter(|s| !s.is_empty()) {
                    all.push(Message {
                        role: "system".into(),
                        content: sp.clone(),
                    });
                }
                all.extend(messages.iter().cloned());
                let max_tokens = max_tokens.or(agent.max_tokens);
                if p == ProviderName::Local {
                    return Ok(local::complete(&all, max_tokens));
                }
                if p == ProviderName::TaskMaster {
                    return Err(ProviderError::new(
                        p,
                        ErrorKind::BadRequest(400),
                        "task_master runs tools, not chats (use an agent of kind tool)",
                    ));
                }
                let req = ChatRequest {
                    model,
                    messages: &all,
                    temperature: agent.temperature,
                    max_tokens,
                };
                providers::openai::chat(&self.clients[&p], p, &key.base_url, key.key.expose(), &req)
            }
            Work::ListTools => {
                let tools = self.with_mcp(app, p, key, |s| s.list_tools())?;
                Ok(Completion {
                    output: json!(tools),
                    model: "tools/list".into(),
                    prompt_tokens: 0,
                    completion_tokens: 0,
                })
            }
            Work::Tool { arguments } => {
                let tool = agent.tool.as_deref().unwrap_or("");
                let result = self.with_mcp(app, p, key, |s| s.call_tool(tool, arguments))?;
                if result.is_error {
                    return Err(ProviderError::new(
                        p,
                        ErrorKind::ToolError,
                        format!("tool {tool} failed: {}", result.text),
                    ));
                }
                Ok(Completion {
                    output: result.output(),
                    model: tool.to_string(),
                    prompt_tokens: 0,
                    completion_tokens: 0,
                })
            }
        }
    }

    /// Runs `f` on a pooled MCP session with the provider, which must speak MCP.
    fn with_mcp<T>(
        &self,
        app: &App,
        p: ProviderName,
        key: &ResolvedKey,
        f: impl FnOnce(&mut mcp::Session) -> Result<T, mcp::McpError>,
    ) -> Result<T, ProviderError> {
        if p != ProviderName::TaskMaster {
            return Err(ProviderError::new(
                p,
                ErrorKind::BadRequest(400),
                format!("{p} cannot run MCP tools"),
            ));
        }
        let cfg = &app.config.providers[p.as_str()];
        self.mcp_sessions
            .with(
                &self.clients[&p],
                &key.base_url,
                &cfg.auth_header,
                key.key.expose(),
                f,
            )
            .map_err(|e| mcp_error(p, e))
    }
}

fn mcp_error(p: ProviderName, e: mcp::McpError) -> ProviderError {
    use mcp::McpError as M;
    match e {
        M::Unauthorized(m) => {
            ProviderError::new(p, ErrorKind::InvalidKey, format!("invalid api key ({m})"))
        }
        M::Timeout => ProviderError::new(p, ErrorKind::Timeout, "timeout"),
        M::Transport(m) => ProviderError::new(p, ErrorKind::Connection, m),
        M::Protocol(m) => ProviderError::new(p, ErrorKind::BadResponse, m),
        M::Rpc { code, message } => ProviderError::new(
            p,
            ErrorKind::Rpc(code),
            format!("JSON-RPC error {code}: {message}"),
        ),
    }
}
