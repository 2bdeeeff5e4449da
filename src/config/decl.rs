//! The one declaration of every configuration key: its type, per-profile default and doc.
//! `config.example.toml`, validation and `config check` are all derived from this table.

use std::sync::OnceLock;

/// The value type of a key; decides how environment strings are parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Float,
    Bool,
    List,
    /// A string that must never be printed (keys, secrets, tokens).
    Secret,
    /// A list of secrets (previous keys kept for rotation).
    SecretList,
}

impl Kind {
    pub fn is_secret(self) -> bool {
        matches!(self, Kind::Secret | Kind::SecretList)
    }
}

/// One configuration key. Defaults are TOML literals for the dev, test and prod profiles;
/// an empty string means "no default" (unset).
#[derive(Clone, Debug)]
pub struct Decl {
    pub key: String,
    pub kind: Kind,
    pub defaults: [String; 3],
    pub doc: String,
}

/// The providers vel_tutor knows; `providers.<name>.*` is declared for each.
pub const PROVIDERS: [&str; 5] = ["openai", "groq", "perplexity", "task_master", "local"];
/// The kinds of work an agent does; `routing.<kind>` is declared for each.
pub const KINDS: [&str; 6] = [
    "reasoning",
    "code",
    "validation",
    "research",
    "general",
    "tool",
];

/// Fixed secrets of the test profile: public, so never valid outside tests.
pub const TEST_SECRET_KEY_BASE: &str = "test-profile-secret-key-base-not-for-production-use";
pub const TEST_VAULT_KEY: &str = "7465737470726f66696c657661756c746b65792d6e6f742d666f722d70726f64";

fn same(v: &str) -> [String; 3] {
    [v.to_string(), v.to_string(), v.to_string()]
}

fn per(dev: &str, test: &str, prod: &str) -> [String; 3] {
    [dev.to_string(), test.to_string(), prod.to_string()]
}

fn push(out: &mut Vec<Decl>, key: &str, kind: Kind, defaults: [String; 3], doc: &str) {
    out.push(Decl {
        key: key.to_string(),
        kind,
        defaults,
        doc: doc.to_string(),
    });
}

