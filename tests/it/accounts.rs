//! Accounts against the real server: register/login/logout/refresh/me, every JWT rejection
//! path with its own forged token, personal tokens, roles and IDOR.

use crate::harness::{PASSWORD, TestServer};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use vel_tutor::config::{Secret, decl::TEST_SECRET_KEY_BASE};

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(sub: &str, iss: &str, exp: i64) -> Value {
    json!({"sub": sub, "role": "admin", "iss": iss, "iat": now() - 10, "exp": exp, "jti": uuid::Uuid::new_v4().to_string()})
}

fn sign(alg: Algorithm, secret: &str, c: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        c,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A token whose header claims `alg` but is signed with HMAC-SHA256 over the right secret
/// (the classic algorithm-confusion forgery).
fn confused(alg: &str, c: &Value) -> String {
    use hmac::{KeyInit, Mac};
    let head = b64(&json!({"alg": alg, "typ": "JWT"}));
    let body = b64(c);
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(TEST_SECRET_KEY_BASE.as_bytes()).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    let sig = mac.finalize().into_bytes();
    format!(
        "{head}.{body}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    )
}

#[test]
fn register_login_me_logout_refresh() {
    let s = TestServer::start();
    let r = s.post_json(
        "/api/auth/register",
        &json!({"email": "  Ada@Example.COM ", "password": PASSWORD, "name": "Ada"}),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let j = r.json();
    assert_eq!(j["user"]["email"], "ada@example.com");
    assert_eq!(j["user"]["role"], "user");
    assert_eq!(j["user"]["name"], "Ada");
    assert!(j["user"].get("password_hash").is_none() && !r.body.contains("$2b$"));
    assert!(j["expires_at"].as_str().unwrap().ends_with('Z'));
    let token = j["token"].as_str().unwrap().to_string();

    // Same email, other case: 409.
    let r = s.post_json(
        "/api/auth/register",
        &json!({"email": "ADA@example.com", "password": PASSWORD}),
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (409, "conflict"));

    let me = s.authed("GET", "/api/auth/me", &token, None);
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"]["email"], "ada@example.com");

    let login = s.login("ada@example.com", PASSWORD);
    assert_eq!(login.status, 200);
    let t2 = login.json()["token"].as_str().unwrap().to_string();

    // Refresh: new token works, old one is revoked at once.
    let r = s.authed("POST", "/api/auth/refresh", &t2, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let t3 = r.json()["token"].as_str().unwrap().to_string();
    assert_ne!(t3, t2);
    assert_eq!(s.authed("GET", "/api/auth/me", &t2, None).status, 401);
    assert_eq!(s.authed("GET", "/api/auth/me", &t3, None).status, 200);

    // Logout revokes only that token.
    assert_eq!(s.authed("POST", "/api/auth/logout", &t3, None).status, 204);
    assert_eq!(s.authed("GET", "/api/auth/me", &t3, None).status, 401);
    assert_eq!(s.authed("GET", "/api/auth/me", &token, None).status, 200);
}

#[test]
fn password_policy_and_input_errors_are_422_with_fields() {
    let s = TestServer::start();
    let cases = [
        (
            json!({"email": "a@b.co", "password": "Short1!"}),
            "password",
            "at least 12",
        ),
        (
            json!({"email": "a@b.co", "password": "alllowercase1!"}),
            "password",
            "upper-case",
        ),
        (
            json!({"email": "a@b.co", "password": "NoDigitsHere!!"}),
            "password",
            "digit",
        ),
        (
            json!({"email": "a@b.co", "password": "NoSymbols1234a"}),
            "password",
            "symbol",
        ),
        (
            json!({"email": "Long1!Long1!@b.co", "password": "Long1!Long1!@b.co"}),
            "password",
            "not be the email",
        ),
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            "email",
            "valid email",
        ),
    ];
    for (body, field, msg) in cases {
        let r = s.post_json("/api/auth/register", &body, &[]);
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        let f = r.json()["error"]["fields"][field]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(f.contains(msg), "{body}: {f}");
    }
    let r = s.post_json("/api/auth/register", &json!({"email": "a@b.co"}), &[]);
    assert_eq!(r.status, 422, "missing password is a shape error");
    let r = s.request(
        "POST",
        "/api/auth/register",
        &[("content-type", "application/json")],
        Some(b"{\"email\":"),
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_request"));
    let r = s.request(
        "POST",
        "/api/auth/login",
        &[("content-type", "text/plain")],
        Some(b"hi"),
    );
    assert_eq!(r.status, 415);
    // Nothing was stored by any of these.
    assert!(s.app().storage.user_by_email("a@b.co").unwrap().is_none());
}

#[test]
fn unknown_email_and_wrong_password_get_the_same_answer() {
    let s = TestServer::start();
    s.register("bob@example.com");
    let strip = |v: Value| {
        let mut v = v;
        v["error"]["request_id"] = json!(null);
        v
    };
    let wrong = s.login("bob@example.com", "Wrong-Password-1!");
    let unknown = s.login("nobody@example.com", "Wrong-Password-1!");
    let garbage = s.login("not an email", "x");
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(garbage.status, 401);
    assert_eq!(strip(wrong.json()), strip(unknown.json()));
    assert_eq!(strip(wrong.json()), strip(garbage.json()));
}

#[test]
fn registration_can_be_closed() {
    let s = TestServer::start_with(&[("auth.allow_registration", "false")]);
    let r = s.post_json(
        "/api/auth/register",
        &json!({"email": "x@y.co", "password": PASSWORD}),
        &[],
    );
    assert_eq!((r.status, r.error_code().as_str()), (403, "forbidden"));
}

#[test]
fn every_forged_or_stale_jwt_is_401() {
    let s = TestServer::start();
    let (good, uid) = s.register("eve@example.com");
    let (doomed, doomed_id) = s.register("gone@example.com");
    let (revoked, _) = s.register("rev@example.com");
    assert_eq!(
        s.authed("POST", "/api/auth/logout", &revoked, None).status,
        204
    );
    let (_, admin_id) = s.admin("root@example.com");
    let _ = admin_id;
    let audit = vel_tutor::model::AuditEvent::security("user.deleted", &Default::default(), None);
    s.app().storage.delete_user(&doomed_id, &audit).unwrap();

    let ok_claims = claims(&uid, "vel_tutor", now() + 3600);
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&ok_claims)
    );
    let mut bad_sig = good.clone();
    bad_sig.pop();
    bad_sig.push(if good.ends_with('A') { 'B' } else { 'A' });
    let cases: Vec<(&str, String)> = vec![
        ("alg none", none),
        ("RS256 header, HMAC body", confused("RS256", &ok_claims)),
        ("ES256 header, HMAC body", confused("ES256", &ok_claims)),
        (
            "HS384 with the right secret",
            sign(Algorithm::HS384, TEST_SECRET_KEY_BASE, &ok_claims),
        ),
        ("bad signature", bad_sig),
        (
            "other secret",
            sign(
                Algorithm::HS256,
                "some-other-secret-0123456789-abcdef",
                &ok_claims,
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::HS256,
                TEST_SECRET_KEY_BASE,
                &claims(&uid, "evil", now() + 3600),
            ),
        ),
        (
            "expired",
            sign(
                Algorithm::HS256,
                TEST_SECRET_KEY_BASE,
                &claims(&uid, "vel_tutor", now() - 5),
            ),
        ),
        ("revoked", revoked),
        ("deleted user", doomed),
        ("garbage", "not.a.jwt".to_string()),
        ("empty", String::new()),
    ];
    // The control: a correctly signed HS256 token without a kid is accepted.
    let control = sign(Algorithm::HS256, TEST_SECRET_KEY_BASE, &ok_claims);
    assert_eq!(s.authed("GET", "/api/auth/me", &control, None).status, 200);
    assert_eq!(s.authed("GET", "/api/auth/me", &good, None).status, 200);
    for (name, token) in cases {
        let r = s.authed("GET", "/api/auth/me", &token, None);
        assert_eq!(r.status, 401, "{name} was accepted: {}", r.body);
        assert_eq!(r.error_code(), "unauthorized", "{name}");
    }
    assert_eq!(
        s.request(
            "GET",
            "/api/auth/me",
            &[("authorization", "Basic abc")],
            None
        )
        .status,
        401
    );
    assert_eq!(s.get("/api/auth/me").status, 401);
}

#[test]
fn tokens_signed_with_a_previous_secret_still_work() {
    let old = "old-secret-base-0123456789-0123456789-abc";
    let s = TestServer::start_with(&[("auth.secret_key_base_previous", old)]);
    let (_, uid) = s.register("rot@example.com");
    let keys = vel_tutor::auth::jwt::Keys::new(&Secret::new(old), &[], "vel_tutor", 1).unwrap();
    let (t, _) = keys.issue(&uid, "user").unwrap();
    assert_eq!(s.authed("GET", "/api/auth/me", &t, None).status, 200);
    let stranger = vel_tutor::auth::jwt::Keys::new(
        &Secret::new("never-configured-secret-0123456789"),
        &[],
        "vel_tutor",
        1,
    )
    .unwrap();
    let (t, _) = stranger.issue(&uid, "user").unwrap();
    assert_eq!(s.authed("GET", "/api/auth/me", &t, None).status, 401);
}

#[test]
fn personal_tokens_are_shown_once_usable_and_revocable() {
    let s = TestServer::start();
    let (jwt, _) = s.register("sdk@example.com");
    let r = s.authed(
        "POST",
        "/api/tokens",
        &jwt,
        Some(&json!({"name": "ci script"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let j = r.json();
    let token = j["token"].as_str().unwrap().to_string();
    let id = j["id"].as_str().unwrap().to_string();
    assert!(token.starts_with("vt_") && token.len() == 46, "{token}");
    assert_eq!(j["prefix"], &token[..7]);

    let list = s.authed("GET", "/api/tokens", &jwt, None);
    assert_eq!(list.status, 200);
    assert!(
        !list.body.contains(&token),
        "the token is never shown again"
    );
    assert_eq!(list.json()["tokens"][0]["last_used_at"], Value::Null);

    let me = s.authed("GET", "/api/auth/me", &token, None);
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"]["email"], "sdk@example.com");
    let list = s.authed("GET", "/api/tokens", &jwt, None).json();
    assert!(
        list["tokens"][0]["last_used_at"].as_str().is_some(),
        "last use recorded"
    );

    assert_eq!(
        s.authed("DELETE", &format!("/api/tokens/{id}"), &jwt, None)
            .status,
        204
    );
    assert_eq!(s.authed("GET", "/api/auth/me", &token, None).status, 401);
    assert_eq!(
        s.authed("DELETE", &format!("/api/tokens/{id}"), &jwt, None)
            .status,
        404
    );
    let r = s.authed("POST", "/api/tokens", &jwt, Some(&json!({"name": ""})));
    assert_eq!(r.status, 422);
    // A made-up vt_ token is just unauthorized.
    assert_eq!(
        s.authed(
            "GET",
            "/api/auth/me",
            "vt_madeupmadeupmadeupmadeupmadeupmadeupmadeu",
            None
        )
        .status,
        401
    );
}

#[test]
fn another_users_ids_are_404_not_403() {
    let s = TestServer::start();
    let (alice, _) = s.register("alice@example.com");
    let (mallory, mallory_id) = s.register("mallory@example.com");
    let r = s.authed(
        "POST",
        "/api/tokens",
        &alice,
        Some(&json!({"name": "mine"})),
    );
    let alice_token_id = r.json()["id"].as_str().unwrap().to_string();
    // Mallory cannot see, revoke or even detect Alice's token.
    let r = s.authed(
        "DELETE",
        &format!("/api/tokens/{alice_token_id}"),
        &mallory,
        None,
    );
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    let r2 = s.authed("DELETE", "/api/tokens/does-not-exist", &mallory, None);
    assert_eq!(r2.status, 404);
    assert_eq!(r.json()["error"]["message"], r2.json()["error"]["message"]);
    assert!(
        !s.authed("GET", "/api/tokens", &mallory, None)
            .body
            .contains(&alice_token_id)
    );
    assert_eq!(
        s.authed("GET", "/api/tokens", &alice, None).json()["tokens"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Admin routes are closed to users whatever the id.
    for (m, p) in [
        ("GET", "/api/users".to_string()),
        ("DELETE", format!("/api/users/{mallory_id}")),
        ("GET", "/api/audit".to_string()),
    ] {
        assert_eq!(s.authed(m, &p, &mallory, None).status, 403, "{m} {p}");
    }
    let r = s.authed(
        "PATCH",
        &format!("/api/users/{mallory_id}"),
        &mallory,
        Some(&json!({"role": "admin"})),
    );
    assert_eq!(r.status, 403);
}

#[test]
fn admins_manage_users_and_role_changes_apply_to_issued_tokens() {
    let s = TestServer::start();
    let (root, root_id) = s.admin("root@example.com");
    let (user, user_id) = s.register("pat@example.com");
    let list = s.authed("GET", "/api/users", &root, None);
    assert_eq!(list.status, 200);
    let emails: Vec<String> = list.json()["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(emails, ["root@example.com", "pat@example.com"]);
    // Pagination.
    let page = s.authed("GET", "/api/users?limit=1", &root, None).json();
    assert_eq!(page["users"].as_array().unwrap().len(), 1);
    let next = page["next_cursor"].as_str().unwrap();
    let page2 = s
        .authed(
            "GET",
            &format!("/api/users?limit=1&cursor={next}"),
            &root,
            None,
        )
        .json();
    assert_eq!(page2["users"][0]["email"], "pat@example.com");

    assert_eq!(s.authed("GET", "/api/users", &user, None).status, 403);
    let r = s.authed(
        "PATCH",
        &format!("/api/users/{user_id}"),
        &root,
        Some(&json!({"role": "admin"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["user"]["role"], "admin");
    // The token issued while pat was a user now carries admin rights.
    assert_eq!(s.authed("GET", "/api/users", &user, None).status, 200);
    let r = s.authed(
        "PATCH",
        &format!("/api/users/{user_id}"),
        &root,
        Some(&json!({"role": "god"})),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        s.authed(
            "PATCH",
            "/api/users/nope",
            &root,
            Some(&json!({"role": "user"}))
        )
        .status,
        404
    );

    // Demote pat again, then root cannot demote or delete the last admin.
    s.authed(
        "PATCH",
        &format!("/api/users/{user_id}"),
        &root,
        Some(&json!({"role": "user"})),
    );
    assert_eq!(s.authed("GET", "/api/users", &user, None).status, 403);
    let r = s.authed(
        "PATCH",
        &format!("/api/users/{root_id}"),
        &root,
        Some(&json!({"role": "user"})),
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        s.authed("DELETE", &format!("/api/users/{root_id}"), &root, None)
            .status,
        409
    );

    assert_eq!(
        s.authed("DELETE", &format!("/api/users/{user_id}"), &root, None)
            .status,
        204
    );
    assert_eq!(
        s.authed("GET", "/api/auth/me", &user, None).status,
        401,
        "a deleted user's token is dead"
    );
    assert_eq!(
        s.authed("DELETE", &format!("/api/users/{user_id}"), &root, None)
            .status,
        404
    );
}

#[test]
fn expired_revocations_are_purged() {
    let s = TestServer::start();
    let st = &s.app().storage;
    st.revoke_jti("old-jti", "u", "2000-01-01T00:00:00.000000Z", None)
        .unwrap();
    st.revoke_jti("live-jti", "u", "2999-01-01T00:00:00.000000Z", None)
        .unwrap();
    // The sweeper may get there first; either way the expired id goes and the live stays.
    assert!(st.purge_expired_revocations().unwrap() <= 1);
    assert!(!st.is_jti_revoked("old-jti").unwrap());
    assert_eq!(st.purge_expired_revocations().unwrap(), 0);
    assert!(st.is_jti_revoked("live-jti").unwrap());
}
