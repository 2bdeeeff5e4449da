//! Agents and the orchestrator against the real server and scripted fake providers:
//! retry rules, the breaker's states, fallback, the 503 reasons, budgets, cost, overhead.

use crate::fakes::{self, Behavior};
use crate::harness::{TestResp, TestServer};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const OPENAI_KEY: &str = "sk-operator-openai-0000001";
const GROQ_KEY: &str = "gsk_operator_groq_0000001";

/// A server whose openai (and optionally groq) point at fakes with operator keys, fast
/// retries, plus `extra` settings.
fn server(openai: &fakes::Fake, groq: Option<&fakes::Fake>, extra: &[(&str, &str)]) -> TestServer {
    let mut set: Vec<(&str, &str)> = vec![
        ("providers.openai.base_url", &openai.url),
        ("providers.openai.api_key", OPENAI_KEY),
        ("providers.openai.retry_base_ms", "10"),
        ("providers.openai.timeout_ms", "2000"),
    ];
    if let Some(g) = groq {
        set.extend([
            ("providers.groq.base_url", g.url.as_str()),
            ("providers.groq.api_key", GROQ_KEY),
            ("providers.groq.retry_base_ms", "10"),
        ]);
    }
    set.extend_from_slice(extra);
    TestServer::start_with(&set)
}

pub fn agent(s: &TestServer, token: &str, body: Value) -> String {
    let r = s.authed("POST", "/api/agents", token, Some(&body));
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["id"].as_str().unwrap().to_string()
}

fn chat(s: &TestServer, token: &str, id: &str, text: &str) -> TestResp {
    s.authed(
        "POST",
        &format!("/api/agents/{id}/chat"),
        token,
        Some(&json!({"messages": [{"role": "user", "content": text}]})),
    )
}

fn chats_seen(f: &fakes::Fake) -> usize {
    f.state
        .seen()
        .iter()
        .filter(|q| q.path == "/v1/chat/completions")
        .count()
}

#[test]
fn a_newcomer_without_keys_gets_the_local_answer() {
    let s = TestServer::start();
    let (t, _) = s.register("new@example.com");
    let id = agent(&s, &t, json!({"name": "tutor", "kind": "general"}));
    let r = chat(&s, &t, &id, "What is 2+2?");
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["output"], "local-echo: What is 2+2?");
    assert_eq!(j["provider"], "local");
    assert_eq!(j["model"], "local-echo");
    assert_eq!(j["cost_usd"], 0.0);
    assert!(j["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    // "loca|l", "-", "echo", ":", "What", "is", "2", "+", "2", "?" (runs of 4 letters count one).
    assert_eq!(j["usage"]["completion_tokens"], 11);
    // The route for kind general is openai; with no key anywhere, local stood in for it.
    assert_eq!(j["fallback_from"], "openai");
    let overhead: f64 = r.header("x-vel-overhead-ms").unwrap().parse().unwrap();
    assert!(overhead >= 0.0);
}

#[test]
fn openai_answers_with_usage_cost_and_a_usage_row() {
    let openai = fakes::openai(&[OPENAI_KEY]);
    let s = server(
        &openai,
        None,
        &[
            ("prices.gpt-4o.input", "1000"),
            ("prices.gpt-4o.output", "2000"),
        ],
    );
    let (t, uid) = s.register("pay@example.com");
    let id = agent(
        &s,
        &t,
        json!({"name": "r", "kind": "reasoning", "system_prompt": "Be brief.", "temperature": 0.2}),
    );
    let r = chat(&s, &t, &id, "hello");
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(
        (
            j["output"].as_str(),
            j["provider"].as_str(),
            j["model"].as_str()
        ),
        (Some("fake: hello"), Some("openai"), Some("gpt-4o"))
    );
    assert_eq!(
        (
            j["usage"]["prompt_tokens"].as_u64(),
            j["usage"]["completion_tokens"].as_u64()
        ),
        (Some(11), Some(7))
    );
    // 11 × $1000/M + 7 × $2000/M = 0.011 + 0.014
    assert!(
        (j["cost_usd"].as_f64().unwrap() - 0.025).abs() < 1e-12,
        "{j}"
    );
    let sent: Value = serde_json::from_str(&openai.state.seen().last().unwrap().body).unwrap();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["temperature"], 0.2);
    assert_eq!(
        openai.state.seen().last().unwrap().header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );

    let u = s.authed("GET", "/api/usage", &t, None).json();
    assert_eq!(u["user_id"], uid.as_str());
    let row = &u["by_model"][0];
    assert_eq!(
        (
            row["provider"].as_str(),
            row["model"].as_str(),
            row["calls"].as_u64()
        ),
        (Some("openai"), Some("gpt-4o"), Some(1))
    );
    assert!((row["cost_usd"].as_f64().unwrap() - 0.025).abs() < 1e-12);
    assert!((u["total_cost_usd"].as_f64().unwrap() - 0.025).abs() < 1e-12);
}

