//! The perimeter against the real server: rate limits (IP and user, concurrency), CORS,
//! the origin check, trusted proxies, the audit log, and secrets kept out of disk and logs.

use crate::harness::{PASSWORD, TestServer};
use serde_json::json;
use std::sync::{Arc, Barrier};
use std::time::Duration;

#[test]
fn sixth_login_in_a_minute_is_429_with_retry_after() {
    let s = TestServer::start_with(&[
        ("rate_limit.enabled", "true"),
        ("rate_limit.auth_per_minute", "5"),
    ]);
    s.register("rl@example.com"); // 1
    for i in 2..=5 {
        let r = s.login("rl@example.com", PASSWORD);
        assert_eq!(r.status, 200, "login {i}");
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some((5 - i).to_string().as_str())
        );
    }
    let r = s.login("rl@example.com", PASSWORD);
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert!(r.header("x-ratelimit-reset").is_some());
    // Another client IP (through a trusted proxy) has its own window.
    let s2 = TestServer::start_with(&[
        ("rate_limit.enabled", "true"),
        ("rate_limit.auth_per_minute", "1"),
        ("server.trusted_proxies", "127.0.0.1"),
    ]);
    let body = json!({"email": "x@example.com", "password": "nope"});
    let ip = |a: &str| {
        s2.post_json("/api/auth/login", &body, &[("x-forwarded-for", a)])
            .status
    };
    assert_eq!(ip("203.0.113.1"), 401);
    assert_eq!(ip("203.0.113.1"), 429);
    assert_eq!(ip("203.0.113.2"), 401);
}

#[test]
fn forwarded_for_is_ignored_from_untrusted_peers() {
    let s = TestServer::start_with(&[
        ("rate_limit.enabled", "true"),
        ("rate_limit.auth_per_minute", "1"),
    ]);
    let body = json!({"email": "x@example.com", "password": "nope"});
    assert_eq!(
        s.post_json(
            "/api/auth/login",
            &body,
            &[("x-forwarded-for", "198.51.100.1")]
        )
        .status,
        401
    );
    // A spoofed header from an untrusted peer does not buy a fresh window.
    assert_eq!(
        s.post_json(
            "/api/auth/login",
            &body,
            &[("x-forwarded-for", "198.51.100.2")]
        )
        .status,
        429
    );
}

#[test]
fn user_hourly_limit_applies_to_authenticated_routes() {
    let s = TestServer::start_with(&[
        ("rate_limit.enabled", "true"),
        ("rate_limit.user_per_hour", "3"),
    ]);
    let (t, _) = s.register("hour@example.com");
    for _ in 0..3 {
        assert_eq!(s.authed("GET", "/api/auth/me", &t, None).status, 200);
    }
    let r = s.authed("GET", "/api/auth/me", &t, None);
    assert_eq!((r.status, r.error_code().as_str()), (429, "rate_limited"));
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() > 3000);
    // Another user is unaffected.
    let (t2, _) = s.register("other@example.com");
    assert_eq!(s.authed("GET", "/api/auth/me", &t2, None).status, 200);
}

