//! The bridge's metrics, rendered as Prometheus text. Totals are also given without
//! labels, so a glance (or a test) needs no label parsing.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Series {
    /// (name, labels) → value
    counters: BTreeMap<(&'static str, String), u64>,
    gauges: BTreeMap<(&'static str, String), f64>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<Series>,
    /// Every route's clients are created and its thread runs (`/readyz`).
    ready: std::sync::atomic::AtomicBool,
}

const HELP: [(&str, &str); 9] = [
    (
        "records_forwarded",
        "Records delivered to the destination, per route and source topic.",
    ),
    (
        "bytes_forwarded",
        "Value bytes delivered to the destination, per route and source topic.",
    ),
    (
        "destination_errors",
        "Destination errors by class (retried unless fatal).",
    ),
    ("source_errors", "Errors reading the source cluster."),
    (
        "skipped_offsets",
        "Source offsets never forwarded (retention or offset reset); should stay 0.",
    ),
    (
        "offset_resets",
        "Times a partition's offsets went back (topic recreated) or were reset.",
    ),
    ("commits", "Offset commits to the source cluster."),
    (
        "lag_offsets",
        "Records not yet read, per partition (gauge).",
    ),
    (
        "lag_seconds",
        "Age of the last record read while behind, per partition (gauge).",
    ),
];

fn labels(pairs: &[(&str, &str)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", evd_schemas::metrics_text::label_value(v)))
        .collect();
    body.join(",")
}

impl Metrics {
    pub fn add(&self, name: &'static str, pairs: &[(&str, &str)], n: u64) {
        let mut s = self.series.lock().expect("metrics lock");
        *s.counters.entry((name, labels(pairs))).or_default() += n;
    }

    pub fn set(&self, name: &'static str, pairs: &[(&str, &str)], v: f64) {
        let mut s = self.series.lock().expect("metrics lock");
        s.gauges.insert((name, labels(pairs)), v);
    }

    /// The sum of a counter over all its labels.
    pub fn total(&self, name: &str) -> u64 {
        let s = self.series.lock().expect("metrics lock");
        s.counters
            .iter()
            .filter(|((n, _), _)| *n == name)
            .map(|(_, v)| v)
            .sum()
    }

    pub fn mark_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ready once every route runs (`/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        if self.ready.load(std::sync::atomic::Ordering::Relaxed) {
            Ok(())
        } else {
            Err("the routes' Kafka clients are being created".into())
        }
    }

    pub fn render(&self) -> String {
        let s = self.series.lock().expect("metrics lock");
        let mut out = String::new();
        for (name, help) in HELP {
            let _ = writeln!(out, "# HELP evd_bridge_{name} {help}");
            let mut total = 0u64;
            let mut counter = false;
            for ((n, l), v) in &s.counters {
                if *n == name {
                    counter = true;
                    total += v;
                    let _ = writeln!(out, "evd_bridge_{name}_total{{{l}}} {v}");
                }
            }
            for ((n, l), v) in &s.gauges {
                if *n == name {
                    let _ = writeln!(out, "evd_bridge_{name}{{{l}}} {v}");
                }
            }
            if counter || !name.starts_with("lag") {
                let _ = writeln!(out, "evd_bridge_{name} {total}");
            }
        }
        out
    }
}
