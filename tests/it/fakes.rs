//! Fake upstreams inside the test process on 127.0.0.1: an OpenAI-compatible API and an
//! MCP Streamable HTTP server, each with scripted behaviour and a record of requests.

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake does with one request.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// Answer normally.
    Ok,
    /// Answer with this status and body.
    Status(u16, String),
    /// A 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// OpenAI's `insufficient_quota` 429.
    InsufficientQuota,
    /// Wait, then behave.
    Delay(Duration, Box<Behavior>),
    /// Send headers and half a body, then drop the connection.
    DropMidBody,
    /// Never answer (until the fake is dropped).
    Hang,
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct State {
    pub valid_keys: Mutex<Vec<String>>,
    pub script: Mutex<VecDeque<Behavior>>,
    pub seen: Mutex<Vec<Seen>>,
    /// MCP: live session ids; `lose_sessions` empties it.
    pub sessions: Mutex<Vec<String>>,
    /// MCP: answer initialize without a session id.
    pub stateless: AtomicBool,
    /// MCP: frame replies as SSE (with a notification first).
    pub sse: AtomicBool,
    stop: AtomicBool,
}

impl State {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn push(&self, b: Behavior) {
        self.script.lock().unwrap().push_back(b);
    }
    fn next(&self) -> Behavior {
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Behavior::Ok)
    }
    fn key_ok(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| self.valid_keys.lock().unwrap().iter().any(|k| k == p))
    }
}

pub struct Fake {
    pub url: String,
    pub state: Arc<State>,
    server: Arc<tiny_http::Server>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
    }
}

type Route = fn(&State, &Seen) -> (u16, Vec<(String, String)>, String);

fn spawn(state: Arc<State>, route: Route, suffix: &str) -> Fake {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    for _ in 0..8 {
        let (server, state) = (server.clone(), state.clone());
        std::thread::spawn(move || {
            while !state.stop.load(Ordering::SeqCst) {
                let Ok(Some(mut rq)) = server.recv_timeout(Duration::from_millis(100)) else {
                    continue;
                };
                let mut body = String::new();
                let _ = rq.as_reader().read_to_string(&mut body);
                let seen = Seen {
                    method: rq.method().as_str().to_string(),
                    path: rq.url().to_string(),
                    headers: rq
                        .headers()
                        .iter()
                        .map(|h| {
                            (
                                h.field.as_str().as_str().to_string(),
                                h.value.as_str().to_string(),
                            )
                        })
                        .collect(),
                    body,
                };
                state.seen.lock().unwrap().push(seen.clone());
                let mut behavior = state.next();
                while let Behavior::Delay(d, then) = behavior {
                    std::thread::sleep(d);
                    behavior = *then;
                }
                let (status, headers, body) = match behavior {
                    Behavior::Ok | Behavior::Delay(..) => route(&state, &seen),
                    Behavior::Status(s, b) => (s, vec![], b),
                    Behavior::RateLimited(secs) => (
                        429,
                        vec![("Retry-After".into(), secs.to_string())],
                        openai_error(
                            "Rate limit reached for requests",
                            "requests",
                            "rate_limit_exceeded",
                        ),
                    ),
                    Behavior::InsufficientQuota => (
                        429,
                        vec![],
                        openai_error(
                            "You exceeded your current quota, please check your plan and billing details.",
                            "insufficient_quota",
                            "insufficient_quota",
                        ),
                    ),
                    Behavior::DropMidBody => {
                        let mut w = rq.into_writer();
                        let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\":\"chatcmpl-");
                        let _ = w.flush();
                        continue;
                    }
                    Behavior::Hang => {
                        while !state.stop.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        continue;
                    }
                };
                let mut resp = tiny_http::Response::from_string(body).with_status_code(status);
                let mut has_ct = false;
                for (k, v) in headers {
                    has_ct |= k.eq_ignore_ascii_case("content-type");
                    resp.add_header(
                        tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap(),
                    );
                }
                if !has_ct {
                    resp.add_header(
                        tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"application/json"[..],
                        )
                        .unwrap(),
                    );
                }
                let _ = rq.respond(resp);
            }
        });
    }
    Fake {
        url: format!("http://127.0.0.1:{port}{suffix}"),
        state,
        server,
    }
}

/// OpenAI's error body shape.
pub fn openai_error(message: &str, kind: &str, code: &str) -> String {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string()
}

/// An OpenAI-compatible API at `{url}` (= base_url, ending in /v1) accepting `keys`.
pub fn openai(keys: &[&str]) -> Fake {
    let state = Arc::new(State::default());
    *state.valid_keys.lock().unwrap() = keys.iter().map(|k| k.to_string()).collect();
    spawn(state, openai_route, "/v1")
}

