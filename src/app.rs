//! The running application: the shared `App` state and `start`, which wires config, storage
//! and the HTTP server together. `main.rs` and the integration tests both start here.

use crate::auth::jwt;
use crate::batch::BatchWriter;
use crate::config::Config;
use crate::http::{self, ServerHandle, ServerOptions};
use crate::model::{AuditEvent, Record, UsageEvent};
use crate::ratelimit::{Concurrency, SlidingWindow};
use crate::storage::{Storage, StorageError};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// State shared by every request.
pub struct App {
    pub config: Config,
    pub storage: Arc<Storage>,
    pub keys: jwt::Keys,
    pub vault: crate::vault::Vault,
    pub orchestrator: crate::orchestrator::Orchestrator,
    pub metrics: crate::metrics::Metrics,
    /// Results of the startup checks of operator keys (`providers.<name>.validate_on_start`).
    pub operator_checks: std::sync::Mutex<std::collections::BTreeMap<String, OperatorCheck>>,
    /// Per-request audit rows and one usage row per provider call, written in batches by
    /// one thread (security events are written with their change instead).
    pub records: BatchWriter<Record>,
    pub limits: Limits,
    /// Password hashing in flight: at most half the workers, so a login flood cannot take
    /// every worker (bcrypt at cost 12 holds one for ~0.25 s).
    pub bcrypt_slots: Concurrency,
    pub started: Instant,
    stop: Arc<AtomicBool>,
}

/// What the startup check said of an operator key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorCheck {
    Pending,
    Valid,
    Failed(String),
}

/// The rate limiters of SPEC §6 (consulted only when `rate_limit.enabled`).
pub struct Limits {
    pub auth_per_ip: SlidingWindow,
    pub per_user: SlidingWindow,
    pub concurrent: Concurrency,
}

/// Most distinct keys each limiter remembers (memory stays bounded under a flood).
const LIMITER_KEYS: usize = 100_000;

impl App {
    /// Queues a per-request audit row.
    pub fn audit(&self, e: AuditEvent) {
        self.records.push(Record::Audit(e));
    }

    /// Queues a provider call's usage row.
    pub fn usage(&self, u: UsageEvent) {
        self.records.push(Record::Usage(u));
    }

