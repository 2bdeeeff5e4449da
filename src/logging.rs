//! Logging: simplelog for humans in dev, one JSON object per line in prod, the per-request
//! line, and `redact`, which every log call that might carry a secret goes through.

use crate::config::{LogFormat, LoggingConfig};
use log::{Level, LevelFilter, Log, Metadata, Record};
use serde_json::{Map, Value, json};
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Installs the process-wide logger once; later calls only change nothing.
pub fn init(cfg: &LoggingConfig) {
    JSON.store(cfg.format == LogFormat::Json, Ordering::SeqCst);
    let result = match cfg.format {
        LogFormat::Json => log::set_boxed_logger(Box::new(JsonLogger { level: cfg.level }))
            .map(|()| log::set_max_level(cfg.level)),
        LogFormat::Console => {
            let c = simplelog::ConfigBuilder::new()
                .set_time_format_rfc3339()
                .add_filter_ignore_str("tiny_http")
                .add_filter_ignore_str("r2d2")
                .build();
            simplelog::TermLogger::init(
                cfg.level,
                c,
                simplelog::TerminalMode::Stderr,
                simplelog::ColorChoice::Auto,
            )
        }
    };
    if result.is_err() {
        log::debug!("logging: a logger was already installed");
    }
}

/// One JSON object per line on stderr: `ts, level, target, msg` plus any key-values.
struct JsonLogger {
    level: LevelFilter,
}

impl Log for JsonLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.level
            && !m.target().starts_with("tiny_http")
            && !m.target().starts_with("r2d2")
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut obj = Map::new();
        obj.insert("ts".into(), json!(crate::storage::now_rfc3339()));
        obj.insert(
            "level".into(),
            json!(record.level().as_str().to_ascii_lowercase()),
        );
        obj.insert("target".into(), json!(record.target()));
        obj.insert("msg".into(), json!(record.args().to_string()));
        let mut kv = KvCollect(&mut obj);
        let _ = record.key_values().visit(&mut kv);
        let mut line = serde_json::to_vec(&Value::Object(obj)).unwrap_or_default();
        line.push(b'\n');
        let _ = std::io::stderr().lock().write_all(&line);
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

struct KvCollect<'a>(&'a mut Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for KvCollect<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let v = if let Some(n) = value.to_u64() {
            json!(n)
        } else if let Some(f) = value.to_f64() {
            json!(f)
        } else {
            json!(value.to_string())
        };
        self.0.insert(key.as_str().to_string(), v);
        Ok(())
    }
}

/// The fields of the one log line every request gets.
pub struct RequestLine<'a> {
    pub request_id: &'a str,
    pub user_id: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub duration_ms: f64,
}

pub fn request_line(l: &RequestLine<'_>) {
    let level = if l.status >= 500 {
        Level::Warn
    } else {
        Level::Info
    };
    if !log::log_enabled!(target: "vel_tutor::request", level) {
        return;
    }
    let path = redact(l.path);
    let ms = (l.duration_ms * 1000.0).round() / 1000.0;
    if JSON.load(Ordering::Relaxed) {
        log::log!(target: "vel_tutor::request", level,
            request_id = l.request_id, user_id = l.user_id.unwrap_or(""), method = l.method,
            path = path.as_str(), status = l.status, duration_ms = ms; "request");
    } else {
        log::log!(target: "vel_tutor::request", level,
            "{} {} {} {:.3}ms request_id={} user_id={}",
            l.method, path, l.status, ms, l.request_id, l.user_id.unwrap_or("-"));
    }
}

/// Masks anything that looks like a credential: provider keys (`sk-`, `gsk_`, `pplx-`),
/// personal tokens (`vt_`), JWTs, `Bearer …`, and `password`/`api_key`/`token` JSON or
/// query values. Keeps a short prefix so a reader can still tell which kind it was.
pub fn redact(text: &str) -> String {
    static PATTERNS: OnceLock<Vec<&'static str>> = OnceLock::new();
    let prefixes = PATTERNS.get_or_init(|| vec!["sk-", "gsk_", "pplx-", "vt_", "eyJ", "tm-"]);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut mask_next_word = false;
    while !rest.is_empty() {
        let end = rest.find(is_separator).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(end);
        let secret_word = mask_next_word && !word.is_empty()
            || prefixes
                .iter()
                .any(|p| word.starts_with(p) && word.len() >= p.len() + 8);
        if secret_word {
            let keep: String = word.chars().take(3).collect();
            out.push_str(&keep);
            out.push_str("[redacted]");
        } else {
            out.push_str(word);
        }
        if !word.is_empty() {
            let lower = word.to_ascii_lowercase();
            mask_next_word = lower == "bearer"
                || [
                    "password",
                    "api_key",
                    "apikey",
                    "token",
                    "secret",
                    "x-api-key",
                ]
                .iter()
                .any(|k| lower.trim_matches('"') == *k);
        }
        // Separators pass through; a `"password": "x"` keeps masking past `": "`.
        let sep_len = tail.chars().next().map_or(0, char::len_utf8);
        out.push_str(&tail[..sep_len]);
        rest = &tail[sep_len..];
        if sep_len > 0 && !matches!(&tail[..sep_len], " " | ":" | "=" | "\"") {
            mask_next_word = false;
        }
    }
    out
}

fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | ',' | '&' | '=' | ':' | '{' | '}' | '(' | ')' | '[' | ']' | '?' | '/'
        )
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_keys_tokens_and_named_values() {
        let cases = [
            ("key sk-abcdefghijklmnop done", "key sk-[redacted] done"),
            (
                "Authorization: Bearer abc.def",
                "Authorization: Bearer abc[redacted]",
            ),
            (
                r#"{"password": "Hunter2!Hunter2!"}"#,
                r#"{"password": "Hun[redacted]"}"#,
            ),
            (
                "/api/x?token=vt_0123456789abcdef",
                "/api/x?token=vt_[redacted]",
            ),
            ("gsk_short", "gsk_short"),
            ("plain words only", "plain words only"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "input {input:?}");
        }
        assert!(!redact("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig").contains("eyJzdWIi"));
    }
}
