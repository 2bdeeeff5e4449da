//! Integrations against the real server and fake providers on 127.0.0.1: format check,
//! live check, nothing stored on failure, rotation, delete, isolation, key resolution.

use crate::fakes;
use crate::harness::TestServer;
use serde_json::json;
use vel_tutor::integrations::{self, KeySource};
use vel_tutor::providers::ProviderName;

const GOOD: &str = "sk-test-good-0123456789abcd";
const GOOD2: &str = "sk-test-next-9876543210wxyz";
const BAD: &str = "sk-test-bad-000000000000000";

fn row_count(s: &TestServer) -> i64 {
    let c = rusqlite::Connection::open(s.db_path()).unwrap();
    c.query_row("SELECT count(*) FROM integrations", [], |r| r.get(0))
        .unwrap()
}

fn put(
    s: &TestServer,
    token: &str,
    provider: &str,
    body: serde_json::Value,
) -> crate::harness::TestResp {
    s.authed(
        "PUT",
        &format!("/api/integrations/{provider}"),
        token,
        Some(&body),
    )
}

#[test]
fn format_provider_and_reachability_failures_store_nothing() {
    let fake = fakes::openai(&[GOOD]);
    let s = TestServer::start();
    let (t, _) = s.register("keys@example.com");

    let r = put(
        &s,
        &t,
        "openai",
        json!({"api_key": "gsk_wrongprovider123", "base_url": fake.url}),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.json()["error"]["fields"]["api_key"]
            .as_str()
            .unwrap()
            .contains("sk-"),
        "{}",
        r.body
    );
    assert!(
        fake.state.seen().is_empty(),
        "a bad format never reaches the provider"
    );

    let r = put(
        &s,
        &t,
        "openai",
        json!({"api_key": BAD, "base_url": fake.url}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (422, "validation_failed"),
        "{}",
        r.body
    );
    assert!(r.error_message().contains("invalid_api_key"), "{}", r.body);
    assert!(
        !r.body.contains("sk-tes"),
        "the provider's echo of the key is not passed on: {}",
        r.body
    );
    let seen = fake.state.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {BAD}").as_str())
    );

    let r = put(
        &s,
        &t,
        "openai",
        json!({"api_key": GOOD, "base_url": fakes::dead_url()}),
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (502, "provider_error"),
        "{}",
        r.body
    );

    let r = put(
        &s,
        &t,
        "openai",
        json!({"api_key": GOOD, "base_url": "ftp://example.com"}),
    );
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]["fields"]["base_url"].is_string());

    assert_eq!(row_count(&s), 0);
    assert_eq!(
        s.authed("GET", "/api/integrations", &t, None).json()["integrations"],
        json!([])
    );
    assert_eq!(put(&s, &t, "nosuch", json!({"api_key": GOOD})).status, 404);
    assert_eq!(put(&s, &t, "local", json!({"api_key": GOOD})).status, 404);
}

