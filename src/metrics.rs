//! Metrics: labelled counters and latency histograms rendered in the Prometheus text
//! format. Self-contained: names and labels in, text out; knows nothing of the app.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0,
];

type Key = (&'static str, String);

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, f64>>,
    histograms: Mutex<BTreeMap<Key, Histogram>>,
    help: Mutex<BTreeMap<&'static str, &'static str>>,
}

fn labels(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect::<Vec<_>>()
        .join(",")
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
        *self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((name, labels(pairs)))
            .or_insert(0.0) += by;
    }

    pub fn inc(&self, name: &'static str, pairs: &[(&str, &str)]) {
        self.add(name, pairs, 1.0);
    }

    /// Records one observation of `seconds`.
    pub fn observe(&self, name: &'static str, pairs: &[(&str, &str)], seconds: f64) {
        let mut h = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let e = h.entry((name, labels(pairs))).or_default();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            e.counts[i] += 1;
        }
        e.count += 1;
        e.sum += seconds;
    }

    /// A counter's current value (tests and health).
    pub fn counter(&self, name: &'static str, pairs: &[(&str, &str)]) -> f64 {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(name, labels(pairs)))
            .copied()
            .unwrap_or(0.0)
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        let help = self.help.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        let mut last = "";
        for ((name, l), v) in self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if *name != last {
                if let Some(h) = help.get(name) {
                    let _ = writeln!(out, "# HELP {name} {h}");
                }
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(out, "{name}{{{l}}} {v}");
        }
        let hs = self
            .histograms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut last = "";
        for ((name, l), h) in &hs {
            if *name != last {
                if let Some(text) = help.get(name) {
                    let _ = writeln!(out, "# HELP {name} {text}");
                }
                let _ = writeln!(out, "# TYPE {name} histogram");
                last = name;
            }
            let sep = if l.is_empty() { "" } else { "," };
            let mut cumulative = 0;
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                cumulative += c;
                let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"{b}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{l}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{l}}} {}", h.count);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