fn openai_route(state: &State, req: &Seen) -> (u16, Vec<(String, String)>, String) {
    let key = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "));
    if !state.key_ok(key) {
        let shown: String = key.unwrap_or("").chars().take(6).collect();
        // The real 401 body, which echoes part of the key.
        let msg = format!(
            "Incorrect API key provided: {shown}***. You can find your API key at https://platform.openai.com/account/api-keys."
        );
        return (
            401,
            vec![],
            openai_error(&msg, "invalid_request_error", "invalid_api_key"),
        );
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v1/models") => (
            200,
            vec![],
            json!({"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]}).to_string(),
        ),
        ("POST", "/v1/chat/completions") => {
            let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
            let last = body["messages"]
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["content"].as_str())
                .unwrap_or("");
            let model = body["model"].as_str().unwrap_or("gpt-4o");
            let reply = json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("fake: {last}")}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
            });
            (200, vec![], reply.to_string())
        }
        _ => (
            404,
            vec![],
            openai_error(
                "Unknown request URL",
                "invalid_request_error",
                "unknown_url",
            ),
        ),
    }
}

/// An MCP Streamable HTTP server at `{url}` (ending in /mcp) accepting `x-api-key: key`.
/// Tools: `echo {message}` and `fail` (isError).
pub fn mcp(key: &str) -> Fake {
    let state = Arc::new(State::default());
    *state.valid_keys.lock().unwrap() = vec![key.to_string()];
    spawn(state, mcp_route, "/mcp")
}

fn mcp_route(state: &State, req: &Seen) -> (u16, Vec<(String, String)>, String) {
    if !state.key_ok(req.header("x-api-key")) {
        return (401, vec![], json!({"error": "unauthorized"}).to_string());
    }
    if req.method == "DELETE" {
        // Ends a session, as the transport specifies.
        let sid = req.header("mcp-session-id").unwrap_or("");
        let mut live = state.sessions.lock().unwrap();
        let before = live.len();
        live.retain(|s| s != sid);
        return (
            if live.len() < before { 200 } else { 404 },
            vec![],
            String::new(),
        );
    }
    if !req
        .header("accept")
        .is_some_and(|a| a.contains("application/json") && a.contains("text/event-stream"))
    {
        return (406, vec![], "{}".into());
    }
    let msg: Value = match serde_json::from_str(&req.body) {
        Ok(v) => v,
        Err(_) => return (400, vec![], json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}}).to_string()),
    };
    let method = msg["method"].as_str().unwrap_or("");
    let stateless = state.stateless.load(Ordering::SeqCst);
    if method != "initialize" && !stateless {
        let sid = req.header("mcp-session-id").unwrap_or("");
        if sid.is_empty() {
            return (400, vec![], json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32000, "message": "Bad Request: No valid session ID provided"}}).to_string());
        }
        if !state.sessions.lock().unwrap().iter().any(|s| s == sid) {
            return (404, vec![], json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32001, "message": "Session not found"}}).to_string());
        }
    }
    if msg.get("id").is_none() {
        return (202, vec![], String::new());
    }
    let id = msg["id"].clone();
    let result = match method {
        "initialize" => {
            json!({"protocolVersion": "2025-03-26", "capabilities": {"tools": {}}, "serverInfo": {"name": "fake-mcp", "version": "1"}})
        }
        "tools/list" => {
            json!({"tools": [{"name": "echo", "inputSchema": {}}, {"name": "fail", "inputSchema": {}}]})
        }
        "tools/call" => {
            let args = &msg["params"]["arguments"];
            match msg["params"]["name"].as_str().unwrap_or("") {
                "echo" => {
                    json!({"content": [{"type": "text", "text": json!({"data": args}).to_string()}]})
                }
                "fail" => {
                    json!({"content": [{"type": "text", "text": "Error: the tool failed"}], "isError": true})
                }
                other => {
                    let err = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": format!("Unknown tool: {other}")}});
                    return (200, vec![], err.to_string());
                }
            }
        }
        other => {
            let err = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("Method not found: {other}")}});
            return (200, vec![], err.to_string());
        }
    };
    let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
    let mut headers = vec![];
    if method == "initialize" && !stateless {
        let sid = uuid::Uuid::new_v4().to_string();
        state.sessions.lock().unwrap().push(sid.clone());
        headers.push(("Mcp-Session-Id".to_string(), sid));
    }
    if state.sse.load(Ordering::SeqCst) {
        headers.push(("Content-Type".into(), "text/event-stream".into()));
        let note = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "working"}});
        (
            200,
            headers,
            format!("event: message\ndata: {note}\n\nevent: message\ndata: {reply}\n\n"),
        )
    } else {
        (200, headers, reply.to_string())
    }
}

/// A base URL where nothing listens (connection refused).
pub fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}