#[test]
fn retry_rules() {
    let openai = fakes::openai(&[OPENAI_KEY]);
    let s = server(
        &openai,
        None,
        &[
            ("providers.openai.max_retries", "3"),
            ("providers.openai.timeout_ms", "300"),
        ],
    );
    let (t, _) = s.register("retry@example.com");
    let id = agent(
        &s,
        &t,
        json!({"name": "a", "kind": "general", "provider": "openai", "fallback": false}),
    );
    let cases: Vec<(&str, Vec<Behavior>, u16, usize)> = vec![
        (
            "500 then ok",
            vec![Behavior::Status(500, "{}".into())],
            200,
            2,
        ),
        (
            "502, 503 then ok",
            vec![
                Behavior::Status(502, "{}".into()),
                Behavior::Status(503, "{}".into()),
            ],
            200,
            3,
        ),
        (
            "dropped mid-body then ok",
            vec![Behavior::DropMidBody],
            200,
            2,
        ),
        ("no answer (timeout) then ok", vec![Behavior::Hang], 200, 2),
        ("429 then ok", vec![Behavior::RateLimited(0)], 200, 2),
        (
            "401 is final",
            vec![Behavior::Status(
                401,
                fakes::openai_error(
                    "Incorrect API key provided: sk-ope***",
                    "invalid_request_error",
                    "invalid_api_key",
                ),
            )],
            502,
            1,
        ),
        (
            "403 is final",
            vec![Behavior::Status(403, "{}".into())],
            502,
            1,
        ),
        (
            "400 is final",
            vec![Behavior::Status(
                400,
                fakes::openai_error("bad", "invalid_request_error", "invalid_value"),
            )],
            502,
            1,
        ),
        (
            "404 is final",
            vec![Behavior::Status(
                404,
                fakes::openai_error(
                    "The model does not exist",
                    "invalid_request_error",
                    "model_not_found",
                ),
            )],
            502,
            1,
        ),
        (
            "500 four times exhausts the retries",
            vec![Behavior::Status(500, "{}".into()); 4],
            502,
            4,
        ),
    ];
    for (name, script, status, calls) in cases {
        let before = chats_seen(&openai);
        for b in script {
            openai.state.push(b);
        }
        let r = chat(&s, &t, &id, name);
        assert_eq!(r.status, status, "{name}: {}", r.body);
        assert_eq!(chats_seen(&openai) - before, calls, "{name}: calls");
        assert!(
            !r.body.contains("sk-ope"),
            "{name}: the key is never echoed: {}",
            r.body
        );
        openai.state.script.lock().unwrap().clear();
    }
    // The 401 error names the provider and says what happened.
    openai.state.push(Behavior::Status(401, "{}".into()));
    let r = chat(&s, &t, &id, "x");
    assert_eq!(
        r.json()["error"]["providers"][0]["reason"],
        "invalid api key (401)"
    );
    assert!(r.error_message().contains("openai: invalid api key"));
}

#[test]
fn retry_after_is_honoured() {
    let openai = fakes::openai(&[OPENAI_KEY]);
    let s = server(&openai, None, &[("providers.openai.max_retries", "1")]);
    let (t, _) = s.register("ra@example.com");
    let id = agent(
        &s,
        &t,
        json!({"name": "a", "kind": "general", "provider": "openai"}),
    );
    openai.state.push(Behavior::RateLimited(1));
    let t0 = Instant::now();
    let r = chat(&s, &t, &id, "wait");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        t0.elapsed()
    );
    // The wait is vel_tutor's own time, not the upstream's: it shows in the overhead.
    let overhead: f64 = r.header("x-vel-overhead-ms").unwrap().parse().unwrap();
    assert!(overhead >= 1000.0, "{overhead}");
}