#[test]
fn eleventh_concurrent_request_is_429_too_many_concurrent() {
    let s = TestServer::start_with(&[
        ("rate_limit.enabled", "true"),
        ("rate_limit.user_concurrent", "10"),
        ("server.workers", "16"),
        ("database.timeout_ms", "20000"),
    ]);
    let (t, _) = s.register("slow@example.com");
    // Stall the database from outside: every write now waits, so 10 token creations hang
    // in flight (holding their slots) while the 11th is refused at the door.
    let blocker = rusqlite::Connection::open(s.db_path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let barrier = Arc::new(Barrier::new(11));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..11)
            .map(|i| {
                let (s, t, barrier) = (&s, &t, barrier.clone());
                scope.spawn(move || {
                    barrier.wait();
                    // Stagger so the limiter sees them in a known order.
                    std::thread::sleep(Duration::from_millis(40 * i));
                    s.authed(
                        "POST",
                        "/api/tokens",
                        t,
                        Some(&json!({"name": format!("t{i}")})),
                    )
                    .status
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        blocker.execute_batch("ROLLBACK").unwrap();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refused = statuses.iter().filter(|&&c| c == 429).count();
    let created = statuses.iter().filter(|&&c| c == 201).count();
    assert_eq!((refused, created), (1, 10), "{statuses:?}");
    assert_eq!(
        statuses[10], 429,
        "the last one in is the one refused: {statuses:?}"
    );
}

#[test]
fn cors_preflight_allowed_and_denied() {
    let s = TestServer::start_with(&[("cors.origins", "https://app.example.com")]);
    let pre = |origin: &str| {
        s.request(
            "OPTIONS",
            "/api/auth/login",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
            None,
        )
    };
    let ok = pre("https://app.example.com");
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        ok.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    assert_eq!(ok.header("access-control-max-age"), Some("86400"));
    assert!(
        ok.header("access-control-allow-headers")
            .unwrap()
            .contains("authorization")
    );
    let denied = pre("https://evil.example.net");
    assert_eq!(denied.status, 204);
    assert!(
        denied
            .headers
            .keys()
            .all(|k| !k.starts_with("access-control-")),
        "{:?}",
        denied.headers
    );
    // Preflight needs no auth even on an authenticated route.
    let r = s.request(
        "OPTIONS",
        "/api/auth/me",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "GET"),
        ],
        None,
    );
    assert_eq!(r.status, 204);
    // Actual responses carry the header for allowed origins only.
    let r = s.request(
        "GET",
        "/api/health",
        &[("origin", "https://app.example.com")],
        None,
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let r = s.request(
        "GET",
        "/api/health",
        &[("origin", "https://evil.example.net")],
        None,
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn check_origin_refuses_state_changes_from_foreign_origins() {
    let s = TestServer::start_with(&[
        ("cors.origins", "https://app.example.com"),
        ("cors.check_origin", "true"),
    ]);
    let body = json!({"email": "o@example.com", "password": PASSWORD});
    let r = s.post_json(
        "/api/auth/register",
        &body,
        &[("origin", "https://evil.example.net")],
    );
    assert_eq!((r.status, r.error_code().as_str()), (403, "forbidden"));
    assert!(
        s.app()
            .storage
            .user_by_email("o@example.com")
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.post_json(
            "/api/auth/register",
            &body,
            &[("origin", "https://app.example.com")]
        )
        .status,
        201
    );
    // No Origin (curl, SDKs) is fine; reads are fine from anywhere.
    assert_eq!(s.login("o@example.com", PASSWORD).status, 200);
    assert_eq!(
        s.request(
            "GET",
            "/api/health",
            &[("origin", "https://evil.example.net")],
            None
        )
        .status,
        200
    );
}

#[test]
fn audit_records_login_failure_logout_with_ip_and_user_agent() {
    let s = TestServer::start_with(&[("server.trusted_proxies", "127.0.0.1")]);
    let (root, _) = s.admin("root@example.com");
    let (_, uid) = s.register("audited@example.com");
    let h = [
        ("user-agent", "audit-test/1.0"),
        ("x-forwarded-for", "192.0.2.77"),
    ];
    let ok = s.post_json(
        "/api/auth/login",
        &json!({"email": "audited@example.com", "password": PASSWORD}),
        &h,
    );
    assert_eq!(ok.status, 200);
    let token = ok.json()["token"].as_str().unwrap().to_string();
    let bad = s.post_json(
        "/api/auth/login",
        &json!({"email": "audited@example.com", "password": "Wrong-Pass-99!"}),
        &h,
    );
    assert_eq!(bad.status, 401);
    let auth = format!("Bearer {token}");
    let out = s.request(
        "POST",
        "/api/auth/logout",
        &[("authorization", auth.as_str()), h[0], h[1]],
        None,
    );
    assert_eq!(out.status, 204);

    let r = s.authed(
        "GET",
        &format!("/api/audit?user_id={uid}&limit=500"),
        &root,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let entries = r.json()["entries"].as_array().unwrap().clone();
    let security: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] != "request")
        .collect();
    let actions: Vec<&str> = security
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "auth.logout",
            "auth.login_failed",
            "auth.login",
            "user.registered"
        ]
    );
    for e in &security[..3] {
        assert_eq!(e["ip"], "192.0.2.77", "{e}");
        assert_eq!(e["user_agent"], "audit-test/1.0", "{e}");
        assert!(e["request_id"].as_str().is_some());
    }
    assert_eq!(security[0]["ip"], "192.0.2.77");
    // Each API call has its own row too, with route, status and duration.
    let calls: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "request")
        .collect();
    let routes: Vec<(&str, i64)> = calls
        .iter()
        .map(|e| (e["route"].as_str().unwrap(), e["status"].as_i64().unwrap()))
        .collect();
    assert!(routes.contains(&("/api/auth/logout", 204)), "{routes:?}");
    assert!(
        calls
            .iter()
            .all(|e| e["duration_ms"].as_f64().unwrap() >= 0.0)
    );
    // Filters and cursor pagination.
    let failed = s
        .authed("GET", "/api/audit?action=auth.login_failed", &root, None)
        .json();
    assert_eq!(failed["entries"].as_array().unwrap().len(), 1);
    assert_eq!(
        failed["entries"][0]["detail"]["email"],
        "audited@example.com"
    );
    let p1 = s.authed("GET", "/api/audit?limit=2", &root, None).json();
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let p2 = s
        .authed(
            "GET",
            &format!("/api/audit?limit=2&cursor={cursor}"),
            &root,
            None,
        )
        .json();
    assert!(p2["entries"][0]["id"].as_i64().unwrap() < p1["entries"][1]["id"].as_i64().unwrap());
    let future = s
        .authed("GET", "/api/audit?since=2999-01-01T00:00:00Z", &root, None)
        .json();
    assert_eq!(future["entries"].as_array().unwrap().len(), 0);
    assert_eq!(
        s.authed("GET", "/api/audit?since=yesterday", &root, None)
            .status,
        422
    );
}

#[test]
fn audit_rows_queued_at_shutdown_are_flushed() {
    let mut s = TestServer::start();
    for _ in 0..50 {
        s.get("/api/nope");
    }
    let db = s.db_path();
    s.running.take().unwrap().shutdown(Duration::from_secs(5));
    let conn = rusqlite::Connection::open(db).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit_logs WHERE action = 'request' AND status = 404",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 50);
}

#[test]
fn password_hashing_never_takes_more_than_half_the_workers() {
    // 2 workers → 1 hashing slot. With a slow bcrypt cost, a second concurrent login is
    // refused at once (503 + Retry-After) instead of taking the last worker.
    let s = TestServer::start_with(&[("server.workers", "2"), ("auth.bcrypt_cost", "12")]);
    s.register("hash@example.com");
    let barrier = Barrier::new(2);
    let results: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let (s, barrier) = (&s, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    std::thread::sleep(Duration::from_millis(60 * i));
                    let r = s.login("hash@example.com", PASSWORD);
                    (r.status, r.header("retry-after").map(String::from))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results[0].0, 200, "{results:?}");
    assert_eq!(results[1], (503, Some("1".to_string())), "{results:?}");
    // The other worker still answers while a hash runs.
    assert_eq!(s.get("/api/health").status, 200);
}
