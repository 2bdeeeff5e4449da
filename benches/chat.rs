//! Chat benchmark: `POST /api/agents/:id/chat` through vel_tutor versus the same request
//! sent straight to a fake upstream that answers at once, in one run, plus a third path:
//! a bare proxy on the same stack doing no work of its own (the floor for any proxy here).
//! 1. Throughput: 32 keep-alive connections, closed loop, 3 alternating rounds per path.
//! 2. Added latency: an open-loop 500 req/s for 10 s per path (latency counted from each
//!    request's scheduled time, so a stall is not hidden), P50/P95/P99 of each and of the
//!    difference, plus vel_tutor's own `x-vel-overhead-ms`.
//!
//! Run: `cargo bench --bench chat [SECONDS] [RATE]`. Nothing leaves 127.0.0.1.
//! `BENCH_WORKERS=N` sets vel_tutor's HTTP workers (default 8, the dev profile's);
//! `BENCH_SERVE=1` only starts both servers and prints their URLs and credentials (for
//! `wrk`); `BENCH_SEQ=N` sends N sequential chats and exits (for `valgrind --tool=callgrind`);
//! `BENCH_PATH=direct|bare` sends those straight to the fake or through the bare proxy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "sk-bench-operator-key-000001";

/// A tiny_http server on 127.0.0.1 with `threads` threads pulling requests, answering
/// each with `answer(request body)` as JSON. Returns its port.
fn json_server(
    threads: usize,
    name: &str,
    answer: impl Fn(Vec<u8>) -> Vec<u8> + Clone + Send + 'static,
) -> u16 {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
    let port = server.server_addr().to_ip().expect("ip").port();
    for _ in 0..threads {
        let (server, answer) = (server.clone(), answer.clone());
        let _ = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for mut rq in server.incoming_requests() {
                    let mut body = Vec::new();
                    let _ = std::io::Read::read_to_end(rq.as_reader(), &mut body);
                    let ct = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/json"[..],
                    )
                    .expect("header");
                    let _ =
                        rq.respond(tiny_http::Response::from_data(answer(body)).with_header(ct));
                }
            });
    }
    port
}

/// The fake upstream: answers every chat completion at once with a fixed body.
fn fake_upstream() -> String {
    let body = serde_json::json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
    })
    .to_string()
    .into_bytes();
    let port = json_server(4, "fake", move |_| body.clone());
    format!("http://127.0.0.1:{port}/v1")
}

/// The floor for any proxy on this stack: tiny_http with the same worker pool as
/// vel_tutor's, forwarding each body to the upstream with ureq and returning the answer,
/// with no authentication, database, routing or accounting.
fn bare_proxy(upstream: &str, workers: usize) -> String {
    let client = agent();
    let url = format!("{upstream}/chat/completions");
    let port = json_server(workers, "bare", move |body| {
        client
            .post(&url)
            .header("Authorization", &format!("Bearer {KEY}"))
            .header("Content-Type", "application/json")
            .send(&body[..])
            .ok()
            .and_then(|mut r| r.body_mut().read_to_vec().ok())
            .unwrap_or_default()
    });
    format!("http://127.0.0.1:{port}/v1/chat/completions")
}

struct Target {
    url: String,
    auth: String,
    body: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections_per_host(64)
        .max_idle_connections(64)
        // No global timeout: with one, ureq 3.5 resolves the host in a new thread per
        // request, which would make the load generator, not the servers, the bottleneck.
        .build()
        .into()
}