#[test]
fn insufficient_quota_marks_the_provider_exhausted_instead_of_retrying() {
    let openai = fakes::openai(&[OPENAI_KEY]);
    let groq = fakes::openai(&[GROQ_KEY]);
    let s = server(
        &openai,
        Some(&groq),
        &[("providers.openai.max_retries", "3")],
    );
    let (t, _) = s.register("quota@example.com");
    let id = agent(&s, &t, json!({"name": "a", "kind": "general"}));
    openai.state.push(Behavior::InsufficientQuota);
    let r = chat(&s, &t, &id, "one");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.json()["provider"].as_str(),
            r.json()["fallback_from"].as_str()
        ),
        (Some("groq"), Some("openai"))
    );
    assert_eq!(chats_seen(&openai), 1, "no retry after insufficient_quota");
    // Now openai is skipped without being called.
    let r = chat(&s, &t, &id, "two");
    assert_eq!(r.json()["provider"], "groq");
    assert_eq!(chats_seen(&openai), 1);
    let h = s.get("/api/health").json();
    assert_eq!(h["providers"]["openai"]["quota_exhausted"], true);
}

#[test]
fn breaker_opens_half_opens_with_one_probe_and_closes() {
    let openai = fakes::openai(&[OPENAI_KEY]);
    let s = server(
        &openai,
        None,
        &[
            ("providers.openai.max_retries", "0"),
            ("breaker.failures", "3"),
            ("breaker.open_s", "1"),
        ],
    );
    let (t, _) = s.register("brk@example.com");
    let id = agent(
        &s,
        &t,
        json!({"name": "a", "kind": "general", "provider": "openai"}),
    );
    for i in 0..3 {
        openai.state.push(Behavior::Status(500, "{}".into()));
        assert_eq!(chat(&s, &t, &id, "x").status, 502, "failure {i}");
    }
    let h = s.get("/api/health").json();
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["providers"]["openai"]["circuit"], "open");
    assert_eq!(h["providers"]["openai"]["last_error"], "upstream 5xx (500)");
    // Open: refused without a call, 503 with the reason and when it ends.
    let r = chat(&s, &t, &id, "x");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.json()["error"]["providers"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("circuit open until 20"),
        "{}",
        r.body
    );
    assert_eq!(chats_seen(&openai), 3);
    // Half-open after the cool-down: one probe; it fails, so open again.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        s.get("/api/health").json()["providers"]["openai"]["circuit"],
        "half_open"
    );
    openai.state.push(Behavior::Status(500, "{}".into()));
    assert_eq!(chat(&s, &t, &id, "probe").status, 502);
    assert_eq!(chats_seen(&openai), 4);
    assert_eq!(
        s.get("/api/health").json()["providers"]["openai"]["circuit"],
        "open"
    );
    // Next probe succeeds: closed, and the server is ok again.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(chat(&s, &t, &id, "probe").status, 200);
    let h = s.get("/api/health").json();
    assert_eq!(
        (
            h["status"].as_str(),
            h["providers"]["openai"]["circuit"].as_str()
        ),
        (Some("ok"), Some("closed"))
    );
}

