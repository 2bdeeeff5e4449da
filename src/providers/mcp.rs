//! An MCP client over the Streamable HTTP transport (SPEC §5): JSON-RPC over POST, plain
//! JSON or SSE-framed replies, optional `Mcp-Session-Id`, one re-initialize on a lost
//! session, and a pool that reuses sessions across calls and ends them with `DELETE`.

use super::openai::describe_transport_error;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const PROTOCOL_VERSION: &str = "2025-03-26";
/// Largest reply read (a tool result can be big; a runaway stream is cut off here).
const MAX_REPLY_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum McpError {
    /// 401/403: the key was refused.
    Unauthorized(String),
    /// Could not reach the server, or the connection broke.
    Transport(String),
    /// No answer within the timeout.
    Timeout,
    /// The reply was not the JSON-RPC we asked for.
    Protocol(String),
    /// A JSON-RPC error object.
    Rpc { code: i64, message: String },
}

impl fmt::Display for McpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            McpError::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            McpError::Transport(m) => write!(f, "{m}"),
            McpError::Timeout => write!(f, "timeout"),
            McpError::Protocol(m) => write!(f, "protocol error: {m}"),
            McpError::Rpc { code, message } => write!(f, "JSON-RPC error {code}: {message}"),
        }
    }
}

/// A tool's result: `content[].text` joined, and whether the tool reported an error.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub text: String,
    pub is_error: bool,
}

impl ToolResult {
    /// The text parsed as JSON when it is JSON, else the text as a string.
    pub fn output(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| Value::String(self.text.clone()))
    }
}

fn transport(e: &ureq::Error) -> McpError {
    match e {
        ureq::Error::Timeout(_) => McpError::Timeout,
        other => McpError::Transport(describe_transport_error(other)),
    }
}

/// One client session with an MCP server.
pub struct Session {
    agent: ureq::Agent,
    url: String,
    auth_header: String,
    key: Zeroizing<String>,
    session_id: Option<String>,
    next_id: u64,
    initialized: bool,
}

impl Session {
    pub fn new(agent: &ureq::Agent, url: &str, auth_header: &str, key: &str) -> Session {
        Session {
            agent: agent.clone(),
            url: url.to_string(),
            auth_header: auth_header.to_ascii_lowercase(),
            key: Zeroizing::new(key.to_string()),
            session_id: None,
            next_id: 1,
            initialized: false,
        }
    }

    /// The id the server gave this session, if any.
    pub fn id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Ends the session on the server (`DELETE` with its id, as the transport asks of a
    /// client done with a session; bridges otherwise keep each one for up to 30 minutes).
    /// Best effort, waiting at most 2 s: a server that is gone forgets it anyway.
    pub fn close(self) {
        self.close_within(Duration::from_secs(2));
    }

    fn close_within(self, wait: Duration) {
        let Some(sid) = &self.session_id else { return };
        let req = self
            .agent
            .delete(&self.url)
            .config()
            .timeout_global(Some(wait))
            .build()
            .header("Mcp-Session-Id", sid);
        let req = if self.auth_header == "authorization" {
            req.header("Authorization", &format!("Bearer {}", self.key.as_str()))
        } else if !self.auth_header.is_empty() {
            req.header(&self.auth_header, self.key.as_str())
        } else {
            req
        };
        if let Err(e) = req.call() {
            log::debug!("mcp: ending session failed: {}", transport(&e));
        }
    }

    /// `initialize` then `notifications/initialized`; keeps the session id if one is given.
    pub fn initialize(&mut self) -> Result<Value, McpError> {
        self.session_id = None;
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "vel_tutor", "version": env!("CARGO_PKG_VERSION")},
        });
        let result = self.rpc("initialize", params)?;
        self.notify("notifications/initialized")?;
        self.initialized = true;
        Ok(result)
    }

    /// Calls `method`, initializing first if needed; a lost session (400/404 on a request
    /// that carried a session id) is re-initialized once and the call retried.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, McpError> {
        if !self.initialized {
            self.initialize()?;
        }
        match self.rpc(method, params.clone()) {
            Err(McpError::Protocol(m)) if m.starts_with("session lost") => {
                self.initialize()?;
                self.rpc(method, params)
            }
            other => other,
        }
    }

    pub fn list_tools(&mut self) -> Result<Vec<String>, McpError> {
        let r = self.call("tools/list", json!({}))?;
        Ok(r["tools"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub fn call_tool(&mut self, name: &str, arguments: &Value) -> Result<ToolResult, McpError> {
        let r = self.call("tools/call", json!({"name": name, "arguments": arguments}))?;
        let text = r["content"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|c| c["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        Ok(ToolResult {
            text,
            is_error: r["isError"].as_bool().unwrap_or(false),
        })
    }

    fn request(&self) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        req = if self.auth_header == "authorization" {
            req.header("Authorization", &format!("Bearer {}", self.key.as_str()))
        } else if !self.auth_header.is_empty() {
            req.header(&self.auth_header, self.key.as_str())
        } else {
            req
        };
        if let Some(sid) = &self.session_id {
            req = req.header("Mcp-Session-Id", sid);
        }
        req
    }

    fn notify(&self, method: &str) -> Result<(), McpError> {
        let body = json!({"jsonrpc": "2.0", "method": method});
        let resp = self
            .request()
            .send(body.to_string())
            .map_err(|e| transport(&e))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(McpError::Unauthorized(format!(
                "{} on {method}",
                resp.status().as_u16()
            ))),
            s => Err(McpError::Protocol(format!("{method} answered {s}"))),
        }
    }

    fn rpc(&mut self, method: &str, params: Value) -> Result<Value, McpError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let had_session = self.session_id.is_some();
        let mut resp = self
            .request()
            .send(body.to_string())
            .map_err(|e| transport(&e))?;
        let status = resp.status().as_u16();
        let sid = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok());
        if let (true, Some(sid)) = (method == "initialize", sid) {
            self.session_id = Some(sid.to_string());
        }
        match status {
            200..=299 => {}
            401 | 403 => return Err(McpError::Unauthorized(format!("{status} on {method}"))),
            400 | 404 if had_session && method != "initialize" => {
                return Err(McpError::Protocol(format!("session lost ({status})")));
            }
            s => return Err(McpError::Protocol(format!("{method} answered {s}"))),
        }
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        let reader = resp
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .reader();
        let reply = if sse {
            read_sse_reply(BufReader::new(reader), id)?
        } else {
            let v: Value = serde_json::from_reader(reader)
                .map_err(|e| McpError::Protocol(format!("reply is not JSON: {e}")))?;
            find_reply(v, id).ok_or_else(|| McpError::Protocol(format!("no reply with id {id}")))?
        };
        if let Some(err) = reply.get("error") {
            return Err(McpError::Rpc {
                code: err["code"].as_i64().unwrap_or(0),
                message: err["message"].as_str().unwrap_or("").to_string(),
            });
        }
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    }
}