/// One request; returns (ok, vel_tutor's own overhead in ms if reported).
fn send(a: &ureq::Agent, t: &Target) -> (bool, Option<f64>) {
    match a
        .post(&t.url)
        .header("Authorization", &t.auth)
        .header("Content-Type", "application/json")
        .send(t.body.as_str())
    {
        Ok(mut r) => {
            let overhead = r
                .headers()
                .get("x-vel-overhead-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let ok = r.status().as_u16() == 200;
            let _ = r.body_mut().read_to_vec();
            (ok, overhead)
        }
        Err(_) => (false, None),
    }
}

/// Closed loop: `conns` threads each with their own connection, for `secs`. Returns
/// req/s, errors, and every `x-vel-overhead-ms` seen (µs).
fn throughput(t: &Arc<Target>, conns: usize, secs: u64) -> (f64, u64, Vec<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (t, stop, ok, bad) = (t.clone(), stop.clone(), ok.clone(), bad.clone());
            std::thread::Builder::new()
                .name("gen".into())
                .spawn(move || {
                    let a = agent();
                    let mut own = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        match send(&a, &t) {
                            (true, overhead) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                own.extend(overhead.map(|ms| ms * 1000.0));
                            }
                            (false, _) => {
                                bad.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    own
                })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut own = Vec::new();
    for h in handles {
        own.extend(h.expect("thread").join().unwrap_or_default());
    }
    (
        ok.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        bad.load(Ordering::Relaxed),
        own,
    )
}

/// Open loop at `rate` req/s for `secs`: latencies (µs) from each scheduled send time.
fn fixed_rate(t: &Arc<Target>, rate: u64, secs: u64) -> (Vec<f64>, Vec<f64>, u64) {
    let total = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(50);
    let next = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let own = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let bad = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (t, next, lat, own, bad) = (
                t.clone(),
                next.clone(),
                lat.clone(),
                own.clone(),
                bad.clone(),
            );
            std::thread::Builder::new()
                .name("genrate".into())
                .spawn(move || {
                    let a = agent();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        let due = start + interval * i as u32;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let (ok, overhead) = send(&a, &t);
                        let us = due.elapsed().as_secs_f64() * 1e6;
                        if ok {
                            lat.lock().expect("lat").push(us);
                            if let Some(o) = overhead {
                                own.lock().expect("own").push(o * 1000.0);
                            }
                        } else {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
        })
        .collect();
    for h in handles {
        let _ = h.expect("thread").join();
    }
    let take = |m: Arc<Mutex<Vec<f64>>>| std::mem::take(&mut *m.lock().expect("samples"));
    (take(lat), take(own), bad.load(Ordering::Relaxed))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let rate: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(500);

    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(8);
    let upstream = fake_upstream();
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = vel_tutor::config::Inputs {
        profile_flag: Some("test".into()),
        cli: [
            (
                "database.url",
                dir.path().join("bench.sqlite3").display().to_string(),
            ),
            ("providers.openai.base_url", upstream.clone()),
            ("providers.openai.api_key", KEY.to_string()),
            ("server.workers", workers.to_string()),
            ("database.pool_size", "8".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| ("--set".to_string(), k.to_string(), v))
        .collect(),
        cwd: dir.path().to_path_buf(),
        ..Default::default()
    };
    let config = vel_tutor::config::load(&inputs).config.expect("config");
    let running = vel_tutor::app::start(config).expect("start");
    let vel = running.url();
    let a = agent();
    let mut r = a
        .post(&format!("{vel}/api/auth/register"))
        .header("Content-Type", "application/json")
        .send(r#"{"email":"bench@example.com","password":"Correct-Horse-42!"}"#)
        .expect("register");
    let j: serde_json::Value =
        serde_json::from_slice(&r.body_mut().read_to_vec().expect("body")).expect("json");
    let token = j["token"].as_str().expect("token").to_string();
    let mut r = a
        .post(&format!("{vel}/api/agents"))
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {token}"))
        .send(r#"{"name":"bench","kind":"general","provider":"openai","fallback":false}"#)
        .expect("agent");
    let j: serde_json::Value =
        serde_json::from_slice(&r.body_mut().read_to_vec().expect("body")).expect("json");
    let id = j["id"].as_str().expect("id").to_string();

    let messages = r#"[{"role":"user","content":"What is six times seven?"}]"#;
    let direct = Arc::new(Target {
        url: format!("{upstream}/chat/completions"),
        auth: format!("Bearer {KEY}"),
        body: format!(r#"{{"model":"gpt-4o","messages":{messages}}}"#),
    });
    let via = Arc::new(Target {
        url: format!("{vel}/api/agents/{id}/chat"),
        auth: format!("Bearer {token}"),
        body: format!(r#"{{"messages":{messages}}}"#),
    });
    assert!(send(&a, &via).0, "a chat through vel_tutor works");
    let bare = Arc::new(Target {
        url: bare_proxy(&upstream, workers),
        auth: String::new(),
        body: direct.body.clone(),
    });
    assert!(send(&a, &bare).0, "the bare proxy works");

    if std::env::var("BENCH_SERVE").is_ok() {
        println!("DIRECT {} {}", direct.url, direct.auth);
        println!("VIA {} {}", via.url, via.auth);
        println!("BARE {} Bearer none", bare.url);
        std::thread::sleep(Duration::from_secs(600));
    }
    if let Ok(n) = std::env::var("BENCH_SEQ") {
        let n: usize = n.parse().unwrap_or(1000);
        let target = match std::env::var("BENCH_PATH").as_deref() {
            Ok("direct") => &direct,
            Ok("bare") => &bare,
            _ => &via,
        };
        let a2 = agent();
        for _ in 0..n {
            assert!(send(&a2, target).0);
        }
        running.shutdown(Duration::from_secs(5));
        return;
    }
    println!(
        "# chat benchmark: {secs} s per phase, fixed rate {rate} req/s, 2-core machine, load generator in-process"
    );
    // Warm up both paths (connection pools, thread pools, SQLite page cache), then three
    // alternating rounds; the median of each path (this machine's neighbours are noisy).
    throughput(&direct, 32, 2);
    throughput(&via, 32, 2);
    throughput(&bare, 32, 2);
    let (mut d_all, mut v_all, mut b_all, mut errors) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let mut own_loaded = Vec::new();
    for _ in 0..3 {
        let (d, db, _) = throughput(&direct, 32, secs / 2 + 1);
        let (v, vb, own) = throughput(&via, 32, secs / 2 + 1);
        let (b, bb, _) = throughput(&bare, 32, secs / 2 + 1);
        own_loaded.extend(own);
        d_all.push(d);
        v_all.push(v);
        b_all.push(b);
        errors += db + vb + bb;
    }
    println!("  rounds (req/s): direct {d_all:.0?}, via {v_all:.0?}, bare proxy {b_all:.0?}");
    let (d_rps, v_rps, b_rps) = (
        pct(&mut d_all, 0.5),
        pct(&mut v_all, 0.5),
        pct(&mut b_all, 0.5),
    );
    println!(
        "throughput, 32 connections, median of 3 rounds: direct {d_rps:.0} req/s; via vel_tutor {v_rps:.0} req/s; ratio {:.2}; bare proxy {b_rps:.0} req/s, ratio {:.2}; {errors} errors",
        v_rps / d_rps,
        b_rps / d_rps
    );
    println!(
        "x-vel-overhead-ms under that load (32 connections, all rounds, {} chats): P50 {:.0} µs, P95 {:.0} µs, P99 {:.0} µs",
        own_loaded.len(),
        pct(&mut own_loaded, 0.50),
        pct(&mut own_loaded, 0.95),
        pct(&mut own_loaded, 0.99)
    );

    let (mut dl, _, db) = fixed_rate(&direct, rate, secs);
    let (mut vl, mut own, vb) = fixed_rate(&via, rate, secs);
    println!(
        "fixed {rate} req/s: direct {} ok / {db} errors; via vel_tutor {} ok / {vb} errors",
        dl.len(),
        vl.len()
    );
    println!(
        "{:>6} {:>12} {:>14} {:>12} {:>22}",
        "pct", "direct µs", "vel_tutor µs", "added µs", "x-vel-overhead-ms µs"
    );
    for p in [0.50, 0.95, 0.99] {
        let (d, v, o) = (pct(&mut dl, p), pct(&mut vl, p), pct(&mut own, p));
        println!(
            "{:>5.0}% {d:>12.0} {v:>14.0} {:>12.0} {o:>22.0}",
            p * 100.0,
            v - d
        );
    }
    running.shutdown(Duration::from_secs(5));
}