#[test]
fn half_open_lets_exactly_one_probe_through() {
    let openai = fakes::openai(&[OPENAI_KEY]);
    let s = server(
        &openai,
        None,
        &[
            ("providers.openai.max_retries", "0"),
            ("breaker.failures", "1"),
            ("breaker.open_s", "1"),
            ("server.workers", "8"),
        ],
    );
    let (t, _) = s.register("probe@example.com");
    let id = agent(
        &s,
        &t,
        json!({"name": "a", "kind": "general", "provider": "openai"}),
    );
    openai.state.push(Behavior::Status(500, "{}".into()));
    assert_eq!(chat(&s, &t, &id, "x").status, 502);
    std::thread::sleep(Duration::from_millis(1100));
    openai.state.push(Behavior::Delay(
        Duration::from_millis(500),
        Box::new(Behavior::Ok),
    ));
    let statuses: Vec<u16> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let (s, t, id) = (&s, &t, &id);
                sc.spawn(move || {
                    std::thread::sleep(Duration::from_millis(50 * i));
                    chat(s, t, id, "probe").status
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses[1..].iter().all(|s| *s == 503), "{statuses:?}");
    assert_eq!(chats_seen(&openai), 2);
}

#[test]
fn fallback_from_openai_to_groq_and_every_reason_when_all_fail() {
    let openai = fakes::openai(&[OPENAI_KEY]);
    let groq = fakes::openai(&[GROQ_KEY]);
    let s = server(
        &openai,
        Some(&groq),
        &[("providers.openai.max_retries", "1")],
    );
    let (t, _) = s.register("fb@example.com");
    let id = agent(
        &s,
        &t,
        json!({"name": "a", "kind": "reasoning", "model": "gpt-4o-mini"}),
    );
    openai.state.push(Behavior::Status(500, "{}".into()));
    openai.state.push(Behavior::Status(503, "{}".into()));
    let r = chat(&s, &t, &id, "hi");
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(
        (j["provider"].as_str(), j["fallback_from"].as_str()),
        (Some("groq"), Some("openai"))
    );
    assert_eq!(
        j["model"], "llama-3.1-70b",
        "a fallback uses its own default model"
    );
    let sent: Value = serde_json::from_str(&groq.state.seen()[0].body).unwrap();
    assert_eq!(sent["model"], "llama-3.1-70b");

    // An agent with fallback off gets openai's error.
    let pinned = agent(
        &s,
        &t,
        json!({"name": "b", "kind": "reasoning", "fallback": false}),
    );
    openai.state.push(Behavior::Status(500, "{}".into()));
    openai.state.push(Behavior::Status(500, "{}".into()));
    let r = chat(&s, &t, &pinned, "hi");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["providers"].as_array().unwrap().len(), 1);

    // Both fail: the caller sees what each answered.
    openai.state.push(Behavior::Status(500, "{}".into()));
    openai.state.push(Behavior::Status(500, "{}".into()));
    for _ in 0..3 {
        groq.state.push(Behavior::Status(401, "{}".into()));
    }
    let r = chat(&s, &t, &id, "hi");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (502, "provider_error"),
        "{}",
        r.body
    );
    let reasons = r.json()["error"]["providers"].clone();
    assert_eq!(
        reasons,
        json!([
            {"provider": "openai", "reason": "upstream 5xx (500)", "called": true},
            {"provider": "groq", "reason": "invalid api key (401)", "called": true},
        ])
    );
}

#[test]
fn unavailable_lists_each_provider_and_why() {
    let openai = fakes::openai(&[OPENAI_KEY]);
    // A budget the first call already exhausts; groq has no key at all.
    let s = server(&openai, None, &[("quota.openai.monthly_usd", "0.00001")]);
    let (t, _) = s.register("none@example.com");
    let id = agent(&s, &t, json!({"name": "a", "kind": "general"}));
    assert_eq!(chat(&s, &t, &id, "spend").status, 200);
    let r = chat(&s, &t, &id, "again");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "provider_unavailable"),
        "{}",
        r.body
    );
    let p = &r.json()["error"]["providers"];
    assert_eq!(p[0]["provider"], "openai");
    assert!(
        p[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("quota exhausted ($0.00 of $0.00"),
        "{p}"
    );
    assert_eq!(
        p[1],
        json!({"provider": "groq", "reason": "not configured", "called": false})
    );
    assert!(r.header("retry-after").is_some());
    assert!(r.error_message().contains("groq: not configured"));
}