    /// Fails when the signing secret is unusable.
    pub fn new(config: Config, storage: Storage) -> Result<App, String> {
        let storage = Arc::new(storage);
        let rl = &config.rate_limit;
        let limits = Limits {
            auth_per_ip: SlidingWindow::new(
                rl.auth_per_minute,
                Duration::from_secs(60),
                LIMITER_KEYS,
            ),
            per_user: SlidingWindow::new(rl.user_per_hour, Duration::from_secs(3600), LIMITER_KEYS),
            concurrent: Concurrency::new(rl.user_concurrent),
        };
        let a = &config.auth;
        Ok(App {
            keys: jwt::Keys::new(
                &a.secret_key_base,
                &a.secret_key_base_previous,
                &a.issuer,
                a.ttl_hours,
            )?,
            vault: crate::vault::Vault::new(&config.vault.key, &config.vault.keys_previous)
                .map_err(|e| e.to_string())?,
            operator_checks: Default::default(),
            orchestrator: crate::orchestrator::Orchestrator::new(&config),
            metrics: described_metrics(),
            records: BatchWriter::start("records", storage.clone(), 8192, |s, rows| {
                s.record_all(rows)
            }),
            limits,
            bcrypt_slots: Concurrency::new((config.server.workers as u32 / 2).max(1)),
            started: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            storage,
            config,
        })
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    Config(String),
    Storage(StorageError),
    Bind(String, std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Storage(e) => write!(f, "{e}"),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<StorageError> for StartError {
    fn from(e: StorageError) -> Self {
        StartError::Storage(e)
    }
}

/// A started server and its state.
pub struct Running {
    pub app: Arc<App>,
    pub http: ServerHandle,
}

impl Running {
    /// The base URL clients use, e.g. `http://127.0.0.1:4000`.
    pub fn url(&self) -> String {
        let addr = self.http.addr;
        let host = if addr.ip().is_unspecified() {
            if addr.is_ipv6() {
                "[::1]".to_string()
            } else {
                "127.0.0.1".to_string()
            }
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        format!("http://{host}:{}", addr.port())
    }

    /// Graceful stop: in-flight requests get `grace` to finish, then the audit queue is
    /// flushed. Returns the number of requests cut off at the deadline.
    pub fn shutdown(self, grace: Duration) -> usize {
        let left = self.http.shutdown(grace);
        self.app.stop.store(true, Ordering::SeqCst);
        self.app.records.close();
        // Ending idle MCP sessions is a courtesy to the servers: 2 s at most in all.
        self.app
            .orchestrator
            .mcp_sessions
            .close_all(Duration::from_secs(2));
        left
    }
}

/// Opens and migrates the database (refusing a schema newer than this binary).
pub fn open_storage(config: &Config) -> Result<Storage, StorageError> {
    let storage = Storage::open(&config.database)?;
    storage.check_schema()?;
    let report = storage.migrate()?;
    if !report.applied.is_empty() {
        log::info!(
            "storage: applied migrations {:?}; schema at version {}",
            report.applied,
            report.current
        );
    }
    Ok(storage)
}

/// Opens storage and starts serving.
pub fn start(config: Config) -> Result<Running, StartError> {
    let storage = open_storage(&config)?;
    let opts = ServerOptions {
        bind: config.server.bind.clone(),
        workers: config.server.workers,
        max_body_bytes: config.server.max_body_bytes,
        show_error_detail: config.errors_detail,
    };
    // One bcrypt at the login cost (~0.2 s at 12): done aside so startup does not wait.
    let cost = config.auth.bcrypt_cost;
    let _ = std::thread::Builder::new()
        .name("warm-dummy-hash".into())
        .spawn(move || crate::auth::password::warm_dummy(cost));
    let app = Arc::new(App::new(config, storage).map_err(StartError::Config)?);
    if let Err(e) = app.orchestrator.load_month(&app.storage) {
        log::warn!("quota: could not load this month's spend: {e}");
    }
    start_sweeper(&app);
    check_operator_keys(&app);
    let dispatch = crate::api::dispatcher(app.clone());
    let http = http::start(opts.clone(), dispatch).map_err(|e| StartError::Bind(opts.bind, e))?;
    Ok(Running { app, http })
}

/// Checks operator keys whose provider has `validate_on_start`, in the background: a
/// failure is logged and shown in health, and never stops startup.
fn check_operator_keys(app: &Arc<App>) {
    use crate::providers::ProviderName;
    let todo: Vec<ProviderName> = ProviderName::ALL
        .into_iter()
        .filter(|p| {
            let c = &app.config.providers[p.as_str()];
            c.validate_on_start && c.api_key.as_ref().is_some_and(|k| !k.expose().is_empty())
        })
        .collect();
    if todo.is_empty() {
        return;
    }
    {
        let mut checks = app
            .operator_checks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for p in &todo {
            checks.insert(p.as_str().to_string(), OperatorCheck::Pending);
        }
    }
    let app = app.clone();
    let spawned = std::thread::Builder::new()
        .name("operator-keys".into())
        .spawn(move || {
            for p in todo {
                let cfg = &app.config.providers[p.as_str()];
                let key = cfg.api_key.as_ref().map(|k| k.expose()).unwrap_or("");
                let result = match crate::providers::check_key(p, key, &cfg.base_url, cfg) {
                    Ok(()) => {
                        log::info!("operator key for {p}: valid");
                        OperatorCheck::Valid
                    }
                    Err(e) => {
                        log::warn!("operator key for {p} failed its startup check: {e}");
                        OperatorCheck::Failed(e.to_string())
                    }
                };
                app.operator_checks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(p.as_str().to_string(), result);
            }
        });
    if let Err(e) = spawned {
        log::error!("could not start the operator key check: {e}");
    }
}

/// The metrics registry with a `# HELP` line for every series the app records.
fn described_metrics() -> crate::metrics::Metrics {
    let m = crate::metrics::Metrics::new();
    for (name, help) in [
        (
            "vel_http_request_duration_seconds",
            "Request latency per route.",
        ),
        (
            "vel_http_requests_total",
            "Requests per route and status class.",
        ),
        (
            "vel_routing_decisions_total",
            "Which provider served a request, and whether by fallback.",
        ),
        (
            "vel_routing_skips_total",
            "Providers passed over, with the reason.",
        ),
        ("vel_provider_calls_total", "Provider calls by outcome."),
        ("vel_provider_latency_seconds", "Provider call latency."),
        (
            "vel_provider_tokens_total",
            "Tokens per provider and direction.",
        ),
        ("vel_provider_cost_usd_total", "USD spent per provider."),
    ] {
        m.describe(name, help);
    }
    m
}

/// Purges revoked token ids once their tokens have expired anyway, and ends MCP sessions
/// idle too long: at start, then every minute until shutdown.
fn start_sweeper(app: &Arc<App>) {
    let (storage, stop) = (app.storage.clone(), app.stop.clone());
    let app = app.clone();
    let spawned = std::thread::Builder::new()
        .name("sweeper".into())
        .spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                if Instant::now() >= next {
                    match storage.purge_expired_revocations() {
                        Ok(0) => {}
                        Ok(n) => log::debug!("sweeper: purged {n} expired revocations"),
                        Err(e) => log::warn!("sweeper: {e}"),
                    }
                    let ended = app.orchestrator.mcp_sessions.sweep();
                    if ended > 0 {
                        log::debug!("sweeper: ended {ended} idle MCP sessions");
                    }
                    next = Instant::now() + Duration::from_secs(60);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
    if let Err(e) = spawned {
        log::error!("could not start the sweeper: {e}");
    }
}
