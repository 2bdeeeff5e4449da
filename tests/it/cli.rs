//! The real binary: `serve` from an empty directory, `migrate` twice, `config check`,
//! `secret gen`, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vel_tutor"));
    // Only what each test sets: no stray VEL_TUTOR_* or provider keys from the machine.
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

#[test]
fn secret_gen_prints_64_fresh_characters() {
    let a = bin().args(["secret", "gen"]).output().unwrap();
    let b = bin().args(["secret", "gen"]).output().unwrap();
    let (a, b) = (
        String::from_utf8(a.stdout).unwrap(),
        String::from_utf8(b.stdout).unwrap(),
    );
    assert_eq!(a.trim().len(), 64);
    assert_ne!(a, b);
}

#[test]
fn serve_with_nothing_starts_in_dev_and_persists_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[], &[("PORT", "0")]);
    assert!(
        server.line.contains("listening on http://127.0.0.1:"),
        "{}",
        server.line
    );
    assert!(server.line.contains("profile dev"), "{}", server.line);
    let r = crate::harness::send(
        &crate::harness::client(),
        "GET",
        &format!("{}/api/health", server.url),
        &[],
        None,
    );
    assert_eq!(r.status, 200);

    let secrets = dir.path().join("data/dev_secrets.toml");
    let meta = std::fs::metadata(&secrets).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&secrets).unwrap();
    assert!(text.contains("secret_key_base") && text.contains("vault_key"));
    let db_mode = std::fs::metadata(dir.path().join("data/vel_tutor_dev.sqlite3"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        db_mode & 0o777,
        0o600,
        "the database is readable by its owner only"
    );
    let dir_mode = std::fs::metadata(dir.path().join("data"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    // SIGTERM: a clean exit with status 0.
    let err = server.stop(15);
    assert!(err.contains("WARNING: generated dev-only secrets"), "{err}");

    // A second start reuses the same secrets and does not warn again; SIGINT stops it.
    let server = serve(dir.path(), &[], &[("PORT", "0")]);
    assert!(server.line.contains("listening on"));
    let err = server.stop(2);
    assert_eq!(std::fs::read_to_string(&secrets).unwrap(), text);
    assert!(!err.contains("WARNING: generated"), "{err}");
}

/// A `vel_tutor serve` child, the first line it printed and the URL in it. Its stderr is
/// read as it comes (a pipe left unread fills at 64 KiB and then blocks the server); a
/// test that fails before `stop` does not leave it running (`Drop` kills it).
pub struct Served {
    pub child: std::process::Child,
    pub line: String,
    pub url: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `vel_tutor serve ARGS` in `dir` with `env` and waits for its URL line.
pub fn serve(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut cmd = bin();
    cmd.arg("serve")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    let mut pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut err = Vec::new();
        let _ = std::io::Read::read_to_end(&mut pipe, &mut err);
        String::from_utf8_lossy(&err).into_owned()
    });
    Served {
        child,
        line,
        url,
        stderr: Some(stderr),
    }
}

impl Served {
    /// Sends `sig`, expects a clean exit 0 within 10 s, and returns what it wrote to stderr.
    pub fn stop(mut self, sig: i32) -> String {
        unsafe_kill(self.child.id(), sig);
        assert_eq!(
            wait_timeout(&mut self.child, Duration::from_secs(10)),
            Some(0)
        );
        self.stderr.take().unwrap().join().unwrap()
    }
}

/// `vel_tutor serve` in the test profile on `db`, logging everything.
pub fn serve_test_db(dir: &std::path::Path, db: &std::path::Path, env: &[(&str, &str)]) -> Served {
    let args = [
        "--profile",
        "test",
        "--database-url",
        db.to_str().unwrap(),
        "--set",
        "logging.level=trace",
    ];
    serve(dir, &args, env)
}

/// Everything SQLite wrote for `db` (the file, its WAL and shared memory), as text.
pub fn disk(db: &std::path::Path) -> String {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(b) = std::fs::read(format!("{}{suffix}", db.display())) {
            all.extend(b);
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

pub fn unsafe_kill(pid: u32, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn wait_timeout(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

#[test]
fn migrate_twice_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let o = bin()
            .args([
                "migrate",
                "--profile",
                "test",
                "--database-url",
                "sqlite://m.sqlite3",
            ])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let first = run();
    assert!(first.contains("applied [1]"), "{first}");
    let second = run();
    assert!(second.contains("up to date at version 1"), "{second}");
}

#[test]
fn a_newer_schema_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("n.sqlite3");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL);
         INSERT INTO schema_migrations VALUES (999, 'future', 'x', '2030-01-01T00:00:00Z');",
    )
    .unwrap();
    drop(conn);
    let o = bin()
        .args([
            "serve",
            "--profile",
            "test",
            "--database-url",
            db.to_str().unwrap(),
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("schema is at version 999 but this binary only knows up to"),
        "{err}"
    );
}

#[test]
fn config_check_in_prod_without_secrets_exits_1_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["config", "check", "--profile", "prod"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("SECRET_KEY_BASE is required in prod"), "{err}");
    assert!(err.contains("VAULT_KEY is required in prod"), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("server.bind = \"[::]:4000\"  # default (prod)"),
        "{out}"
    );

    let o = bin()
        .args(["config", "check", "--profile", "prod"])
        .env("SECRET_KEY_BASE", "k".repeat(48))
        .env("VAULT_KEY", "ab".repeat(32))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains(&"k".repeat(48)));
    assert!(
        out.contains("auth.secret_key_base = \"[redacted]\"  # env SECRET_KEY_BASE"),
        "{out}"
    );
}