#[test]
fn store_rotate_delete_and_resolve() {
    let fake = fakes::openai(&[GOOD]);
    let s = TestServer::start_with(&[("providers.openai.api_key", "sk-operator-key-0000000")]);
    let (t, uid) = s.register("rot@example.com");

    let r = put(
        &s,
        &t,
        "openai",
        json!({"api_key": GOOD, "base_url": format!("{}/", fake.url)}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["provider"], "openai");
    assert_eq!(j["key_hint"], "sk-t…abcd");
    assert_eq!(j["base_url"], fake.url.as_str(), "trailing slash trimmed");
    assert!(j["validated_at"].as_str().unwrap().ends_with('Z'));
    assert!(j["updated_at"].as_str().is_some());
    assert!(!r.body.contains(GOOD));

    let resolved = integrations::resolve(s.app(), &uid, ProviderName::OpenAi)
        .unwrap()
        .unwrap();
    assert_eq!(
        (resolved.key.expose(), resolved.source),
        (GOOD, KeySource::User)
    );
    assert_eq!(resolved.base_url, fake.url);

    // Rotation: PUT again with a new key that the provider accepts.
    fake.state.valid_keys.lock().unwrap().push(GOOD2.into());
    let r = put(
        &s,
        &t,
        "openai",
        json!({"api_key": GOOD2, "base_url": fake.url}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["key_hint"], "sk-t…wxyz");
    assert_eq!(row_count(&s), 1);
    let resolved = integrations::resolve(s.app(), &uid, ProviderName::OpenAi)
        .unwrap()
        .unwrap();
    assert_eq!(resolved.key.expose(), GOOD2);

    let list = s.authed("GET", "/api/integrations", &t, None);
    assert_eq!(list.json()["integrations"][0]["key_hint"], "sk-t…wxyz");
    assert!(!list.body.contains(GOOD2));

    assert_eq!(
        s.authed("DELETE", "/api/integrations/openai", &t, None)
            .status,
        204
    );
    assert_eq!(
        s.authed("DELETE", "/api/integrations/openai", &t, None)
            .status,
        404
    );
    // Without a key of their own, the user gets the operator's; groq has neither.
    let resolved = integrations::resolve(s.app(), &uid, ProviderName::OpenAi)
        .unwrap()
        .unwrap();
    assert_eq!(
        (resolved.key.expose(), resolved.source),
        ("sk-operator-key-0000000", KeySource::Operator)
    );
    assert_eq!(resolved.base_url, "https://api.openai.com/v1");
    assert!(
        integrations::resolve(s.app(), &uid, ProviderName::Groq)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        integrations::resolve(s.app(), &uid, ProviderName::Local)
            .unwrap()
            .unwrap()
            .source,
        KeySource::None
    );

    let (root, _) = s.admin("root@example.com");
    let audit = s
        .authed("GET", &format!("/api/audit?user_id={uid}"), &root, None)
        .json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .filter(|a| a.starts_with("integration."))
        .collect();
    assert_eq!(
        actions,
        [
            "integration.deleted",
            "integration.rotated",
            "integration.stored"
        ]
    );
    assert!(!audit.to_string().contains(GOOD) && !audit.to_string().contains(GOOD2));
}

#[test]
fn another_users_integration_is_invisible() {
    let fake = fakes::openai(&[GOOD]);
    let s = TestServer::start();
    let (alice, alice_id) = s.register("alice@example.com");
    let (bob, bob_id) = s.register("bob@example.com");
    assert_eq!(
        put(
            &s,
            &alice,
            "openai",
            json!({"api_key": GOOD, "base_url": fake.url})
        )
        .status,
        200
    );
    assert_eq!(
        s.authed("GET", "/api/integrations", &bob, None).json()["integrations"],
        json!([])
    );
    assert_eq!(
        s.authed("DELETE", "/api/integrations/openai", &bob, None)
            .status,
        404
    );
    assert!(
        integrations::resolve(s.app(), &bob_id, ProviderName::OpenAi)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        integrations::resolve(s.app(), &alice_id, ProviderName::OpenAi)
            .unwrap()
            .unwrap()
            .key
            .expose(),
        GOOD
    );
    // A sealed key copied onto Bob's row does not open there.
    let c = rusqlite::Connection::open(s.db_path()).unwrap();
    c.execute(
        "INSERT INTO integrations SELECT ?1, provider, sealed_key, key_id, key_hint, base_url, validated_at, created_at, updated_at FROM integrations WHERE user_id = ?2",
        [&bob_id, &alice_id],
    )
    .unwrap();
    assert!(
        integrations::resolve(s.app(), &bob_id, ProviderName::OpenAi)
            .unwrap()
            .is_none()
    );
}

#[test]
fn task_master_keys_are_checked_with_mcp_initialize() {
    let fake = fakes::mcp("tm-secret-key");
    fake.state
        .sse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let s = TestServer::start();
    let (t, uid) = s.register("tm@example.com");
    let r = put(
        &s,
        &t,
        "task_master",
        json!({"api_key": "wrong-key", "base_url": fake.url}),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let r = put(
        &s,
        &t,
        "task_master",
        json!({"api_key": "tm-secret-key", "base_url": fakes::dead_url()}),
    );
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(row_count(&s), 0);
    let r = put(
        &s,
        &t,
        "task_master",
        json!({"api_key": "tm-secret-key", "base_url": fake.url}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let methods: Vec<String> = fake
        .state
        .seen()
        .iter()
        .filter(|q| q.header("x-api-key") == Some("tm-secret-key"))
        .map(|q| q.body.clone())
        .collect();
    assert!(
        methods[0].contains("\"initialize\"") && methods[1].contains("notifications/initialized"),
        "{methods:?}"
    );
    // The check's session is ended, not left on the server.
    assert!(fake.state.seen().iter().any(|q| q.method == "DELETE"));
    assert!(fake.state.sessions.lock().unwrap().is_empty());
    assert_eq!(
        integrations::resolve(s.app(), &uid, ProviderName::TaskMaster)
            .unwrap()
            .unwrap()
            .key
            .expose(),
        "tm-secret-key"
    );
}

#[test]
fn operator_keys_are_checked_at_start_when_asked_and_never_stored() {
    let fake = fakes::openai(&[GOOD]);
    let s = TestServer::start_with(&[
        ("providers.openai.api_key", BAD),
        ("providers.openai.base_url", &fake.url),
        ("providers.openai.validate_on_start", "true"),
        ("providers.groq.api_key", "gsk_operator_groq_key_123"),
    ]);
    let mut health = s.get("/api/health").json();
    for _ in 0..100 {
        if health["providers"]["openai"]["key_check"] != "pending" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        health = s.get("/api/health").json();
    }
    assert_eq!(
        health["status"], "ok",
        "a bad operator key does not take the server down"
    );
    assert_eq!(health["providers"]["openai"]["configured"], true);
    assert_eq!(health["providers"]["openai"]["key_check"], "failed");
    assert!(
        health["providers"]["openai"]["last_error"]
            .as_str()
            .unwrap()
            .contains("rejected")
    );
    assert_eq!(health["providers"]["groq"]["key_check"], "unchecked");
    assert_eq!(health["providers"]["perplexity"]["configured"], false);
    assert_eq!(health["providers"]["local"]["configured"], true);
    assert!(!health.to_string().contains(BAD));
    let bytes = std::fs::read(s.db_path()).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("gsk_operator_groq"));
}

#[test]
fn a_stored_key_appears_nowhere_in_clear() {
    let fake = fakes::openai(&[GOOD]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scan.sqlite3");
    let child = crate::cli::serve_test_db(dir.path(), &db, &[]);
    let url = child.url.clone();
    let a = crate::harness::client();
    let mut bodies = Vec::new();
    let mut call = |m: &str, path: &str, token: Option<&str>, body: Option<serde_json::Value>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut h = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            h.push(("authorization", a.as_str()));
        }
        let r = crate::harness::send(
            &a,
            m,
            &format!("{url}{path}"),
            &h,
            body.map(|b| b.to_string().into_bytes()).as_deref(),
        );
        bodies.push(r.body.clone());
        r
    };
    let reg = call(
        "POST",
        "/api/auth/register",
        None,
        Some(json!({"email": "scan@example.com", "password": crate::harness::PASSWORD})),
    );
    let t = reg.json()["token"].as_str().unwrap().to_string();
    // A rejected key, then the accepted one, then a rotation to the same key: every path.
    assert_eq!(
        call(
            "PUT",
            "/api/integrations/openai",
            Some(&t),
            Some(json!({"api_key": BAD, "base_url": fake.url}))
        )
        .status,
        422
    );
    assert_eq!(
        call(
            "PUT",
            "/api/integrations/openai",
            Some(&t),
            Some(json!({"api_key": GOOD, "base_url": fake.url}))
        )
        .status,
        200
    );
    assert_eq!(
        call(
            "PUT",
            "/api/integrations/openai",
            Some(&t),
            Some(json!({"api_key": GOOD, "base_url": fake.url}))
        )
        .status,
        200
    );
    assert_eq!(call("GET", "/api/integrations", Some(&t), None).status, 200);
    call("GET", "/api/health", None, None);
    let logs = child.stop(15);
    assert!(
        logs.contains("/api/integrations/openai 200"),
        "logs captured: {logs}"
    );
    let disk = crate::cli::disk(&db);
    assert!(
        disk.contains("scan@example.com"),
        "the database files were read"
    );
    for secret in [GOOD, BAD, &GOOD[3..20]] {
        assert!(!disk.contains(secret), "{secret} is in the database files");
        assert!(!logs.contains(secret), "{secret} is in the logs");
        for b in &bodies {
            assert!(!b.contains(secret), "{secret} is in a response: {b}");
        }
    }
}

#[test]
fn vault_rotate_reseals_everything_and_the_old_key_is_then_unneeded() {
    let fake = fakes::openai(&[GOOD]);
    let tm = fakes::mcp("tm-secret-key");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rot.sqlite3");
    let old = "a1".repeat(32);
    let new = "b2".repeat(32);
    // Store three keys under the old vault key.
    let child = crate::cli::serve_test_db(dir.path(), &db, &[("VAULT_KEY", &old)]);
    let url = child.url.clone();
    let a = crate::harness::client();
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = crate::harness::send(
            &a,
            "POST",
            &format!("{url}/api/auth/register"),
            &[("content-type", "application/json")],
            Some(
                json!({"email": format!("u{i}@example.com"), "password": crate::harness::PASSWORD})
                    .to_string()
                    .as_bytes(),
            ),
        );
        let t = r.json()["token"].as_str().unwrap().to_string();
        ids.push(r.json()["user"]["id"].as_str().unwrap().to_string());
        let (p, body) = if i == 2 {
            (
                "task_master",
                json!({"api_key": "tm-secret-key", "base_url": tm.url}),
            )
        } else {
            ("openai", json!({"api_key": GOOD, "base_url": fake.url}))
        };
        let auth = format!("Bearer {t}");
        let r = crate::harness::send(
            &a,
            "PUT",
            &format!("{url}/api/integrations/{p}"),
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Rotate while the old server still runs (it keeps serving; SQLite serialises writers).
    let rotate = |env: &[(&str, &str)]| {
        let mut cmd = crate::cli::bin();
        cmd.args([
            "vault",
            "rotate",
            "--batch",
            "2",
            "--profile",
            "test",
            "--database-url",
            db.to_str().unwrap(),
        ])
        .current_dir(dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let o = rotate(&[("VAULT_KEY", &new), ("VAULT_KEYS_PREVIOUS", &old)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("re-sealed 3 key(s)"), "{out}");
    let health = crate::harness::send(&a, "GET", &format!("{url}/api/health"), &[], None);
    assert_eq!(health.status, 200);
    // Trace logging covers the key checks (the MCP one ends its session with a DELETE):
    // no key reaches the logs.
    let logs = child.stop(15);
    assert!(logs.contains("integration"), "logs were captured");
    for secret in [GOOD, "tm-secret-key"] {
        assert!(!logs.contains(secret), "{secret} is in the logs");
    }
    // Running it again finds nothing to do.
    let o = rotate(&[("VAULT_KEY", &new), ("VAULT_KEYS_PREVIOUS", &old)]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("re-sealed 0 key(s)"));
    // Every row is now under the new key, and opens without the old one.
    let c = rusqlite::Connection::open(&db).unwrap();
    let key_ids: Vec<String> = c
        .prepare("SELECT DISTINCT key_id FROM integrations")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let vault_new =
        vel_tutor::vault::Vault::new(&vel_tutor::config::Secret::new(new.clone()), &[]).unwrap();
    assert_eq!(key_ids, [vault_new.current_key_id()]);
    let rows: Vec<(String, String, Vec<u8>)> = c
        .prepare("SELECT user_id, provider, sealed_key FROM integrations")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 3);
    for (u, p, sealed) in rows {
        let key = vault_new
            .open(
                &vel_tutor::vault::Sealed(sealed),
                &vel_tutor::vault::binding(&u, &p),
            )
            .unwrap();
        assert_eq!(
            key.expose(),
            if p == "openai" { GOOD } else { "tm-secret-key" }
        );
    }
    // Rotating without the key the rows were sealed under reports them and exits 1.
    let o = rotate(&[("VAULT_KEY", &"c3".repeat(32))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not configured"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
