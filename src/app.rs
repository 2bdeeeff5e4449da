//! The running application: the shared `App` state and `start`, which wires config, storage
//! and the HTTP server together. `main.rs` and the integration tests both start here.

use crate::config::Config;
use crate::http::{self, ServerHandle, ServerOptions};
use crate::storage::{Storage, StorageError};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// State shared by every request.
pub struct App {
    pub config: Config,
    pub storage: Storage,
    pub started: Instant,
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    Storage(StorageError),
    Bind(String, std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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

    /// Graceful stop: in-flight requests get `grace` to finish.
    pub fn shutdown(self, grace: Duration) -> usize {
        self.http.shutdown(grace)
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
    let app = Arc::new(App {
        config,
        storage,
        started: Instant::now(),
    });
    let dispatch = crate::api::dispatcher(app.clone());
    let http = http::start(opts.clone(), dispatch).map_err(|e| StartError::Bind(opts.bind, e))?;
    Ok(Running { app, http })
}