#[test]
fn budget_warns_once_at_80_percent_and_exhausts_at_100() {
    let openai = fakes::openai(&[OPENAI_KEY]);
    // Each call costs 11 × 2.5/M + 7 × 10/M = $0.0000975; the budget is $0.0001.
    let s = server(
        &openai,
        None,
        &[
            ("quota.openai.monthly_usd", "0.0001"),
            ("providers.openai.max_retries", "0"),
        ],
    );
    let (root, _) = s.admin("root@example.com");
    let (t, _) = s.register("budget@example.com");
    let id = agent(
        &s,
        &t,
        json!({"name": "a", "kind": "general", "provider": "openai"}),
    );
    let alerts = || {
        s.authed("GET", "/api/audit?action=quota.alert", &root, None)
            .json()["entries"]
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eq!(chat(&s, &t, &id, "one").status, 200);
    let a = alerts();
    assert_eq!(a.len(), 1, "crossing 80 % alerts");
    assert_eq!(a[0]["detail"]["provider"], "openai");
    assert_eq!(
        s.get("/api/health").json()["providers"]["openai"]["quota_used_pct"],
        97.5
    );
    // Still under 100 %: served, then exhausted; no second alert.
    assert_eq!(chat(&s, &t, &id, "two").status, 200);
    assert_eq!(alerts().len(), 1);
    let r = chat(&s, &t, &id, "three");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(chats_seen(&openai), 2);
    let u = s.authed("GET", "/api/usage", &root, None).json();
    assert_eq!(u["quota"]["openai"]["exhausted"], true);
    assert_eq!(u["quota"]["openai"]["monthly_usd"], 0.0001);
}

#[test]
fn overhead_excludes_the_upstream_and_slow_providers_block_nothing_else() {
    let openai = fakes::openai(&[OPENAI_KEY]);
    // Four workers and a single pooled reader: if a provider call held a connection or a
    // worker beyond its own, the other routes below would wait.
    let s = server(
        &openai,
        None,
        &[
            ("server.workers", "4"),
            ("database.pool_size", "1"),
            ("providers.openai.timeout_ms", "5000"),
        ],
    );
    let (t, _) = s.register("slow@example.com");
    let id = agent(
        &s,
        &t,
        json!({"name": "a", "kind": "general", "provider": "openai"}),
    );
    for _ in 0..2 {
        openai.state.push(Behavior::Delay(
            Duration::from_millis(1500),
            Box::new(Behavior::Ok),
        ));
    }
    std::thread::scope(|sc| {
        let slow: Vec<_> = (0..2)
            .map(|_| sc.spawn(|| (chat(&s, &t, &id, "slow"), Instant::now())))
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(s.authed("GET", "/api/auth/me", &t, None).status, 200);
            assert_eq!(s.authed("GET", "/api/agents", &t, None).status, 200);
            assert_eq!(s.get("/api/health").status, 200);
        }
        let others_done = Instant::now();
        assert!(
            others_done - t0 < Duration::from_millis(1000),
            "other routes waited {:?}",
            others_done - t0
        );
        for h in slow {
            let (r, done) = h.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            assert!(done > others_done, "the slow chats were still running");
            let overhead: f64 = r.header("x-vel-overhead-ms").unwrap().parse().unwrap();
            let latency = r.json()["latency_ms"].as_u64().unwrap();
            assert!(latency >= 1500, "{latency}");
            assert!(
                overhead < 500.0,
                "overhead {overhead} ms must exclude the 1500 ms upstream"
            );
        }
    });
}