/// One server and key's idle sessions, each with the end of its last call.
type IdleSessions = Vec<(Session, Instant)>;

/// Idle sessions kept for reuse, per server URL, key header and key (hashed): a call takes
/// the most recent one or opens a new one, and gives it back while it is still good. This
/// saves the `initialize` round trips on every call after the first, and bounds the
/// sessions vel_tutor leaves on a server; the ones it does not keep are ended (`DELETE`).
pub struct SessionPool {
    idle: Mutex<HashMap<[u8; 32], IdleSessions>>,
    max_idle: usize,
    max_age: Duration,
}

impl SessionPool {
    /// At most `max_idle` idle sessions per server and key, each reused for at most
    /// `max_age` after its last call (well under the 30 minutes bridges keep them).
    pub fn new(max_idle: usize, max_age: Duration) -> SessionPool {
        SessionPool {
            idle: Mutex::new(HashMap::new()),
            max_idle,
            max_age,
        }
    }

    fn slot(url: &str, auth_header: &str, key: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [url, auth_header, key] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    /// Runs `f` on a session for this server and key. A session comes back to the pool
    /// after a success or a JSON-RPC error (it still works); after a bad reply it is
    /// ended, after a transport, timeout or auth failure dropped. A server that gives no
    /// session id gets a fresh `initialize` per call, as nothing ties its calls together.
    pub fn with<T>(
        &self,
        agent: &ureq::Agent,
        url: &str,
        auth_header: &str,
        key: &str,
        f: impl FnOnce(&mut Session) -> Result<T, McpError>,
    ) -> Result<T, McpError> {
        let slot = Self::slot(url, &auth_header.to_ascii_lowercase(), key);
        let (reused, stale) = self.take(&slot);
        close_in_background(stale);
        let mut session = reused.unwrap_or_else(|| Session::new(agent, url, auth_header, key));
        let result = f(&mut session);
        match &result {
            Ok(_) | Err(McpError::Rpc { .. }) if session.id().is_some() => {
                self.give_back(slot, session)
            }
            // The server answered, but not as it should: end the session there.
            Err(McpError::Protocol(_)) => close_in_background(vec![session]),
            // Unreachable, too slow or refusing the key: nothing to tell it.
            _ => {}
        }
        result
    }

    /// The newest idle session of `slot`, and the ones too old to use (to be closed).
    fn take(&self, slot: &[u8; 32]) -> (Option<Session>, Vec<Session>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(list) = idle.get_mut(slot) else {
            return (None, Vec::new());
        };
        let stale = self.remove_stale(list, Instant::now());
        let reused = list.pop().map(|(s, _)| s);
        if list.is_empty() {
            idle.remove(slot);
        }
        (reused, stale)
    }

    /// Takes the sessions idle longer than `max_age` out of `list`.
    fn remove_stale(&self, list: &mut IdleSessions, now: Instant) -> Vec<Session> {
        let (fresh, stale): (Vec<_>, Vec<_>) = list
            .drain(..)
            .partition(|(_, since)| now.duration_since(*since) < self.max_age);
        *list = fresh;
        stale.into_iter().map(|(s, _)| s).collect()
    }

    fn give_back(&self, slot: [u8; 32], session: Session) {
        let overflow = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let list = idle.entry(slot).or_default();
            list.push((session, Instant::now()));
            if list.len() > self.max_idle {
                Some(list.remove(0).0)
            } else {
                None
            }
        };
        close_in_background(overflow.into_iter().collect());
    }