fn build() -> Vec<Decl> {
    use Kind::*;
    let mut d = Vec::new();
    let o = &mut d;
    push(
        o,
        "server.bind",
        Str,
        per("\"127.0.0.1:4000\"", "\"127.0.0.1:0\"", "\"[::]:4000\""),
        "Address to listen on. PORT replaces the port. \"[::]\" listens on IPv4 and IPv6.",
    );
    push(
        o,
        "server.workers",
        Int,
        per("16", "4", "64"),
        "Fixed number of request worker threads. A provider call holds its worker while the model answers, so this is also how many chats can wait at once.",
    );
    push(
        o,
        "server.max_body_bytes",
        Int,
        same("1048576"),
        "Largest request body accepted; larger bodies get 413 before they are read.",
    );
    push(
        o,
        "server.trusted_proxies",
        List,
        same("[]"),
        "Peers (IPs or CIDRs) whose X-Forwarded-For is believed.",
    );
    push(
        o,
        "server.shutdown_grace_s",
        Int,
        same("10"),
        "Seconds in-flight requests get to finish after SIGTERM/SIGINT.",
    );
    push(
        o,
        "server.public_url",
        Str,
        same(""),
        "URL users reach the server at (printed at start, used in links).",
    );
    push(
        o,
        "server.data_dir",
        Str,
        per("\"data\"", "\"\"", "\"data\""),
        "Directory for the SQLite file and dev secrets. Empty in test: a fresh temp dir.",
    );

    push(
        o,
        "database.url",
        Str,
        per(
            "\"sqlite://data/vel_tutor_dev.sqlite3\"",
            "\"\"",
            "\"sqlite://data/vel_tutor.sqlite3\"",
        ),
        "sqlite://PATH (relative to the working directory) or a bare path. DATABASE_URL / FLY_DATABASE_URL. Empty in test: a temp file.",
    );
    push(
        o,
        "database.pool_size",
        Int,
        per("10", "4", "15"),
        "Reader connections in the pool.",
    );
    push(
        o,
        "database.timeout_ms",
        Int,
        per("15000", "5000", "30000"),
        "How long to wait for a pooled connection or a busy database.",
    );
    push(
        o,
        "database.synchronous",
        Str,
        same("\"FULL\""),
        "SQLite synchronous mode: OFF, NORMAL, FULL or EXTRA.",
    );

    push(
        o,
        "auth.allow_registration",
        Bool,
        same("true"),
        "Whether anyone may sign up.",
    );
    push(
        o,
        "auth.ttl_hours",
        Int,
        same("24"),
        "Lifetime of a login token (JWT).",
    );
    push(
        o,
        "auth.bcrypt_cost",
        Int,
        per("12", "4", "12"),
        "bcrypt cost; never below 10 in prod.",
    );
    push(
        o,
        "auth.issuer",
        Str,
        same("\"vel_tutor\""),
        "JWT `iss` claim, verified on every token.",
    );
    push(
        o,
        "auth.secret_key_base",
        Secret,
        per("", &format!("\"{TEST_SECRET_KEY_BASE}\""), ""),
        "JWT signing secret (32+ bytes). SECRET_KEY_BASE or SECRET_KEY_BASE_FILE. Required in prod.",
    );
    push(
        o,
        "auth.secret_key_base_previous",
        SecretList,
        same("[]"),
        "Older signing secrets still accepted. SECRET_KEY_BASE_PREVIOUS (comma list).",
    );

    push(
        o,
        "vault.key",
        Secret,
        per("", &format!("\"{TEST_VAULT_KEY}\""), ""),
        "Master key sealing users' provider keys. VAULT_KEY or VAULT_KEY_FILE. Required in prod.",
    );
    push(
        o,
        "vault.keys_previous",
        SecretList,
        same("[]"),
        "Older vault keys still readable until `vault rotate`. VAULT_KEYS_PREVIOUS (comma list).",
    );

    push(
        o,
        "rate_limit.enabled",
        Bool,
        per("false", "false", "true"),
        "Turn rate limiting on or off.",
    );
    push(
        o,
        "rate_limit.auth_per_minute",
        Int,
        same("5"),
        "Requests per minute per client IP on /api/auth/*.",
    );
    push(
        o,
        "rate_limit.user_per_hour",
        Int,
        same("100"),
        "Requests per hour per user on authenticated routes.",
    );
    push(
        o,
        "rate_limit.user_concurrent",
        Int,
        same("10"),
        "Requests in flight at once per user.",
    );

    push(
        o,
        "cors.origins",
        List,
        per(
            "[\"http://localhost:3000\", \"http://localhost:3001\"]",
            "[]",
            "[]",
        ),
        "Origins allowed to call the API from a browser.",
    );
    push(
        o,
        "cors.max_age_s",
        Int,
        same("86400"),
        "How long browsers may cache a preflight answer.",
    );
    push(
        o,
        "cors.check_origin",
        Bool,
        per("false", "false", "true"),
        "Refuse state-changing requests whose Origin is present and not allowed.",
    );

    push(
        o,
        "logging.level",
        Str,
        per("\"debug\"", "\"warn\"", "\"info\""),
        "error, warn, info, debug or trace.",
    );
    push(
        o,
        "logging.format",
        Str,
        per("\"console\"", "\"console\"", "\"json\""),
        "console (human) or json (one object per line).",
    );
    push(
        o,
        "errors.detail",
        Bool,
        per("true", "true", "false"),
        "Include debug detail in error bodies.",
    );
    push(
        o,
        "metrics.token",
        Secret,
        same(""),
        "Bearer token that may read /metrics besides admins.",
    );

    for p in PROVIDERS {
        let (url, model, timeout, retries, pool, header) = match p {
            "openai" => (
                "https://api.openai.com/v1",
                "gpt-4o",
                120_000,
                3,
                20,
                "authorization",
            ),
            "groq" => (
                "https://api.groq.com/openai/v1",
                "llama-3.1-70b",
                60_000,
                2,
                20,
                "authorization",
            ),
            "perplexity" => (
                "https://api.perplexity.ai",
                "llama-3.1-sonar-small-128k-online",
                60_000,
                2,
                20,
                "authorization",
            ),
            "task_master" => ("http://localhost:3000", "", 120_000, 1, 20, "x-api-key"),
            _ => ("", "local-echo", 1_000, 0, 1, ""),
        };
        let q = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("\"{s}\"")
            }
        };
        let k = |name: &str| format!("providers.{p}.{name}");
        push(
            o,
            &k("api_key"),
            Secret,
            same(""),
            "Operator key used when a user has none of their own.",
        );
        push(
            o,
            &k("base_url"),
            Str,
            same(&q(url)),
            "API endpoint (self-hosted or proxy endpoints allowed).",
        );
        push(
            o,
            &k("default_model"),
            Str,
            same(&q(model)),
            "Model used when an agent names none.",
        );
        push(
            o,
            &k("timeout_ms"),
            Int,
            same(&timeout.to_string()),
            "Connect + response timeout per call.",
        );
        push(
            o,
            &k("max_retries"),
            Int,
            same(&retries.to_string()),
            "Retries after the first attempt.",
        );
        push(
            o,
            &k("retry_base_ms"),
            Int,
            same("250"),
            "First retry delay; doubles each retry, with jitter; Retry-After wins.",
        );
        push(
            o,
            &k("pool_size"),
            Int,
            same(&pool.to_string()),
            "Connections kept per provider.",
        );
        push(
            o,
            &k("validate_on_start"),
            Bool,
            same("false"),
            "Check the operator key at startup.",
        );
        push(
            o,
            &k("auth_header"),
            Str,
            same(&q(header)),
            "Header carrying the key (authorization sends Bearer).",
        );
    }
    for kind in KINDS {
        let to = match kind {
            "code" | "validation" => "groq",
            "research" => "perplexity",
            "tool" => "task_master",
            _ => "openai",
        };
        push(
            o,
            &format!("routing.{kind}"),
            Str,
            same(&format!("\"{to}\"")),
            "Provider for this kind of work.",
        );
    }
    for p in PROVIDERS {
        let chain = match p {
            "openai" => "[\"groq\"]",
            "groq" | "perplexity" => "[\"openai\"]",
            _ => "[]",
        };
        push(
            o,
            &format!("routing.fallbacks.{p}"),
            List,
            same(chain),
            "Providers tried next, in order.",
        );
    }
    push(
        o,
        "breaker.failures",
        Int,
        same("5"),
        "Consecutive failures that open a provider's circuit.",
    );
    push(
        o,
        "breaker.open_s",
        Int,
        same("30"),
        "Seconds a circuit stays open before one probe.",
    );
    push(
        o,
        "quota.alert_threshold",
        Float,
        same("0.8"),
        "Share of a monthly budget that triggers a warning.",
    );
    for p in PROVIDERS {
        push(
            o,
            &format!("quota.{p}.monthly_usd"),
            Float,
            same(""),
            "Monthly budget in USD (unset: unlimited).",
        );
    }
    for (model, input, output) in DEFAULT_PRICES {
        push(
            o,
            &format!("prices.{model}.input"),
            Float,
            same(&format!("{input:.2}")),
            "USD per million input tokens.",
        );
        push(
            o,
            &format!("prices.{model}.output"),
            Float,
            same(&format!("{output:.2}")),
            "USD per million output tokens.",
        );
    }
    push(
        o,
        "workers.count",
        Int,
        per("2", "2", "4"),
        "Background task worker threads.",
    );
    push(
        o,
        "workers.max_attempts",
        Int,
        same("3"),
        "Attempts before a task is failed.",
    );
    push(
        o,
        "workers.task_timeout_s",
        Int,
        same("300"),
        "A running task is stopped after this long.",
    );

    push(
        o,
        "tls.enabled",
        Bool,
        same("false"),
        "Serve HTTPS (needs cert and key).",
    );
    push(o, "tls.cert", Str, same(""), "PEM certificate chain file.");
    push(o, "tls.key", Str, same(""), "PEM private key file.");
    push(
        o,
        "tls.https_port",
        Int,
        same("4443"),
        "Port for HTTPS when tls.enabled.",
    );
    push(
        o,
        "tls.force_ssl",
        Bool,
        per("false", "false", "true"),
        "Redirect HTTP to HTTPS and send HSTS.",
    );
    push(
        o,
        "tls.hsts_max_age_s",
        Int,
        same("31536000"),
        "HSTS max-age.",
    );
    push(
        o,
        "tls.cipher_suites",
        List,
        same(
            "[\"TLS13_AES_256_GCM_SHA384\", \"TLS13_AES_128_GCM_SHA256\", \"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\", \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\", \"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\", \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]",
        ),
        "Allowed cipher suites (rustls names).",
    );
    d
}