#[test]
fn agent_test_uses_the_key_that_would_be_used_now() {
    let openai = fakes::openai(&["sk-users-own-key-00000001"]);
    let s = server(&openai, None, &[]);
    let (t, _) = s.register("tester@example.com");
    let r = s.authed(
        "PUT",
        "/api/integrations/openai",
        &t,
        Some(&json!({"api_key": "sk-users-own-key-00000001", "base_url": openai.url})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let id = agent(
        &s,
        &t,
        json!({"name": "a", "kind": "general", "provider": "openai", "model": "gpt-4o-mini"}),
    );
    let r = s.authed("POST", &format!("/api/agents/{id}/test"), &t, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(
        (
            j["ok"].as_bool(),
            j["provider"].as_str(),
            j["model"].as_str()
        ),
        (Some(true), Some("openai"), Some("gpt-4o-mini"))
    );
    assert!(j["latency_ms"].is_u64());
    let sent = openai.state.seen().last().unwrap().clone();
    assert_eq!(
        sent.header("authorization"),
        Some("Bearer sk-users-own-key-00000001"),
        "the user's key, not the operator's"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&sent.body).unwrap()["max_tokens"],
        1
    );
    // The provider revokes the key: /test says so, with one call and no fallback.
    openai.state.valid_keys.lock().unwrap().clear();
    let before = chats_seen(&openai);
    let r = s.authed("POST", &format!("/api/agents/{id}/test"), &t, None);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (502, "provider_error"),
        "{}",
        r.body
    );
    assert!(r.error_message().contains("invalid api key"), "{}", r.body);
    assert_eq!(chats_seen(&openai) - before, 1);
}

#[test]
fn agents_crud_validation_and_isolation() {
    let s = TestServer::start();
    let (alice, _) = s.register("alice@example.com");
    let (bob, _) = s.register("bob@example.com");
    let (root, _) = s.admin("root@example.com");
    let bad = [
        (json!({"kind": "general"}), "name"),
        (json!({"name": "a"}), "kind"),
        (json!({"name": "a", "kind": "poetry"}), "kind"),
        (
            json!({"name": "a", "kind": "general", "provider": "skynet"}),
            "provider",
        ),
        (
            json!({"name": "a", "kind": "general", "temperature": 3.5}),
            "temperature",
        ),
        (
            json!({"name": "a", "kind": "general", "max_tokens": 0}),
            "max_tokens",
        ),
        (json!({"name": "a", "kind": "tool"}), "tool"),
        (
            json!({"name": "a", "kind": "tool", "tool": "get_tasks", "provider": "openai"}),
            "provider",
        ),
        (json!({"name": "a", "kind": "general", "tool": "x"}), "tool"),
        (
            json!({"name": "a", "kind": "tool", "tool": "x", "arguments": [1]}),
            "arguments",
        ),
    ];
    for (body, field) in bad {
        let r = s.authed("POST", "/api/agents", &alice, Some(&body));
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert!(
            r.json()["error"]["fields"][field].is_string(),
            "{body}: {}",
            r.body
        );
    }
    assert_eq!(
        s.authed(
            "POST",
            "/api/agents",
            &alice,
            Some(&json!({"name": "a", "kind": "general", "colour": "red"}))
        )
        .status,
        422
    );
    let id = agent(
        &s,
        &alice,
        json!({"name": "mine", "kind": "code", "model": "llama-3.1-8b-instant"}),
    );
    let got = s
        .authed("GET", &format!("/api/agents/{id}"), &alice, None)
        .json();
    assert_eq!(
        (
            got["provider"].as_str(),
            got["fallback"].as_bool(),
            got["kind"].as_str()
        ),
        (Some("auto"), Some(true), Some("code"))
    );
    let r = s.authed(
        "PATCH",
        &format!("/api/agents/{id}"),
        &alice,
        Some(&json!({"name": "renamed", "temperature": 0.5})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json()["name"].as_str(), r.json()["model"].as_str()),
        (Some("renamed"), Some("llama-3.1-8b-instant"))
    );
    assert_eq!(
        s.authed(
            "PATCH",
            &format!("/api/agents/{id}"),
            &alice,
            Some(&json!({"kind": "nope"}))
        )
        .status,
        422
    );
    // Bob sees nothing of it, on every route that takes the id.
    for (m, p) in [
        ("GET", format!("/api/agents/{id}")),
        ("PATCH", format!("/api/agents/{id}")),
        ("DELETE", format!("/api/agents/{id}")),
        ("POST", format!("/api/agents/{id}/test")),
        ("POST", format!("/api/agents/{id}/chat")),
    ] {
        let body = json!({"messages": [{"role": "user", "content": "x"}]});
        let r = s.authed(m, &p, &bob, Some(&body));
        assert_eq!(r.status, 404, "{m} {p}: {}", r.body);
    }
    assert_eq!(
        s.authed("GET", "/api/agents", &bob, None).json()["agents"],
        json!([])
    );
    // Admins see everyone's.
    assert_eq!(
        s.authed("GET", "/api/agents", &root, None).json()["agents"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.authed("GET", &format!("/api/agents/{id}"), &root, None)
            .status,
        200
    );
    // Bad chat bodies.
    let r = s.authed(
        "POST",
        &format!("/api/agents/{id}/chat"),
        &alice,
        Some(&json!({"messages": []})),
    );
    assert_eq!(r.status, 422);
    let r = s.authed(
        "POST",
        &format!("/api/agents/{id}/chat"),
        &alice,
        Some(&json!({"messages": [{"role": "wizard", "content": "x"}]})),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        s.authed("DELETE", &format!("/api/agents/{id}"), &alice, None)
            .status,
        204
    );
    assert_eq!(
        s.authed("GET", &format!("/api/agents/{id}"), &alice, None)
            .status,
        404
    );
}

#[test]
fn metrics_count_decisions_for_admins_and_the_metrics_token() {
    let openai = fakes::openai(&[OPENAI_KEY]);
    let s = server(&openai, None, &[("metrics.token", "metrics-secret-123")]);
    let (root, _) = s.admin("root@example.com");
    let (t, _) = s.register("m@example.com");
    let id = agent(&s, &t, json!({"name": "a", "kind": "general"}));
    assert_eq!(chat(&s, &t, &id, "x").status, 200);
    let r = s.authed("GET", "/metrics", &root, None);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    for needle in [
        "# HELP vel_routing_decisions_total ",
        "vel_routing_decisions_total{provider=\"openai\",fallback=\"false\"} 1",
        "vel_provider_calls_total{provider=\"openai\",outcome=\"ok\"} 1",
        "vel_provider_tokens_total{provider=\"openai\",direction=\"prompt\"} 11",
        "vel_http_request_duration_seconds_count{method=\"POST\",route=\"/api/agents/:id/chat\"} 1",
    ] {
        assert!(r.body.contains(needle), "missing {needle}:\n{}", r.body);
    }
    assert_eq!(
        s.authed("GET", "/metrics", "metrics-secret-123", None)
            .status,
        200
    );
    assert_eq!(s.authed("GET", "/metrics", &t, None).status, 403);
    assert_eq!(s.get("/metrics").status, 401);
}
