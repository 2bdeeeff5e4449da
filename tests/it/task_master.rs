//! Against the real Task Master (npm `task-master-ai`) behind the `mcp-proxy` Streamable
//! HTTP bridge, as ../shared/PEERS.md starts it and `.ci/run` installs it. Outside CI the
//! tests say so and pass when the bridge is not running; in CI a missing bridge fails.

use crate::harness::{TestServer, peer_url};
use serde_json::json;

fn peer() -> Option<(String, String, String)> {
    let url = peer_url(
        "VEL_TUTOR_TASK_MASTER_URL",
        "http://127.0.0.1:18090/mcp",
        "Task Master peer",
    )?;
    let key = std::env::var("VEL_TUTOR_TASK_MASTER_KEY").unwrap_or_else(|_| "tm-secret".into());
    let root =
        std::env::var("VEL_TUTOR_TASK_MASTER_PROJECT").unwrap_or_else(|_| "/tmp/tm/project".into());
    Some((url, key, root))
}

#[test]
fn real_task_master_through_the_integration_and_a_tool_agent() {
    let Some((url, key, root)) = peer() else {
        return;
    };
    let s = TestServer::start();
    let (t, _) = s.register("tm-real@example.com");

    let r = s.authed(
        "PUT",
        "/api/integrations/task_master",
        &t,
        Some(&json!({"api_key": "not-the-key", "base_url": url})),
    );
    assert_eq!(r.status, 422, "the bridge refuses a wrong key: {}", r.body);
    let r = s.authed(
        "PUT",
        "/api/integrations/task_master",
        &t,
        Some(&json!({"api_key": key, "base_url": url})),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let mk = |name: &str, tool: &str| {
        let body =
            json!({"name": name, "kind": "tool", "tool": tool, "arguments": {"projectRoot": root}});
        let r = s.authed("POST", "/api/agents", &t, Some(&body));
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["id"].as_str().unwrap().to_string()
    };
    let add = mk("add", "add_task");
    let get = mk("get", "get_tasks");
    let next = mk("next", "next_task");
    let expand = mk("expand", "expand_task");

    let r = s.authed("POST", &format!("/api/agents/{get}/test"), &t, None);
    assert_eq!(r.status, 200, "get_tasks is offered: {}", r.body);

    let title = format!("vel_tutor peer test {}", uuid::Uuid::new_v4());
    let r = s.authed(
        "POST",
        &format!("/api/agents/{add}/chat"),
        &t,
        Some(
            &json!({"arguments": {"title": title, "description": "made by the integration test"}}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["provider"], "task_master");

    let r = s.authed(
        "POST",
        &format!("/api/agents/{get}/chat"),
        &t,
        Some(&json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let out = r.json()["output"].clone();
    let tasks = out["data"]["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("tool output is parsed JSON: {out}"));
    assert!(
        tasks.iter().any(|task| task["title"] == title.as_str()),
        "the added task is listed: {out}"
    );

    let r = s.authed(
        "POST",
        &format!("/api/agents/{next}/chat"),
        &t,
        Some(&json!({})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["output"]["data"].is_object(), "{}", r.body);

    // AI-backed tools fail without an AI key: isError fails the call with the tool's text.
    let id = tasks.last().unwrap()["id"]
        .to_string()
        .trim_matches('"')
        .to_string();
    let r = s.authed(
        "POST",
        &format!("/api/agents/{expand}/chat"),
        &t,
        Some(&json!({"arguments": {"id": id}})),
    );
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.error_message().contains("Error"), "{}", r.body);
}
