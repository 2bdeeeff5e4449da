//! The HTTP server: a fixed pool of worker threads on tiny_http that read each request
//! (body limits, request id), call the app's dispatch, catch panics, and write and log.

pub mod error;
pub mod message;
pub mod router;

pub use error::{ApiError, ErrorCode};
pub use message::{Method, Req, Resp};
pub use router::{Found, Router};

use std::io::Read;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the server calls for every well-formed request.
pub type Dispatch = Arc<dyn Fn(Req) -> Resp + Send + Sync>;

/// Settings of the socket layer.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub bind: String,
    pub workers: usize,
    pub max_body_bytes: u64,
    pub show_error_detail: bool,
}

/// A running server. `shutdown` stops the workers after their current request.
pub struct ServerHandle {
    pub addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    pub in_flight: Arc<AtomicUsize>,
}

impl ServerHandle {
    /// Stops taking requests and waits up to `grace` for in-flight ones to finish.
    /// Returns the number of requests still running when the deadline passed.
    pub fn shutdown(self, grace: Duration) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        for _ in &self.workers {
            self.server.unblock();
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && self.workers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = self.in_flight.load(Ordering::SeqCst);
        for w in self.workers {
            if w.is_finished() {
                let _ = w.join();
            }
        }
        left
    }
}

/// Binds `addr`. `[::]` means IPv4 and IPv6; on a host without IPv6 it falls back to
/// `0.0.0.0` on the same port (with a warning) rather than refusing to start.
fn bind(addr: &str) -> std::io::Result<std::net::TcpListener> {
    match std::net::TcpListener::bind(addr) {
        Ok(l) => Ok(l),
        Err(e) => match addr.parse::<SocketAddr>() {
            Ok(SocketAddr::V6(v6)) if v6.ip().is_unspecified() => {
                log::warn!(
                    "http: cannot listen on {addr} ({e}); IPv6 seems unavailable, listening on 0.0.0.0:{}",
                    v6.port()
                );
                std::net::TcpListener::bind(("0.0.0.0", v6.port()))
            }
            _ => Err(e),
        },
    }
}

/// Binds and starts `opts.workers` worker threads.
pub fn start(opts: ServerOptions, dispatch: Dispatch) -> std::io::Result<ServerHandle> {
    let listener = bind(&opts.bind)?;
    let addr = listener.local_addr()?;
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let opts = Arc::new(opts);
    let mut workers = Vec::new();
    for i in 0..opts.workers.max(1) {
        let (server, stop, opts, dispatch, in_flight) = (
            server.clone(),
            stop.clone(),
            opts.clone(),
            dispatch.clone(),
            in_flight.clone(),
        );
        let w = std::thread::Builder::new()
            .name(format!("http-{i}"))
            .spawn(move || worker(&server, &stop, &opts, &dispatch, &in_flight))?;
        workers.push(w);
    }
    Ok(ServerHandle {
        addr,
        server,
        stop,
        workers,
        in_flight,
    })
}

fn worker(
    server: &tiny_http::Server,
    stop: &AtomicBool,
    opts: &ServerOptions,
    dispatch: &Dispatch,
    in_flight: &AtomicUsize,
) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(rq)) => {
                in_flight.fetch_add(1, Ordering::SeqCst);
                // The dispatch has its own catch (a 500 with the request id); this one keeps
                // the worker alive through a panic anywhere else (reading, writing).
                if catch_unwind(AssertUnwindSafe(|| serve_one(rq, opts, dispatch))).is_err() {
                    log::error!("http: a request failed outside its handler; the worker goes on");
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(None) => {}
            Err(e) => {
                log::error!("http: accept loop failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// A client-sent request id is echoed when it is sane; otherwise a fresh one is made.
fn request_id(rq: &tiny_http::Request) -> String {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv("x-request-id"))
        .map(|h| h.value.as_str().to_string())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn serve_one(mut rq: tiny_http::Request, opts: &ServerOptions, dispatch: &Dispatch) {
    let started = Instant::now();
    let request_id = request_id(&rq);
    let method = Method::parse(rq.method().as_str());
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let path = path.to_string();
    let mut req = Req {
        method,
        path: path.clone(),
        query: query.to_string(),
        headers: rq
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect(),
        body: Vec::new(),
        request_id: request_id.clone(),
        peer: rq.remote_addr().copied(),
        params: Vec::new(),
        route: String::new(),
    };
    let resp = match read_body(&mut rq, opts.max_body_bytes) {
        Ok(body) => {
            req.body = body;
            match catch_unwind(AssertUnwindSafe(|| dispatch(req))) {
                Ok(resp) => resp,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    log::error!(
                        "http: handler panicked request_id={request_id} path={path}: {}",
                        crate::logging::redact(&what)
                    );
                    let e =
                        ApiError::internal("internal error").with_detail("the handler panicked");
                    Resp::error(&e, &request_id, opts.show_error_detail)
                }
            }
        }
        Err(e) => Resp::error(&e, &request_id, opts.show_error_detail),
    };
    let status = resp.status;
    let user_id = resp.user_id.clone();
    let close = status == 413;
    write_response(rq, resp, &request_id, close);
    crate::logging::request_line(&crate::logging::RequestLine {
        request_id: &request_id,
        user_id: user_id.as_deref(),
        method: method.as_str(),
        path: &path,
        status,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    });
}

/// Reads the body up to `max` bytes: 413 when the declared length is over the limit
/// (before reading anything) or when a chunked body runs past it.
fn read_body(rq: &mut tiny_http::Request, max: u64) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {max} bytes"),
        )
    };
    if rq.body_length().is_some_and(|n| n as u64 > max) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    rq.as_reader()
        .take(max + 1)
        .read_to_end(&mut body)
        .map_err(|e| {
            ApiError::bad_request("could not read the request body").with_detail(e.to_string())
        })?;
    if body.len() as u64 > max {
        return Err(too_large());
    }
    Ok(body)
}

fn write_response(rq: tiny_http::Request, resp: Resp, request_id: &str, close: bool) {
    let len = resp.body.len();
    let mut out = tiny_http::Response::new(
        tiny_http::StatusCode(resp.status),
        Vec::new(),
        std::io::Cursor::new(resp.body),
        Some(len),
        None,
    );
    let mut add = |k: &str, v: &str| {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            out.add_header(h);
        }
    };
    add("x-request-id", request_id);
    for (k, v) in &resp.headers {
        add(k, v);
    }
    if close {
        add("Connection", "close");
    }
    if let Err(e) = rq.respond(out) {
        log::debug!("http: writing response failed: {e}");
    }
}