#[test]
fn prod_serve_refuses_to_start_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["serve", "--profile", "prod"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("SECRET_KEY_BASE") && err.contains("VAULT_KEY"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created when startup is refused"
    );
}

#[test]
fn passwords_and_tokens_never_reach_the_database_file_or_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("grep.sqlite3");
    let server = serve_test_db(dir.path(), &db, &[]);
    let url = server.url.clone();
    let a = crate::harness::client();
    let post = |path: &str, body: serde_json::Value, auth: Option<&str>| {
        let bearer = auth.map(|t| format!("Bearer {t}"));
        let mut h = vec![("content-type", "application/json")];
        if let Some(b) = &bearer {
            h.push(("authorization", b.as_str()));
        }
        crate::harness::send(
            &a,
            "POST",
            &format!("{url}{path}"),
            &h,
            Some(body.to_string().as_bytes()),
        )
    };
    let password = "Sekrit-Passw0rd-#42";
    let wrong = "Wr0ng-Passw0rd-#43";
    let r = post(
        "/api/auth/register",
        serde_json::json!({"email": "grep@example.com", "password": password}),
        None,
    );
    assert_eq!(r.status, 201);
    let jwt = r.json()["token"].as_str().unwrap().to_string();
    let r = post("/api/tokens", serde_json::json!({"name": "x"}), Some(&jwt));
    let vt = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(
        post(
            "/api/auth/login",
            serde_json::json!({"email": "grep@example.com", "password": wrong}),
            None
        )
        .status,
        401
    );
    let r = crate::harness::send(
        &a,
        "GET",
        &format!("{url}/api/auth/me?token={vt}"),
        &[("authorization", &format!("Bearer {vt}"))],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        post("/api/auth/logout", serde_json::json!({}), Some(&jwt)).status,
        204
    );

    let logs = server.stop(15);
    assert!(
        logs.contains("/api/auth/login 401"),
        "the logs were captured: {logs}"
    );

    let disk = disk(&db);
    assert!(disk.contains("grep@example.com"), "the database was read");
    for secret in [password, wrong, vt.as_str(), jwt.as_str()] {
        assert!(
            !disk.contains(secret),
            "{secret} found in the database files"
        );
        assert!(!logs.contains(secret), "{secret} found in the logs");
    }
}

#[test]
fn prod_style_json_logs_have_one_object_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.sqlite3");
    let args = [
        "--profile",
        "test",
        "--database-url",
        db.to_str().unwrap(),
        "--set",
        "logging.format=json",
        "--set",
        "logging.level=info",
    ];
    let server = serve(dir.path(), &args, &[("VEL_TUTOR__SERVER__NOPE", "1")]);
    let url = server.url.clone();
    let r = crate::harness::send(
        &crate::harness::client(),
        "GET",
        &format!("{url}/api/nope"),
        &[("x-request-id", "json-log-1")],
        None,
    );
    assert_eq!(r.status, 404);
    let err = server.stop(15);
    let objects: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let req = objects
        .iter()
        .find(|o| o["request_id"] == "json-log-1")
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(req["method"], "GET");
    assert_eq!(req["path"], "/api/nope");
    assert_eq!(req["status"], 404);
    assert!(req["duration_ms"].as_f64().is_some());
    assert!(req["ts"].as_str().unwrap().ends_with('Z'));
    // The unknown VEL_TUTOR__ variable was warned about on stderr and audited.
    assert!(err.contains("VEL_TUTOR__SERVER__NOPE"), "{err}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit_logs WHERE action = 'config.warning'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn admin_create_takes_the_password_from_env_or_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let base = ["--profile", "test", "--database-url", "sqlite://a.sqlite3"];
    let o = bin()
        .args(["admin", "create", "--email", "Root@Example.com"])
        .args(base)
        .env("VEL_TUTOR_ADMIN_PASSWORD", "Root-Password-123!")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("created admin root@example.com"));

    let mut child = bin()
        .args(["admin", "create", "--email", "second@example.com"])
        .args(base)
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Second-Password-456!\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A weak password and a taken email are refused with a clear message.
    let o = bin()
        .args(["admin", "create", "--email", "weak@example.com"])
        .args(base)
        .env("VEL_TUTOR_ADMIN_PASSWORD", "weak")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least 12 characters"));
    let o = bin()
        .args(["admin", "create", "--email", "root@example.com"])
        .args(base)
        .env("VEL_TUTOR_ADMIN_PASSWORD", "Root-Password-123!")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));

    let conn = rusqlite::Connection::open(dir.path().join("a.sqlite3")).unwrap();
    let roles: Vec<(String, String)> = conn
        .prepare("SELECT email, role FROM users ORDER BY email")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        roles,
        [
            ("root@example.com".into(), "admin".into()),
            ("second@example.com".into(), "admin".into())
        ]
    );
}

#[test]
fn the_server_recovers_after_running_out_of_file_descriptors() {
    // Unpatched tiny_http panicked in its accept thread on EMFILE and never accepted again.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 48; exec {} serve --profile test --database-url sqlite://fd.sqlite3 --set server.workers=2",
            env!("CARGO_BIN_EXE_vel_tutor")
        ))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        // Not read: a pipe nobody drains would block the server once 64 KiB of errors fill it.
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();
    let addr = url.trim_start_matches("http://").to_string();
    // More connections than the process has descriptors for.
    let flood: Vec<_> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    drop(flood);
    let mut status = 0;
    for _ in 0..30 {
        let a = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .new_agent();
        if let Ok(r) = a.get(&format!("{url}/api/health")).call() {
            status = r.status().as_u16();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        status, 200,
        "the server answers again once the flood is gone"
    );
    unsafe_kill(child.id(), 15);
    assert_eq!(wait_timeout(&mut child, Duration::from_secs(10)), Some(0));
}
