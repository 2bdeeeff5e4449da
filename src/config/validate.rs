//! Validation: turns the layered key → value map into the typed `Config`, collecting every
//! problem (one line each) instead of stopping at the first.

use super::decl;
use super::*;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use toml::Value;

pub(super) struct Reader<'a> {
    pub(super) layered: &'a Layered,
    pub(super) problems: Vec<String>,
}

impl Reader<'_> {
    fn raw(&self, key: &str) -> Option<&Value> {
        self.layered.get(key)
    }

    fn str(&self, key: &str) -> String {
        self.raw(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    fn opt_str(&self, key: &str) -> Option<String> {
        Some(self.str(key)).filter(|s| !s.is_empty())
    }

    fn int(&mut self, key: &str, min: i64, max: i64) -> i64 {
        let v = self.raw(key).and_then(Value::as_integer).unwrap_or(min);
        if v < min || v > max {
            self.problems
                .push(format!("{key}: {v} is out of range ({min}..={max})"));
            return min;
        }
        v
    }

    fn float(&mut self, key: &str) -> Option<f64> {
        let v = self.raw(key).and_then(Value::as_float)?;
        if !v.is_finite() || v < 0.0 {
            self.problems
                .push(format!("{key}: must be a non-negative number, got {v}"));
            return None;
        }
        Some(v)
    }

    fn bool(&self, key: &str) -> bool {
        self.raw(key).and_then(Value::as_bool).unwrap_or(false)
    }

    fn list(&self, key: &str) -> Vec<String> {
        self.raw(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn secret(&self, key: &str) -> Option<Secret> {
        self.opt_str(key).map(Secret::new)
    }

    pub(super) fn build(&mut self, profile: Profile, inputs: &Inputs) -> Config {
        let server = self.server(inputs);
        let database = self.database(inputs, &server.data_dir);
        let auth = self.auth(profile);
        let vault = VaultConfig {
            key: self.secret("vault.key").unwrap_or_else(|| Secret::new("")),
            keys_previous: self
                .list("vault.keys_previous")
                .into_iter()
                .map(Secret::new)
                .collect(),
        };
        if profile == Profile::Prod && vault.key.expose().is_empty() {
            self.problems
                .push("vault.key: VAULT_KEY is required in prod".to_string());
        }
        let keys = std::iter::once(("vault.key", &vault.key)).chain(
            vault
                .keys_previous
                .iter()
                .map(|k| ("vault.keys_previous", k)),
        );
        for (name, k) in keys.filter(|(_, k)| !k.expose().is_empty()) {
            if let Err(e) = crate::vault::check_key_format(k.expose()) {
                self.problems.push(format!("{name}: {e}"));
            }
        }
        let rate_limit = RateLimitConfig {
            enabled: self.bool("rate_limit.enabled"),
            auth_per_minute: self.int("rate_limit.auth_per_minute", 1, 1_000_000) as u32,
            user_per_hour: self.int("rate_limit.user_per_hour", 1, 100_000_000) as u32,
            user_concurrent: self.int("rate_limit.user_concurrent", 1, 100_000) as u32,
        };
        let cors = CorsConfig {
            origins: self.list("cors.origins"),
            max_age_s: self.int("cors.max_age_s", 0, 31_536_000) as u64,
            check_origin: self.bool("cors.check_origin"),
        };
        let logging = self.logging();
        let providers = self.providers();
        let mut routing = BTreeMap::new();
        for kind in decl::KINDS {
            let to = self.str(&format!("routing.{kind}"));
            self.check_provider(&format!("routing.{kind}"), &to);
            routing.insert(kind.to_string(), to);
        }
        let mut fallbacks = BTreeMap::new();
        for p in decl::PROVIDERS {
            let key = format!("routing.fallbacks.{p}");
            let chain = self.list(&key);
            for to in &chain {
                self.check_provider(&key, to);
            }
            fallbacks.insert(p.to_string(), chain);
        }
        let quota_alert_threshold = self.float("quota.alert_threshold").unwrap_or(0.8);
        if quota_alert_threshold > 1.0 {
            self.problems
                .push("quota.alert_threshold: must be between 0 and 1".to_string());
        }
        Config {
            profile,
            server,
            database,
            auth,
            vault,
            rate_limit,
            cors,
            logging,
            errors_detail: self.bool("errors.detail"),
            metrics_token: self.secret("metrics.token"),
            providers,
            routing,
            fallbacks,
            breaker_failures: self.int("breaker.failures", 1, 1000) as u32,
            breaker_open_s: self.int("breaker.open_s", 1, 86_400) as u64,
            quota_alert_threshold,
            prices: self.prices(),
            workers: WorkersConfig {
                count: self.int("workers.count", 0, 256) as usize,
                max_attempts: self.int("workers.max_attempts", 1, 100) as u32,
                task_timeout_s: self.int("workers.task_timeout_s", 1, 86_400) as u64,
            },
            tls: self.tls(inputs),
        }
    }

    fn check_provider(&mut self, key: &str, name: &str) {
        if !decl::PROVIDERS.contains(&name) {
            self.problems.push(format!(
                "{key}: unknown provider {name:?} (expected one of {})",
                decl::PROVIDERS.join(", ")
            ));
        }
    }

    fn server(&mut self, inputs: &Inputs) -> ServerConfig {
        let bind = self.str("server.bind");
        if bind.parse::<std::net::SocketAddr>().is_err() {
            self.problems.push(format!(
                "server.bind: {bind:?} is not an address like 127.0.0.1:4000 or [::]:4000"
            ));
        }
        let mut trusted_proxies = Vec::new();
        for p in self.list("server.trusted_proxies") {
            let parsed = p
                .parse::<IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => trusted_proxies.push(n),
                Err(_) => self.problems.push(format!(
                    "server.trusted_proxies: {p:?} is not an IP address or CIDR"
                )),
            }
        }
        let data_dir = self.str("server.data_dir");
        ServerConfig {
            bind,
            workers: self.int("server.workers", 1, 1024) as usize,
            max_body_bytes: self.int("server.max_body_bytes", 1024, 1 << 30) as u64,
            trusted_proxies,
            shutdown_grace_s: self.int("server.shutdown_grace_s", 0, 3600) as u64,
            public_url: self.opt_str("server.public_url"),
            data_dir: if data_dir.is_empty() {
                PathBuf::new()
            } else {
                inputs.cwd.join(data_dir)
            },
        }
    }

    fn database(&mut self, inputs: &Inputs, data_dir: &std::path::Path) -> DatabaseConfig {
        let url = self.str("database.url");
        let path = if url.is_empty() {
            PathBuf::new()
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            self.problems.push(
                "database.url: PostgreSQL is not supported by this build yet; use sqlite://PATH"
                    .to_string(),
            );
            PathBuf::new()
        } else {
            let p = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(&url);
            if p == ":memory:" {
                self.problems.push(
                    "database.url: :memory: cannot be shared by the reader pool; leave it empty in test for a temp file"
                        .to_string(),
                );
            }
            inputs.cwd.join(p)
        };
        let _ = data_dir;
        let synchronous = match self
            .str("database.synchronous")
            .to_ascii_uppercase()
            .as_str()
        {
            "OFF" => Synchronous::Off,
            "NORMAL" => Synchronous::Normal,
            "FULL" => Synchronous::Full,
            "EXTRA" => Synchronous::Extra,
            other => {
                self.problems.push(format!(
                    "database.synchronous: {other:?} is not OFF, NORMAL, FULL or EXTRA"
                ));
                Synchronous::Full
            }
        };
        DatabaseConfig {
            path,
            pool_size: self.int("database.pool_size", 1, 256) as u32,
            timeout_ms: self.int("database.timeout_ms", 1, 600_000) as u64,
            synchronous,
        }
    }

    fn auth(&mut self, profile: Profile) -> AuthConfig {
        let min_cost = if profile == Profile::Prod { 10 } else { 4 };
        let secret = self.secret("auth.secret_key_base");
        match (&secret, profile) {
            (None, Profile::Prod) => self
                .problems
                .push("auth.secret_key_base: SECRET_KEY_BASE is required in prod".to_string()),
            (Some(s), Profile::Prod) if s.expose().len() < 32 => self.problems.push(format!(
                "auth.secret_key_base: SECRET_KEY_BASE is {} bytes; prod needs at least 32 (try `vel_tutor secret gen`)",
                s.expose().len()
            )),
            _ => {}
        }
        AuthConfig {
            allow_registration: self.bool("auth.allow_registration"),
            ttl_hours: self.int("auth.ttl_hours", 1, 24 * 365) as u64,
            bcrypt_cost: self.int("auth.bcrypt_cost", min_cost, 31) as u32,
            issuer: self.str("auth.issuer"),
            secret_key_base: secret.unwrap_or_else(|| Secret::new("")),
            secret_key_base_previous: self
                .list("auth.secret_key_base_previous")
                .into_iter()
                .map(Secret::new)
                .collect(),
        }
    }

    fn logging(&mut self) -> LoggingConfig {
        let level = match self.str("logging.level").parse::<log::LevelFilter>() {
            Ok(l) => l,
            Err(_) => {
                self.problems.push(format!(
                    "logging.level: {:?} is not error, warn, info, debug or trace",
                    self.str("logging.level")
                ));
                log::LevelFilter::Info
            }
        };
        let format = match self.str("logging.format").as_str() {
            "console" => LogFormat::Console,
            "json" => LogFormat::Json,
            other => {
                self.problems
                    .push(format!("logging.format: {other:?} is not console or json"));
                LogFormat::Console
            }
        };
        LoggingConfig { level, format }
    }

    fn providers(&mut self) -> BTreeMap<String, ProviderConfig> {
        let mut out = BTreeMap::new();
        for p in decl::PROVIDERS {
            let k = |name: &str| format!("providers.{p}.{name}");
            let base_url = self.str(&k("base_url"));
            if p != "local"
                && !(base_url.starts_with("http://") || base_url.starts_with("https://"))
            {
                self.problems.push(format!(
                    "{}: {base_url:?} is not an http(s) URL",
                    k("base_url")
                ));
            }
            let cfg = ProviderConfig {
                api_key: self.secret(&k("api_key")),
                base_url: base_url.trim_end_matches('/').to_string(),
                default_model: self.str(&k("default_model")),
                timeout_ms: self.int(&k("timeout_ms"), 1, 3_600_000) as u64,
                max_retries: self.int(&k("max_retries"), 0, 20) as u32,
                retry_base_ms: self.int(&k("retry_base_ms"), 0, 60_000) as u64,
                pool_size: self.int(&k("pool_size"), 1, 1000) as u32,
                validate_on_start: self.bool(&k("validate_on_start")),
                auth_header: self.str(&k("auth_header")).to_ascii_lowercase(),
                monthly_usd: self.float(&format!("quota.{p}.monthly_usd")),
            };
            out.insert(p.to_string(), cfg);
        }
        out
    }

    fn prices(&mut self) -> BTreeMap<String, (f64, f64)> {
        let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let keys: Vec<String> = self
            .layered
            .values
            .keys()
            .filter(|k| k.starts_with("prices."))
            .cloned()
            .collect();
        for key in keys {
            let segs = decl::segments(&key);
            let Some(v) = self.float(&key) else { continue };
            let entry = out.entry(segs[1].clone()).or_insert((0.0, 0.0));
            if segs[2] == "input" {
                entry.0 = v;
            } else {
                entry.1 = v;
            }
        }
        out
    }

    fn tls(&mut self, inputs: &Inputs) -> TlsConfig {
        let enabled = self.bool("tls.enabled");
        let file = |key: &str, problems: &mut Vec<String>| {
            let p = self.opt_str(key).map(|p| inputs.cwd.join(p));
            if enabled {
                match &p {
                    None => problems.push(format!("{key}: required when tls.enabled")),
                    Some(path) if !path.is_file() => {
                        problems.push(format!("{key}: file {} not found", path.display()))
                    }
                    _ => {}
                }
            }
            p
        };
        let mut problems = Vec::new();
        let cert = file("tls.cert", &mut problems);
        let key = file("tls.key", &mut problems);
        self.problems.append(&mut problems);
        TlsConfig {
            enabled,
            cert,
            key,
            https_port: self.int("tls.https_port", 1, 65535) as u16,
            force_ssl: self.bool("tls.force_ssl"),
            hsts_max_age_s: self.int("tls.hsts_max_age_s", 0, 63_072_000) as u64,
            cipher_suites: self.list("tls.cipher_suites"),
        }
    }
}
