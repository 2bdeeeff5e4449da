//! Builds the effective key → value map from the five layers, remembering each value's source.
//! Knows files, environment names and CLI overrides; knows nothing of what the values mean.

use super::Profile;
use super::decl::{self, Kind};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::Value;

/// Where an effective value came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Default(Profile),
    Generated(PathBuf),
    File(PathBuf),
    FileProfile(PathBuf, Profile),
    Env(String),
    Cli(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default(p) => write!(f, "default ({p})"),
            Source::Generated(p) => write!(f, "generated ({})", p.display()),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::FileProfile(p, prof) => write!(f, "file {} [profile.{prof}]", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Cli(flag) => write!(f, "cli {flag}"),
        }
    }
}

/// Everything the loader reads, gathered up front so tests can hand in their own.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub profile_flag: Option<String>,
    pub config_flag: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    /// `(flag name, key, raw value)` from the command line, applied last.
    pub cli: Vec<(String, String, String)>,
    pub cwd: PathBuf,
}

impl Inputs {
    /// The real process environment and working directory.
    pub fn from_process() -> Inputs {
        Inputs {
            env: std::env::vars().collect(),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            ..Inputs::default()
        }
    }
}

/// The layered map plus everything that went wrong while building it.
#[derive(Debug, Default)]
pub struct Layered {
    pub values: BTreeMap<String, (Value, Source)>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub file: Option<PathBuf>,
}

impl Layered {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key).map(|(v, _)| v)
    }

    pub fn set(&mut self, key: &str, value: Value, source: Source) {
        self.values.insert(key.to_string(), (value, source));
    }
}

/// Named environment variables and the key each sets (SPEC §2). PORT is handled apart.
const ENV_KEYS: [(&str, &str); 15] = [
    ("DATABASE_URL", "database.url"),
    ("SECRET_KEY_BASE", "auth.secret_key_base"),
    ("SECRET_KEY_BASE_PREVIOUS", "auth.secret_key_base_previous"),
    ("VAULT_KEY", "vault.key"),
    ("VAULT_KEYS_PREVIOUS", "vault.keys_previous"),
    ("OPENAI_API_KEY", "providers.openai.api_key"),
    ("OPENAI_BASE_URL", "providers.openai.base_url"),
    ("GROQ_API_KEY", "providers.groq.api_key"),
    ("GROQ_BASE_URL", "providers.groq.base_url"),
    ("PERPLEXITY_API_KEY", "providers.perplexity.api_key"),
    ("PERPLEXITY_BASE_URL", "providers.perplexity.base_url"),
    ("TASK_MASTER_URL", "providers.task_master.base_url"),
    ("TASK_MASTER_API_KEY", "providers.task_master.api_key"),
    ("METRICS_TOKEN", "metrics.token"),
    ("FLY_DATABASE_URL", "database.url"),
];

/// The profile: `--profile`, else `VEL_TUTOR_PROFILE`, else dev.
pub fn choose_profile(inputs: &Inputs) -> Result<Profile, String> {
    let raw = inputs
        .profile_flag
        .clone()
        .or_else(|| inputs.env.get("VEL_TUTOR_PROFILE").cloned());
    match raw {
        None => Ok(Profile::Dev),
        Some(s) => Profile::parse(&s)
            .ok_or_else(|| format!("profile: unknown profile {s:?} (expected dev, test or prod)")),
    }
}

