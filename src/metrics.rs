//! Metrics: labelled counters and latency histograms rendered in the Prometheus text
//! format. Self-contained: names and labels in, text out; knows nothing of the app.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0,
];

type Key = (&'static str, String);

/// An f64 updated without a lock (compare-and-swap on its bits).
#[derive(Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn add(&self, by: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + by).to_bits())
            });
    }
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum: AtomicF64,
}

/// Series are created once under a write lock; every later update takes only a shared
/// read lock and an atomic add, so request threads do not queue behind each other.
#[derive(Default)]
pub struct Metrics {
    counters: RwLock<BTreeMap<Key, Arc<AtomicF64>>>,
    histograms: RwLock<BTreeMap<Key, Arc<Histogram>>>,
    help: Mutex<BTreeMap<&'static str, &'static str>>,
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::with_capacity(48);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        if v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
            for c in v.chars() {
                match c {
                    '\\' => s.push_str("\\\\"),
                    '"' => s.push_str("\\\""),
                    '\n' => s.push_str("\\n"),
                    c => s.push(c),
                }
            }
        } else {
            s.push_str(v);
        }
        s.push('"');
    }
    s
}

/// The series for `key`, created on first use.
fn series<T: Default>(map: &RwLock<BTreeMap<Key, Arc<T>>>, key: Key) -> Arc<T> {
    if let Some(s) = map.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return s.clone();
    }
    map.write()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Documents a metric (shown as `# HELP`).
    pub fn describe(&self, name: &'static str, help: &'static str) {
        self.help
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, help);
    }

    pub fn add(&self, name: &'static str, pairs: &[(&str, &str)], by: f64) {
        series(&self.counters, (name, labels(pairs))).add(by);
    }

    pub fn inc(&self, name: &'static str, pairs: &[(&str, &str)]) {
        self.add(name, pairs, 1.0);
    }

    /// Records one observation of `seconds`.
    pub fn observe(&self, name: &'static str, pairs: &[(&str, &str)], seconds: f64) {
        let h = series(&self.histograms, (name, labels(pairs)));
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            h.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum.add(seconds);
    }

    /// A counter's current value (tests and health).
    pub fn counter(&self, name: &'static str, pairs: &[(&str, &str)]) -> f64 {
        self.counters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(name, labels(pairs)))
            .map_or(0.0, |c| c.get())
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        let help = self.help.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let header = |out: &mut String, name: &str, kind: &str| {
            if let Some(h) = help.get(name) {
                let _ = writeln!(out, "# HELP {name} {h}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        let mut out = String::new();
        let mut last = "";
        for ((name, l), v) in self
            .counters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if *name != last {
                header(&mut out, name, "counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{{{l}}} {}", v.get());
        }
        let mut last = "";
        for ((name, l), h) in self
            .histograms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if *name != last {
                header(&mut out, name, "histogram");
                last = name;
            }
            let sep = if l.is_empty() { "" } else { "," };
            let mut cumulative = 0;
            for (b, c) in BUCKETS.iter().zip(&h.counts) {
                cumulative += c.load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"{b}\"}} {cumulative}");
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{{{l}}} {}", h.sum.get());
            let _ = writeln!(out, "{name}_count{{{l}}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("a", r#"x"y\z"#), ("b", "n\nl")]),
            r#"a="x\"y\\z",b="n\nl""#
        );
    }

    #[test]
    fn counters_and_histograms_render() {
        let m = Metrics::new();
        m.describe("calls_total", "Calls.");
        m.inc("calls_total", &[("provider", "openai"), ("outcome", "ok")]);
        m.add(
            "calls_total",
            &[("provider", "openai"), ("outcome", "ok")],
            2.0,
        );
        m.observe("latency_seconds", &[("route", "/a")], 0.003);
        m.observe("latency_seconds", &[("route", "/a")], 0.2);
        assert_eq!(
            m.counter("calls_total", &[("provider", "openai"), ("outcome", "ok")]),
            3.0
        );
        let text = m.render();
        assert!(
            text.contains("# HELP calls_total Calls.\n# TYPE calls_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("calls_total{provider=\"openai\",outcome=\"ok\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{route=\"/a\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{route=\"/a\",le=\"0.25\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_count{route=\"/a\"} 2\n"),
            "{text}"
        );
    }
}
