//! Test harness: starts the real server on 127.0.0.1:0 in the test profile with a temp
//! SQLite file, and a small client over ureq that never treats a status as an error.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use vel_tutor::app::Running;
use vel_tutor::config::{self, Config, Inputs};

pub struct TestServer {
    pub running: Option<Running>,
    pub url: String,
    pub dir: tempfile::TempDir,
    agent: ureq::Agent,
}

pub struct TestResp {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl TestResp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The `error.code` of an error envelope.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The envelope's `error.message` ("" when there is none).
    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// Test-profile inputs rooted in `dir`, with `env` and `--set` overrides.
pub fn inputs(dir: &std::path::Path, env: &[(&str, &str)], set: &[(&str, &str)]) -> Inputs {
    Inputs {
        profile_flag: Some("test".into()),
        config_flag: None,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cli: set
            .iter()
            .map(|(k, v)| ("--set".to_string(), k.to_string(), v.to_string()))
            .collect(),
        cwd: dir.to_path_buf(),
    }
}

pub fn test_config(dir: &std::path::Path, set: &[(&str, &str)]) -> Config {
    let db = dir.join("test.sqlite3");
    let mut all: Vec<(&str, &str)> = vec![("database.url", db.to_str().unwrap())];
    all.extend_from_slice(set);
    let loaded = config::load(&inputs(dir, &[], &all));
    loaded
        .config
        .unwrap_or_else(|| panic!("test config invalid: {:?}", loaded.layered.problems))
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    /// Starts a server whose config is the test profile plus `set` (key, value) overrides.
    pub fn start_with(set: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let config = test_config(dir.path(), set);
        let running = vel_tutor::app::start(config).expect("server starts");
        let url = running.url();
        TestServer {
            running: Some(running),
            url,
            dir,
            agent: client(),
        }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("test.sqlite3")
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> TestResp {
        send(
            &self.agent,
            method,
            &format!("{}{path}", self.url),
            headers,
            body,
        )
    }

    pub fn get(&self, path: &str) -> TestResp {
        self.request("GET", path, &[], None)
    }

    pub fn post_json(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> TestResp {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.request("POST", path, &h, Some(body.to_string().as_bytes()))
    }
}

pub const PASSWORD: &str = "Correct-Horse-42!";

impl TestServer {
    pub fn app(&self) -> &vel_tutor::app::App {
        &self.running.as_ref().unwrap().app
    }

    /// Registers `email` with the standard test password; returns (token, user id).
    pub fn register(&self, email: &str) -> (String, String) {
        let r = self.post_json(
            "/api/auth/register",
            &serde_json::json!({"email": email, "password": PASSWORD}),
            &[],
        );
        assert_eq!(r.status, 201, "register {email}: {}", r.body);
        let j = r.json();
        (
            j["token"].as_str().unwrap().to_string(),
            j["user"]["id"].as_str().unwrap().to_string(),
        )
    }

    /// Creates an admin directly in storage (as `vel_tutor admin create` does) and logs in.
    pub fn admin(&self, email: &str) -> (String, String) {
        use vel_tutor::model::{Actor, AuditEvent, Role};
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        let audit = AuditEvent::security("user.admin_created", &Actor::default(), None);
        let u = self
            .app()
            .storage
            .create_user(email, None, &hash, Role::Admin, &audit)
            .unwrap();
        (
            self.login(email, PASSWORD).json()["token"]
                .as_str()
                .unwrap()
                .to_string(),
            u.id,
        )
    }

    pub fn login(&self, email: &str, password: &str) -> TestResp {
        self.post_json(
            "/api/auth/login",
            &serde_json::json!({"email": email, "password": password}),
            &[],
        )
    }

    /// A request with `Authorization: Bearer token`.
    pub fn authed(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> TestResp {
        let auth = format!("Bearer {token}");
        let mut h = vec![("authorization", auth.as_str())];
        match body {
            Some(b) => {
                h.push(("content-type", "application/json"));
                self.request(method, path, &h, Some(b.to_string().as_bytes()))
            }
            None => self.request(method, path, &h, None),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(5));
        }
    }
}

pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> TestResp {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let result = match body {
        Some(bytes) => agent.run(b.body(bytes.to_vec()).unwrap()),
        None => agent.run(b.body(()).unwrap()),
    };
    let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    TestResp {
        status,
        headers,
        body,
    }
}

/// Sends raw bytes on a fresh connection and returns everything the server wrote back
/// until it closes or goes quiet for `quiet`.
pub fn raw(url: &str, bytes: &[u8], quiet: Duration) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(quiet)).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL of a real peer server (../shared/PEERS.md) from `env_var`, else `default`,
/// when something listens there. Outside CI a missing peer is reported and `None`
/// returned (the test passes); in CI, where `.ci/run` starts every peer, it fails.
pub fn peer_url(env_var: &str, default: &str, what: &str) -> Option<String> {
    let url = std::env::var(env_var).unwrap_or_else(|_| default.to_string());
    let addr = url.trim_start_matches("http://").split('/').next();
    let up = addr.and_then(|a| a.parse().ok()).is_some_and(|a| {
        std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(1)).is_ok()
    });
    if up {
        return Some(url);
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI must run the {what} tests: nothing at {url} (see .ci/run)"
    );
    eprintln!("{what} tests: nothing at {url}; start it as ../shared/PEERS.md shows");
    None
}
