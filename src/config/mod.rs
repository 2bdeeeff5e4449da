//! Configuration: profiles, the layered loader and the typed `Config` every module reads.
//! Validation collects every problem at once; nothing here opens sockets or databases.

pub mod decl;
pub mod layers;
mod secrets;
mod validate;

pub use layers::{Inputs, Layered, Source};
pub use secrets::{Secret, ensure_dev_secrets, generate_secret};

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use toml::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Dev,
    Test,
    Prod,
}

impl Profile {
    pub fn parse(s: &str) -> Option<Profile> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dev" | "development" => Some(Profile::Dev),
            "test" => Some(Profile::Test),
            "prod" | "production" => Some(Profile::Prod),
            _ => None,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Dev => "dev",
            Profile::Test => "test",
            Profile::Prod => "prod",
        })
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub bind: String,
    pub workers: usize,
    pub max_body_bytes: u64,
    pub trusted_proxies: Vec<IpNet>,
    pub shutdown_grace_s: u64,
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
}

impl ServerConfig {
    /// Whether `X-Forwarded-For` from this peer is believed.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&peer))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronous {
    Off,
    Normal,
    Full,
    Extra,
}

impl Synchronous {
    pub fn as_sql(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    /// Empty means "a fresh file in a temp dir" (the test profile).
    pub path: PathBuf,
    pub pool_size: u32,
    pub timeout_ms: u64,
    pub synchronous: Synchronous,
}

#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub allow_registration: bool,
    pub ttl_hours: u64,
    pub bcrypt_cost: u32,
    pub issuer: String,
    pub secret_key_base: Secret,
    pub secret_key_base_previous: Vec<Secret>,
}

#[derive(Clone, Debug)]
pub struct VaultConfig {
    pub key: Secret,
    pub keys_previous: Vec<Secret>,
}

#[derive(Clone, Debug)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub auth_per_minute: u32,
    pub user_per_hour: u32,
    pub user_concurrent: u32,
}

#[derive(Clone, Debug)]
pub struct CorsConfig {
    pub origins: Vec<String>,
    pub max_age_s: u64,
    pub check_origin: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Console,
    Json,
}

#[derive(Clone, Debug)]
pub struct LoggingConfig {
    pub level: log::LevelFilter,
    pub format: LogFormat,
}

#[derive(Clone, Debug)]
pub struct ProviderConfig {
    pub api_key: Option<Secret>,
    pub base_url: String,
    pub default_model: String,
    pub timeout_ms: u64,
    pub max_retries: u32,
    pub retry_base_ms: u64,
    pub pool_size: u32,
    pub validate_on_start: bool,
    pub auth_header: String,
    pub monthly_usd: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub enabled: bool,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub https_port: u16,
    pub force_ssl: bool,
    pub hsts_max_age_s: u64,
    pub cipher_suites: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct WorkersConfig {
    pub count: usize,
    pub max_attempts: u32,
    pub task_timeout_s: u64,
}

/// The typed, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub profile: Profile,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub vault: VaultConfig,
    pub rate_limit: RateLimitConfig,
    pub cors: CorsConfig,
    pub logging: LoggingConfig,
    pub errors_detail: bool,
    pub metrics_token: Option<Secret>,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub routing: BTreeMap<String, String>,
    pub fallbacks: BTreeMap<String, Vec<String>>,
    pub breaker_failures: u32,
    pub breaker_open_s: u64,
    pub quota_alert_threshold: f64,
    /// USD per million tokens: (input, output).
    pub prices: BTreeMap<String, (f64, f64)>,
    pub workers: WorkersConfig,
    pub tls: TlsConfig,
}

/// The result of loading: the layered map (for `config check`), every problem, and the
/// typed config when there were none.
pub struct Loaded {
    pub profile: Profile,
    pub layered: Layered,
    pub config: Option<Config>,
}

impl Loaded {
    pub fn problems(&self) -> &[String] {
        &self.layered.problems
    }
}

/// Loads the configuration for `inputs`. Dev secrets are not generated here (that writes
/// files); `serve` calls `ensure_dev_secrets` first.
pub fn load(inputs: &Inputs) -> Loaded {
    let profile = match layers::choose_profile(inputs) {
        Ok(p) => p,
        Err(e) => {
            let mut layered = Layered::default();
            layered.problems.push(e);
            return Loaded {
                profile: Profile::Dev,
                layered,
                config: None,
            };
        }
    };
    let mut layered = layers::build(inputs, profile);
    if profile == Profile::Dev {
        secrets::apply_existing_dev_secrets(&mut layered, &inputs.cwd);
    }
    finish(inputs, profile, layered)
}

/// Like `load`, but in the dev profile first generates and persists any missing secrets.
/// Returns the secrets file when it was just written (the caller warns loudly).
pub fn load_generating(inputs: &Inputs) -> std::io::Result<(Loaded, Option<PathBuf>)> {
    let Ok(profile) = layers::choose_profile(inputs) else {
        return Ok((load(inputs), None));
    };
    let mut layered = layers::build(inputs, profile);
    let written = if profile == Profile::Dev {
        secrets::ensure_dev_secrets(&mut layered, &inputs.cwd)?
    } else {
        None
    };
    Ok((finish(inputs, profile, layered), written))
}

/// Validates a layered map into a typed config, appending every problem found.
pub fn finish(inputs: &Inputs, profile: Profile, mut layered: Layered) -> Loaded {
    let mut r = validate::Reader {
        layered: &layered,
        problems: Vec::new(),
    };
    let config = r.build(profile, inputs);
    let mut problems = r.problems;
    layered.problems.append(&mut problems);
    let config = if layered.problems.is_empty() {
        Some(config)
    } else {
        None
    };
    Loaded {
        profile,
        layered,
        config,
    }
}

/// Renders the effective configuration, one `key = value  # source` line each, secrets
/// redacted. Used by `vel_tutor config check`.
pub fn render_effective(layered: &Layered) -> String {
    let mut out = String::new();
    for (key, (value, source)) in &layered.values {
        let secret = decl::find(key).is_some_and(|d| d.kind.is_secret());
        let shown = if secret {
            match value {
                Value::Array(a) if a.is_empty() => "[]".to_string(),
                Value::Array(a) => format!("[{} redacted]", a.len()),
                Value::String(s) if s.is_empty() => "\"\"".to_string(),
                _ => "\"[redacted]\"".to_string(),
            }
        } else {
            value.to_string()
        };
        out.push_str(&format!("{key} = {shown}  # {source}\n"));
    }
    out
}