/// Price defaults (USD per million tokens: input, output) for every default model.
pub const DEFAULT_PRICES: [(&str, f64, f64); 6] = [
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("llama-3.1-70b", 0.59, 0.79),
    ("llama-3.1-8b-instant", 0.05, 0.08),
    ("llama-3.1-sonar-small-128k-online", 0.20, 0.20),
    ("local-echo", 0.0, 0.0),
];

/// Every declared key, in declaration order.
pub fn all() -> &'static [Decl] {
    static DECLS: OnceLock<Vec<Decl>> = OnceLock::new();
    DECLS.get_or_init(build)
}

/// The declaration for `key`. Prices of models without a default (`prices.<model>.input`)
/// are accepted as floats too, so operators can price any model.
pub fn find(key: &str) -> Option<Decl> {
    if let Some(d) = all().iter().find(|d| d.key == key) {
        return Some(d.clone());
    }
    let segs = segments(key);
    if segs.len() == 3 && segs[0] == "prices" && matches!(segs[2].as_str(), "input" | "output") {
        return Some(Decl {
            key: key.to_string(),
            kind: Kind::Float,
            defaults: same(""),
            doc: String::new(),
        });
    }
    None
}

/// Renders `config.example.toml`: every key with its doc and its default (prod values noted
/// where the profiles differ). Tests parse the committed file against this table.
pub fn example_toml() -> String {
    let mut out = String::from(
        "# vel_tutor configuration: every key with its default. Keys whose default differs by\n\
         # profile are commented out (set them under [profile.<name>] to change one profile).\n\
         # Layers, lowest to highest: profile defaults -> this file -> [profile.<name>] tables\n\
         # -> environment variables -> CLI flags. Generated from src/config/decl.rs.\n",
    );
    let mut section = String::new();
    for d in all() {
        let mut segs = segments(&d.key);
        let leaf = segs.pop().unwrap_or_default();
        let table = segs
            .iter()
            .map(|s| {
                if s.contains('.') {
                    format!("\"{s}\"")
                } else {
                    s.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(".");
        if table != section {
            out.push_str(&format!("\n[{table}]\n"));
            section = table.to_string();
        }
        out.push_str(&format!("# {}\n", d.doc));
        let [dev, test, prod] = &d.defaults;
        if dev != test || dev != prod {
            // Setting a per-profile key here would override every profile, so it is shown
            // commented out with each profile's value.
            let show = |v: &str| {
                if v.is_empty() {
                    "unset".to_string()
                } else {
                    v.to_string()
                }
            };
            out.push_str(&format!(
                "# differs by profile: dev = {}, test = {}, prod = {}\n# {leaf} = {}\n",
                show(dev),
                show(test),
                show(prod),
                if dev.is_empty() { prod } else { dev }
            ));
        } else if dev.is_empty() {
            out.push_str(&format!("# {leaf} = \n"));
        } else {
            out.push_str(&format!("{leaf} = {dev}\n"));
        }
    }
    out
}

/// Splits a dotted key into its path; `prices.<model>.<leaf>` keeps the model whole even
/// when its name has dots (`llama-3.1-70b`).
pub fn segments(key: &str) -> Vec<String> {
    if let Some((model, leaf)) = key.strip_prefix("prices.").and_then(|r| r.rsplit_once('.')) {
        return vec!["prices".into(), model.into(), leaf.into()];
    }
    key.split('.').map(String::from).collect()
}
