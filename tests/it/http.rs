//! The HTTP foundation against a real server on 127.0.0.1: envelopes, limits, request ids,
//! panics, and health.

use crate::harness::{TestServer, client, raw, send};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use vel_tutor::http::{self, ApiError, Req, Resp, ServerOptions};

/// A bare server running the real http layer with a dispatch of our own: `/echo` parses
/// JSON and returns it, `/panic` panics.
fn echo_server(max_body: u64) -> (http::ServerHandle, String) {
    let dispatch: http::Dispatch = Arc::new(|req: Req| {
        let result: Result<Resp, ApiError> = match req.path.as_str() {
            "/echo" => req
                .json::<Value>()
                .map(|v| Resp::json(200, &json!({ "got": v }))),
            "/panic" => panic!("boom with sk-secretsecretsecret"),
            _ => Err(ApiError::not_found("nothing here")),
        };
        result.unwrap_or_else(|e| Resp::error(&e, &req.request_id, true))
    });
    let opts = ServerOptions {
        bind: "127.0.0.1:0".into(),
        workers: 2,
        max_body_bytes: max_body,
        show_error_detail: true,
    };
    let h = http::start(opts, dispatch).unwrap();
    let url = format!("http://{}", h.addr);
    (h, url)
}

#[test]
fn health_reports_database_and_version() {
    let s = TestServer::start();
    let r = s.get("/api/health");
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(j["database"]["ok"], true);
    assert!(j["database"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert!(j["uptime_s"].as_u64().is_some());
    assert!(r.header("x-request-id").is_some_and(|v| v.len() >= 16));
}

#[test]
fn request_id_is_echoed_when_sane_and_replaced_otherwise() {
    let s = TestServer::start();
    let r = s.request(
        "GET",
        "/api/health",
        &[("x-request-id", "abc-123_x.y")],
        None,
    );
    assert_eq!(r.header("x-request-id"), Some("abc-123_x.y"));
    let r = s.request(
        "GET",
        "/api/health",
        &[("x-request-id", "bad id <script>")],
        None,
    );
    let id = r.header("x-request-id").unwrap();
    assert_ne!(id, "bad id <script>");
    assert_eq!(id.len(), 36, "a fresh uuid: {id}");
}

#[test]
fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
    let s = TestServer::start();
    let r = s.get("/api/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");
    assert_eq!(
        r.json()["error"]["request_id"].as_str(),
        r.header("x-request-id")
    );
    let r = s.request("DELETE", "/api/health", &[], None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, OPTIONS"));
    assert_eq!(r.error_code(), "method_not_allowed");
}

#[test]
fn malformed_json_is_400_wrong_type_415_wrong_shape_passes_through() {
    let (h, url) = echo_server(1 << 20);
    let a = client();
    let r = send(
        &a,
        "POST",
        &format!("{url}/echo"),
        &[("content-type", "application/json")],
        Some(b"{\"a\": "),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "bad_request");
    let r = send(
        &a,
        "POST",
        &format!("{url}/echo"),
        &[("content-type", "text/plain")],
        Some(b"{}"),
    );
    assert_eq!(r.status, 415);
    assert_eq!(r.error_code(), "unsupported_media_type");
    let r = send(
        &a,
        "POST",
        &format!("{url}/echo"),
        &[("content-type", "application/json")],
        Some(b"{\"a\":[1,2]}"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["got"]["a"][1], 2);
    h.shutdown(Duration::from_secs(2));
}

#[test]
fn declared_body_over_limit_is_413_without_reading_it() {
    let (h, url) = echo_server(2048);
    // Declares 100 GB and sends almost nothing: the answer must come at once, and the
    // server must survive (unpatched tiny_http aborted the process here).
    let out = raw(
        &url,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n{}",
        Duration::from_millis(500),
    );
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("\"payload_too_large\""), "{out}");
    let r = send(
        &client(),
        "POST",
        &format!("{url}/echo"),
        &[("content-type", "application/json")],
        Some(b"{\"ok\":1}"),
    );
    assert_eq!(r.status, 200, "server still serves after the 413");
    h.shutdown(Duration::from_secs(2));
}

#[test]
fn chunked_body_is_cut_off_at_the_limit() {
    let (h, url) = echo_server(2048);
    let mut req = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..8 {
        req.extend_from_slice(b"400\r\n");
        req.extend_from_slice(&[b' '; 0x400]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let out = raw(&url, &req, Duration::from_millis(1000));
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    // Just under the limit passes.
    let mut small = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    small.extend_from_slice(b"9\r\n{\"n\": 42}\r\n0\r\n\r\n");
    let out = raw(&url, &small, Duration::from_millis(1000));
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"n\":42"), "{out}");
    h.shutdown(Duration::from_secs(2));
}

#[test]
fn endless_header_line_is_refused_not_buffered() {
    let (h, url) = echo_server(2048);
    let mut req = b"GET /echo HTTP/1.1\r\nX-Long: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let out = raw(&url, &req, Duration::from_millis(1000));
    // The connection is closed (no request reaches a handler); the server goes on.
    assert!(!out.contains("200 OK"), "{out}");
    let r = send(
        &client(),
        "POST",
        &format!("{url}/echo"),
        &[("content-type", "application/json")],
        Some(b"1"),
    );
    assert_eq!(r.status, 200);
    h.shutdown(Duration::from_secs(2));
}

#[test]
fn panic_in_a_handler_is_500_with_request_id_and_the_worker_survives() {
    let (h, url) = echo_server(2048);
    let a = client();
    // More panics than workers: every worker must survive its panic.
    for i in 0..5 {
        let rid = format!("panic-{i}");
        let r = send(
            &a,
            "GET",
            &format!("{url}/panic"),
            &[("x-request-id", &rid)],
            None,
        );
        assert_eq!(r.status, 500);
        assert_eq!(r.error_code(), "internal");
        assert_eq!(r.json()["error"]["request_id"], rid.as_str());
        assert!(!r.body.contains("secretsecret"), "{}", r.body);
    }
    let r = send(
        &a,
        "POST",
        &format!("{url}/echo"),
        &[("content-type", "application/json")],
        Some(b"true"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["got"], true);
    h.shutdown(Duration::from_secs(2));
}

#[test]
fn health_is_503_down_when_the_database_file_is_unreadable() {
    let s = TestServer::start();
    assert_eq!(s.get("/api/health").status, 200);
    let path = s.db_path();
    // chmod 000 does not stop root (CI runs as root), so damage the header as well.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..16].copy_from_slice(b"garbage garbage!");
    std::fs::write(&path, &bytes).unwrap();
    let r = s.get("/api/health");
    assert_eq!(r.status, 503);
    let j = r.json();
    assert_eq!(j["status"], "down");
    assert_eq!(j["database"]["ok"], false);

    let s2 = TestServer::start();
    std::fs::remove_file(s2.db_path()).unwrap();
    let r = s2.get("/api/health");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "down");
}