    /// Ends the sessions idle longer than `max_age`, whichever server and key they are
    /// for (a key deleted or replaced is never asked for again, so without this its
    /// sessions, and the key in them, would stay until shutdown). Returns how many.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let stale: Vec<Session> = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let mut stale = Vec::new();
            for list in idle.values_mut() {
                stale.extend(self.remove_stale(list, now));
            }
            idle.retain(|_, list| !list.is_empty());
            stale
        };
        let n = stale.len();
        stale.into_iter().for_each(Session::close);
        n
    }

    /// Idle sessions now held, over all servers and keys.
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.values().map(Vec::len).sum()
    }

    /// Ends every idle session (at shutdown), giving up after `within` in all: the
    /// sessions not ended by then are left for their servers to reap.
    pub fn close_all(&self, within: Duration) {
        let all: Vec<Session> = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            idle.drain().flat_map(|(_, l)| l).map(|(s, _)| s).collect()
        };
        let deadline = Instant::now() + within;
        for s in all {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s.close_within(left.min(Duration::from_secs(2)));
        }
    }
}

/// Ends `sessions` on a thread of their own, so that no request waits for a `DELETE`
/// (a hung server would hold it for the whole close timeout).
fn close_in_background(sessions: Vec<Session>) {
    if sessions.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("mcp-close".into())
        .spawn(move || sessions.into_iter().for_each(Session::close));
    if let Err(e) = spawned {
        log::warn!("mcp: could not start a thread to end idle sessions: {e}");
    }
}

/// The reply with `id` in a JSON body: the object itself or one element of a batch.
fn find_reply(v: Value, id: u64) -> Option<Value> {
    match v {
        Value::Array(items) => items.into_iter().find(|m| m["id"] == json!(id)),
        m if m["id"] == json!(id) => Some(m),
        _ => None,
    }
}

/// Reads SSE events until the one whose JSON-RPC `id` matches; notifications and other
/// messages before it are skipped. Stops reading as soon as it is found.
fn read_sse_reply(reader: impl BufRead, id: u64) -> Result<Value, McpError> {
    let mut data = String::new();
    for line in reader.lines() {
        let line = line
            .map_err(|e| McpError::Transport(format!("reading the event stream: {}", e.kind())))?;
        let line = line.trim_end_matches('\r');
        if let Some(d) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        } else if line.is_empty() && !data.is_empty() {
            if let Some(reply) = serde_json::from_str(&data)
                .ok()
                .and_then(|v| find_reply(v, id))
            {
                return Ok(reply);
            }
            data.clear();
        }
    }
    if let Some(reply) = serde_json::from_str(&data)
        .ok()
        .and_then(|v| find_reply(v, id))
    {
        return Ok(reply);
    }
    Err(McpError::Protocol(format!(
        "the event stream ended without a reply to id {id}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_skips_notifications_until_the_matching_id() {
        let stream = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\n\r\n\
                      data: {\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{}}\n\n\
                      data: {\"jsonrpc\":\"2.0\",\n\
                      data: \"id\":7,\"result\":{\"ok\":true}}\n\n\
                      data: never read\n\n";
        let r = read_sse_reply(stream.as_bytes(), 7).unwrap();
        assert_eq!(r["result"]["ok"], true);
        assert!(matches!(
            read_sse_reply("data: {}\n\n".as_bytes(), 1),
            Err(McpError::Protocol(_))
        ));
    }

    #[test]
    fn tool_text_is_json_when_it_can_be() {
        let t = ToolResult {
            text: "{\"data\":{\"n\":1}}".into(),
            is_error: false,
        };
        assert_eq!(t.output()["data"]["n"], 1);
        let t = ToolResult {
            text: "Error: nope".into(),
            is_error: true,
        };
        assert_eq!(t.output(), json!("Error: nope"));
    }
}