/// Builds the effective map for `profile` from the defaults, the file, its profile table,
/// the environment and the command line, in that order.
pub fn build(inputs: &Inputs, profile: Profile) -> Layered {
    let mut out = Layered::default();
    for d in decl::all() {
        let lit = &d.defaults[profile.index()];
        if lit.is_empty() {
            continue;
        }
        match parse_literal(lit) {
            Some(v) => out.set(&d.key, v, Source::Default(profile)),
            None => out
                .problems
                .push(format!("{}: bad built-in default {lit}", d.key)),
        }
    }
    apply_file(inputs, profile, &mut out);
    apply_env(inputs, &mut out);
    for (flag, key, raw) in &inputs.cli {
        match decl::find(key) {
            Some(d) => match parse_raw(raw, d.kind) {
                Ok(v) => out.set(key, v, Source::Cli(flag.clone())),
                Err(e) => out.problems.push(format!("{key}: {e} (from {flag})")),
            },
            None => out.problems.push(format!("{flag}: unknown key {key:?}")),
        }
    }
    out
}

fn parse_literal(lit: &str) -> Option<Value> {
    let table: toml::Table = toml::from_str(&format!("v = {lit}")).ok()?;
    table.get("v").cloned()
}

fn config_path(inputs: &Inputs) -> Option<(PathBuf, bool)> {
    if let Some(p) = &inputs.config_flag {
        return Some((p.clone(), true));
    }
    if let Some(p) = inputs.env.get("VEL_TUTOR_CONFIG").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    let default = inputs.cwd.join("vel_tutor.toml");
    default.exists().then_some((default, false))
}

fn apply_file(inputs: &Inputs, profile: Profile, out: &mut Layered) {
    let Some((path, explicit)) = config_path(inputs) else {
        return;
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            if explicit {
                out.problems
                    .push(format!("config file {}: {e}", path.display()));
            }
            return;
        }
    };
    let mut table: toml::Table = match toml::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            let msg = e.to_string().replace('\n', " ");
            out.problems
                .push(format!("config file {}: {}", path.display(), msg.trim()));
            return;
        }
    };
    out.file = Some(path.clone());
    let profiles = table.remove("profile");
    let mut flat = Vec::new();
    flatten("", &Value::Table(table), &mut flat);
    for (key, value) in flat {
        set_checked(out, &key, value, Source::File(path.clone()));
    }
    let Some(Value::Table(profiles)) = profiles else {
        return;
    };
    for (name, body) in profiles {
        let Some(p) = Profile::parse(&name) else {
            out.problems.push(format!(
                "config file {}: unknown profile table [profile.{name}]",
                path.display()
            ));
            continue;
        };
        let mut flat = Vec::new();
        flatten("", &body, &mut flat);
        if p != profile {
            // Other profiles' tables are still checked for typos, never applied.
            for (key, value) in flat {
                check_only(out, &key, &value, &path);
            }
            continue;
        }
        for (key, value) in flat {
            set_checked(out, &key, value, Source::FileProfile(path.clone(), p));
        }
    }
}

/// Flattens nested tables into dotted keys; arrays and scalars are leaves.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn check_only(out: &mut Layered, key: &str, value: &Value, path: &Path) {
    match decl::find(key) {
        None => out
            .problems
            .push(format!("{key}: unknown key (in {})", path.display())),
        Some(d) => {
            if let Err(e) = coerce(value.clone(), d.kind) {
                out.problems
                    .push(format!("{key}: {e} (in {})", path.display()));
            }
        }
    }
}

fn set_checked(out: &mut Layered, key: &str, value: Value, source: Source) {
    match decl::find(key) {
        None => out
            .problems
            .push(format!("{key}: unknown key (from {source})")),
        Some(d) => match coerce(value, d.kind) {
            Ok(v) => out.set(key, v, source),
            Err(e) => out.problems.push(format!("{key}: {e} (from {source})")),
        },
    }
}

