//! Against a second real MCP server, the reference `@modelcontextprotocol/server-everything`
//! (Streamable HTTP, SSE-framed replies with event ids, sessions), as ../shared/PEERS.md
//! starts it and `.ci/run` installs it. Outside CI the tests say so and pass when the server
//! is not running; in CI a missing server fails.

use crate::harness::{TestServer, peer_url};
use crate::orchestrator::agent;
use serde_json::json;
use vel_tutor::providers::mcp::Session;

fn peer() -> Option<String> {
    peer_url(
        "VEL_TUTOR_MCP_EVERYTHING_URL",
        "http://127.0.0.1:18092/mcp",
        "MCP reference server",
    )
}

#[test]
fn the_reference_server_runs_tool_agents_on_one_pooled_session() {
    let Some(url) = peer() else {
        return;
    };
    let s = TestServer::start_with(&[
        ("providers.task_master.base_url", &url),
        ("providers.task_master.api_key", "this-server-takes-no-key"),
    ]);
    let (t, _) = s.register("everything@example.com");
    let id = agent(
        &s,
        &t,
        json!({"name": "sum", "kind": "tool", "tool": "get-sum", "arguments": {"a": 2}}),
    );
    for b in [3, 40, 500] {
        let r = s.authed(
            "POST",
            &format!("/api/agents/{id}/chat"),
            &t,
            Some(&json!({"arguments": {"b": b}})),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let want = format!("The sum of 2 and {b} is {}.", 2 + b);
        assert_eq!(r.json()["output"], json!(want));
    }
    let r = s.authed("POST", &format!("/api/agents/{id}/test"), &t, None);
    assert_eq!(r.status, 200, "the tool list has get-sum: {}", r.body);
    assert_eq!(
        s.app().orchestrator.mcp_sessions.idle_count(),
        1,
        "every call above ran on one session"
    );
    let bad = agent(
        &s,
        &t,
        json!({"name": "bad", "kind": "tool", "tool": "get-sum", "arguments": {"a": "two"}}),
    );
    let r = s.authed(
        "POST",
        &format!("/api/agents/{bad}/chat"),
        &t,
        Some(&json!({"arguments": {"b": 1}})),
    );
    assert_eq!(r.status, 502, "invalid arguments fail the task: {}", r.body);
}

#[test]
fn a_session_the_reference_server_forgot_is_reinitialized_once() {
    let Some(url) = peer() else {
        return;
    };
    let client = vel_tutor::providers::agent(5000, 2);
    let mut session = Session::new(&client, &url, "x-api-key", "unused");
    let tools = session.list_tools().unwrap();
    assert!(tools.iter().any(|t| t == "echo"), "{tools:?}");
    let first = session
        .id()
        .expect("this server keeps sessions")
        .to_string();
    // End it behind the client's back, as a restarted server would have forgotten it.
    let r = client
        .delete(&url)
        .header("Mcp-Session-Id", &first)
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let out = session
        .call_tool("echo", &json!({"message": "again"}))
        .unwrap();
    assert_eq!(out.text, "Echo: again");
    let second = session.id().unwrap().to_string();
    assert_ne!(second, first, "a new session was made");
    // `close` ends it on the server: the id is refused from then on.
    session.close();
    let r = client
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .header("Mcp-Session-Id", &second)
        .send(r#"{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{}}"#)
        .unwrap();
    assert!([400, 404].contains(&r.status().as_u16()), "{}", r.status());
}
