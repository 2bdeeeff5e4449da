//! Task Master over MCP against the fake server: tool agents, the client's session
//! handling (stateless servers, lost sessions) and the pool that reuses and ends sessions.

use crate::fakes::{self, Behavior};
use crate::harness::TestServer;
use crate::orchestrator::agent;
use serde_json::json;
use std::time::Duration;

#[test]
fn tool_agents_call_mcp_tools_with_merged_arguments() {
    let tm = fakes::mcp("tm-key");
    tm.state
        .sse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let s = TestServer::start_with(&[
        ("providers.task_master.base_url", &tm.url),
        ("providers.task_master.api_key", "tm-key"),
    ]);
    let (t, _) = s.register("tools@example.com");
    let id = agent(
        &s,
        &t,
        json!({"name": "tm", "kind": "tool", "tool": "echo", "arguments": {"projectRoot": "/srv/p", "a": 1}}),
    );
    let r = s.authed(
        "POST",
        &format!("/api/agents/{id}/chat"),
        &t,
        Some(&json!({"arguments": {"a": 2, "b": "x"}})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(
        j["output"],
        json!({"data": {"projectRoot": "/srv/p", "a": 2, "b": "x"}})
    );
    assert_eq!(
        (j["provider"].as_str(), j["cost_usd"].as_f64()),
        (Some("task_master"), Some(0.0))
    );
    let test = s.authed("POST", &format!("/api/agents/{id}/test"), &t, None);
    assert_eq!(test.status, 200, "{}", test.body);

    let failing = agent(&s, &t, json!({"name": "f", "kind": "tool", "tool": "fail"}));
    let r = s.authed(
        "POST",
        &format!("/api/agents/{failing}/chat"),
        &t,
        Some(&json!({})),
    );
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        r.error_message().contains("Error: the tool failed"),
        "{}",
        r.body
    );

    let unknown = agent(&s, &t, json!({"name": "u", "kind": "tool", "tool": "nope"}));
    let r = s.authed(
        "POST",
        &format!("/api/agents/{unknown}/chat"),
        &t,
        Some(&json!({})),
    );
    assert_eq!(r.status, 502);
    assert!(
        r.error_message()
            .contains("JSON-RPC error -32602: Unknown tool: nope"),
        "{}",
        r.body
    );
    let r = s.authed("POST", &format!("/api/agents/{unknown}/test"), &t, None);
    assert_eq!(r.status, 502, "the tool list lacks it: {}", r.body);
    let r = s.authed(
        "POST",
        &format!("/api/agents/{id}/chat"),
        &t,
        Some(&json!({"arguments": [1, 2]})),
    );
    assert_eq!(r.status, 422);
}

#[test]
fn mcp_client_handles_stateless_servers_and_lost_sessions() {
    use vel_tutor::providers::mcp::Session;
    let tm = fakes::mcp("k");
    let agent = vel_tutor::providers::agent(5000, 2);
    // With a session: lose it between calls; the client re-initializes once.
    let mut s = Session::new(&agent, &tm.url, "x-api-key", "k");
    assert_eq!(s.list_tools().unwrap(), ["echo", "fail"]);
    tm.state.sessions.lock().unwrap().clear();
    let r = s.call_tool("echo", &json!({"m": 1})).unwrap();
    assert_eq!(r.output(), json!({"data": {"m": 1}}));
    let inits = tm
        .state
        .seen()
        .iter()
        .filter(|q| q.body.contains("\"initialize\""))
        .count();
    assert_eq!(inits, 2);
    // Without sessions, and with SSE framing.
    tm.state
        .stateless
        .store(true, std::sync::atomic::Ordering::SeqCst);
    tm.state
        .sse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut s = Session::new(&agent, &tm.url, "x-api-key", "k");
    assert!(!s.call_tool("fail", &json!({})).unwrap().output().is_null());
    assert!(
        tm.state
            .seen()
            .last()
            .unwrap()
            .header("mcp-session-id")
            .is_none()
    );
    // The wrong key is an authorization error.
    let mut s = Session::new(&agent, &tm.url, "x-api-key", "wrong");
    assert!(matches!(
        s.initialize(),
        Err(vel_tutor::providers::mcp::McpError::Unauthorized(_))
    ));
}

fn initializes(f: &fakes::Fake) -> usize {
    f.state
        .seen()
        .iter()
        .filter(|q| q.body.contains("\"initialize\""))
        .count()
}

/// Whether `done` holds within 5 s (dropped sessions are ended on a background thread).
fn eventually(done: impl Fn() -> bool) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn deletes(f: &fakes::Fake) -> Vec<String> {
    f.state
        .seen()
        .iter()
        .filter(|q| q.method == "DELETE")
        .filter_map(|q| q.header("mcp-session-id").map(String::from))
        .collect()
}

#[test]
fn mcp_sessions_are_reused_bounded_and_ended() {
    use vel_tutor::providers::mcp::{McpError, SessionPool};
    let tm = fakes::mcp("k");
    tm.state.valid_keys.lock().unwrap().push("k2".into());
    let agent = vel_tutor::providers::agent(5000, 4);
    let pool = SessionPool::new(1, Duration::from_secs(300));
    let call = |key: &str, tool: &str| {
        pool.with(&agent, &tm.url, "x-api-key", key, |s| {
            s.call_tool(tool, &json!({"n": 1}))
        })
    };
    // Three calls, one session: one initialize, the same session id on every call.
    for _ in 0..3 {
        assert_eq!(
            call("k", "echo").unwrap().output(),
            json!({"data": {"n": 1}})
        );
    }
    assert_eq!(initializes(&tm), 1);
    let ids: std::collections::BTreeSet<_> = tm
        .state
        .seen()
        .iter()
        .filter(|q| q.body.contains("tools/call"))
        .map(|q| q.header("mcp-session-id").unwrap_or("").to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(pool.idle_count(), 1);
    // A failing tool and a JSON-RPC error leave the session usable: it is kept.
    assert!(call("k", "fail").unwrap().is_error);
    assert!(matches!(call("k", "nope"), Err(McpError::Rpc { .. })));
    assert_eq!((initializes(&tm), pool.idle_count()), (1, 1));
    // Another key never gets this key's session.
    call("k2", "echo").unwrap();
    assert_eq!((initializes(&tm), pool.idle_count()), (2, 2));
    // Two sessions at once for one key; only one (max_idle) is kept, the other is ended.
    pool.with(&agent, &tm.url, "x-api-key", "k", |outer| {
        outer.list_tools()?;
        pool.with(&agent, &tm.url, "x-api-key", "k", |inner| {
            inner.list_tools()
        })
    })
    .unwrap();
    assert_eq!(initializes(&tm), 3);
    assert!(eventually(|| deletes(&tm).len() == 1), "{:?}", deletes(&tm));
    assert_eq!(pool.idle_count(), 2);
    // The server forgets every session: the next call re-initializes once and goes on.
    tm.state.sessions.lock().unwrap().clear();
    call("k", "echo").unwrap();
    assert_eq!(initializes(&tm), 4);
    // A server error drops the session instead of pooling it.
    tm.state.push(Behavior::Status(500, "{}".into()));
    assert!(call("k", "echo").is_err());
    assert_eq!(pool.idle_count(), 1, "only k2's session is left");
    // Shutdown ends what is left on the server.
    pool.close_all(Duration::from_secs(5));
    assert_eq!(pool.idle_count(), 0);
    assert!(
        eventually(|| tm.state.sessions.lock().unwrap().is_empty()),
        "every live session was ended"
    );
}

#[test]
fn mcp_sessions_idle_too_long_are_ended_not_reused_and_stateless_servers_are_not_pooled() {
    use vel_tutor::providers::mcp::SessionPool;
    let tm = fakes::mcp("k");
    let agent = vel_tutor::providers::agent(5000, 2);
    let pool = SessionPool::new(4, Duration::ZERO);
    let call = || pool.with(&agent, &tm.url, "x-api-key", "k", |s| s.list_tools());
    call().unwrap();
    let first = tm.state.sessions.lock().unwrap().clone();
    call().unwrap();
    assert_eq!(initializes(&tm), 2, "the idle session was too old to reuse");
    assert!(eventually(|| deletes(&tm) == first), "and it was ended");
    // The sweep ends old sessions of keys nobody asks for any more.
    let second = tm.state.sessions.lock().unwrap().clone();
    assert_eq!((pool.idle_count(), pool.sweep()), (1, 1));
    assert_eq!(pool.idle_count(), 0);
    assert_eq!(deletes(&tm), [first, second].concat());
    tm.state
        .stateless
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let pool = SessionPool::new(4, Duration::from_secs(300));
    let call = || pool.with(&agent, &tm.url, "x-api-key", "k", |s| s.list_tools());
    call().unwrap();
    call().unwrap();
    assert_eq!(initializes(&tm), 4, "no session id: each call initializes");
    assert_eq!(pool.idle_count(), 0);
}

#[test]
fn tool_chats_share_one_mcp_session_which_shutdown_ends() {
    let tm = fakes::mcp("tm-key");
    let mut s = TestServer::start_with(&[
        ("providers.task_master.base_url", &tm.url),
        ("providers.task_master.api_key", "tm-key"),
    ]);
    let (t, _) = s.register("sessions@example.com");
    let id = agent(
        &s,
        &t,
        json!({"name": "tm", "kind": "tool", "tool": "echo"}),
    );
    for i in 0..5 {
        let r = s.authed(
            "POST",
            &format!("/api/agents/{id}/chat"),
            &t,
            Some(&json!({"arguments": {"i": i}})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["output"], json!({"data": {"i": i}}));
    }
    assert_eq!(initializes(&tm), 1, "five tool calls, one session");
    assert_eq!(tm.state.sessions.lock().unwrap().len(), 1);
    s.running.take().unwrap().shutdown(Duration::from_secs(5));
    assert!(
        tm.state.sessions.lock().unwrap().is_empty(),
        "shutdown ended the session: {:?}",
        deletes(&tm)
    );
}

#[test]
fn shutdown_gives_up_on_a_server_that_hangs() {
    use vel_tutor::providers::mcp::SessionPool;
    let tm = fakes::mcp("k");
    let agent = vel_tutor::providers::agent(5000, 4);
    let pool = SessionPool::new(4, Duration::from_secs(300));
    let with = |f: &dyn Fn(&mut vel_tutor::providers::mcp::Session) -> _| {
        pool.with(&agent, &tm.url, "x-api-key", "k", |s| f(s))
    };
    // Three sessions in use at once, then idle.
    with(&|a| {
        a.list_tools()?;
        with(&|b| {
            b.list_tools()?;
            with(&|c| c.list_tools())
        })
    })
    .unwrap();
    assert_eq!(pool.idle_count(), 3);
    for _ in 0..3 {
        tm.state.push(Behavior::Hang);
    }
    let started = std::time::Instant::now();
    pool.close_all(Duration::from_millis(300));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "close_all took {:?}",
        started.elapsed()
    );
    assert_eq!(pool.idle_count(), 0);
}