/// Accepts a file value for `kind`, allowing an integer where a float is expected.
fn coerce(value: Value, kind: Kind) -> Result<Value, String> {
    let ok = match (&value, kind) {
        (Value::String(_), Kind::Str | Kind::Secret) => true,
        (Value::Integer(_), Kind::Int) => true,
        (Value::Float(_), Kind::Float) => true,
        (Value::Integer(i), Kind::Float) => return Ok(Value::Float(*i as f64)),
        (Value::Boolean(_), Kind::Bool) => true,
        (Value::Array(a), Kind::List | Kind::SecretList) => a.iter().all(Value::is_str),
        _ => false,
    };
    if ok {
        Ok(value)
    } else {
        Err(format!(
            "expected {}, got {}",
            kind_name(kind),
            value.type_str()
        ))
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Str | Kind::Secret => "a string",
        Kind::Int => "an integer",
        Kind::Float => "a number",
        Kind::Bool => "true or false",
        Kind::List | Kind::SecretList => "a list of strings",
    }
}

/// Parses an environment or CLI string as a value of `kind`.
pub fn parse_raw(raw: &str, kind: Kind) -> Result<Value, String> {
    let raw = raw.trim();
    match kind {
        Kind::Str | Kind::Secret => Ok(Value::String(raw.to_string())),
        Kind::Int => raw
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("expected an integer, got {raw:?}")),
        Kind::Float => raw
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float)
            .ok_or_else(|| format!("expected a number, got {raw:?}")),
        Kind::Bool => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        Kind::List | Kind::SecretList => {
            if raw.starts_with('[') {
                let v = parse_literal(raw).ok_or_else(|| "expected a list".to_string())?;
                return coerce(v, kind);
            }
            let items = raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect();
            Ok(Value::Array(items))
        }
    }
}

fn apply_env(inputs: &Inputs, out: &mut Layered) {
    let env = &inputs.env;
    for (name, key) in ENV_KEYS {
        // FLY_DATABASE_URL is only the fallback for DATABASE_URL.
        if name == "FLY_DATABASE_URL" && env.contains_key("DATABASE_URL") {
            continue;
        }
        let file_var = format!("{name}_FILE");
        let (raw, source) = if let Some(v) = env.get(name) {
            (v.clone(), name.to_string())
        } else if let Some(path) = env.get(&file_var) {
            // The X_FILE convention: Docker/systemd credentials mounted as files.
            match std::fs::read_to_string(path) {
                Ok(t) => (t.trim_end_matches(['\n', '\r']).to_string(), file_var),
                Err(e) => {
                    out.problems
                        .push(format!("{file_var}: cannot read {path}: {e}"));
                    continue;
                }
            }
        } else {
            continue;
        };
        set_raw(out, key, &raw, Source::Env(source));
    }
    let mut generic: Vec<_> = env
        .iter()
        .filter(|(k, _)| k.starts_with("VEL_TUTOR__"))
        .collect();
    generic.sort();
    for (name, raw) in generic {
        let key = name["VEL_TUTOR__".len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join(".");
        if decl::find(&key).is_none() {
            out.warnings
                .push(format!("{name}: no such key {key:?}; ignored"));
            continue;
        }
        set_raw(out, &key, raw, Source::Env(name.clone()));
    }
    if let Some(port) = env.get("PORT") {
        apply_port(out, port);
    }
}

fn set_raw(out: &mut Layered, key: &str, raw: &str, source: Source) {
    let Some(d) = decl::find(key) else { return };
    match parse_raw(raw, d.kind) {
        Ok(v) => out.set(key, v, source),
        Err(e) => out.problems.push(format!("{key}: {e} (from {source})")),
    }
}

/// PORT replaces the port of whatever bind address the lower layers chose.
fn apply_port(out: &mut Layered, port: &str) {
    let Ok(port) = port.trim().parse::<u16>() else {
        out.problems.push(format!(
            "server.bind: PORT must be a port number, got {port:?}"
        ));
        return;
    };
    let bind = out
        .get("server.bind")
        .and_then(Value::as_str)
        .unwrap_or("127.0.0.1:4000")
        .to_string();
    let host = match bind.rsplit_once(':') {
        Some((host, _)) => host.to_string(),
        None => bind,
    };
    out.set(
        "server.bind",
        Value::String(format!("{host}:{port}")),
        Source::Env("PORT".into()),
    );
}
