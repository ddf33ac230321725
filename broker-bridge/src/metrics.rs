//! The bridge's figures, exposed through the shared [`Scrape`]: names are listed in
//! docs/metrics.md, and a test keeps the two the same. Counters and gauges are kept
//! per label set; each is exported once, with its labels (sum them in a query).

use evd_schemas::metrics::{Latency, Scrape};
use std::collections::BTreeMap;
use std::sync::Mutex;

type LabelSet = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Series {
    counters: BTreeMap<(&'static str, LabelSet), u64>,
    gauges: BTreeMap<(&'static str, LabelSet), f64>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<Series>,
    /// Every route's clients are created and its thread runs (`/readyz`).
    ready: std::sync::atomic::AtomicBool,
    /// Source record timestamp → delivered to the destination.
    pub forward_lag_seconds: Latency,
}

/// (name, kind, help) of every labelled family, in exposition order.
const FAMILIES: [(&str, Kind, &str); 9] = [
    (
        "records_forwarded",
        Kind::Counter,
        "Records delivered to the destination, per route and source topic.",
    ),
    (
        "bytes_forwarded",
        Kind::Counter,
        "Value bytes delivered to the destination, per route and source topic.",
    ),
    (
        "destination_errors",
        Kind::Counter,
        "Destination errors by class (retried unless fatal).",
    ),
    (
        "source_errors",
        Kind::Counter,
        "Errors reading the source cluster.",
    ),
    (
        "skipped_offsets",
        Kind::Counter,
        "Source offsets never forwarded (retention or offset reset); should stay 0.",
    ),
    (
        "offset_resets",
        Kind::Counter,
        "Times a partition's offsets went back (topic recreated) or were reset.",
    ),
    (
        "commits",
        Kind::Counter,
        "Offset commits to the source cluster.",
    ),
    (
        "lag_offsets",
        Kind::Gauge,
        "Records not yet read, per partition this bridge owns now.",
    ),
    (
        "lag_seconds",
        Kind::Gauge,
        "Age of the last record read while behind, per partition this bridge owns now.",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
}

fn label_set(pairs: &[(&'static str, &str)]) -> LabelSet {
    pairs.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

impl Metrics {
    pub fn add(&self, name: &'static str, pairs: &[(&'static str, &str)], n: u64) {
        let mut s = self.series.lock().unwrap_or_else(|p| p.into_inner());
        *s.counters.entry((name, label_set(pairs))).or_default() += n;
    }

    pub fn set(&self, name: &'static str, pairs: &[(&'static str, &str)], v: f64) {
        let mut s = self.series.lock().unwrap_or_else(|p| p.into_inner());
        s.gauges.insert((name, label_set(pairs)), v);
    }

    /// Drops the series of gauge `name` whose labels `keep` refuses: a partition that
    /// left the route must not go on showing the value it last had.
    pub fn retain_gauges(&self, name: &str, keep: impl Fn(&[(&'static str, String)]) -> bool) {
        let mut s = self.series.lock().unwrap_or_else(|p| p.into_inner());
        s.gauges.retain(|(n, labels), _| *n != name || keep(labels));
    }

    /// The sum of a counter over all its labels.
    pub fn total(&self, name: &str) -> u64 {
        let s = self.series.lock().unwrap_or_else(|p| p.into_inner());
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
        let mut out = Scrape::new();
        {
            let s = self.series.lock().unwrap_or_else(|p| p.into_inner());
            for (name, kind, help) in FAMILIES {
                match kind {
                    Kind::Counter => {
                        for ((_, labels), v) in s.counters.iter().filter(|((n, _), _)| *n == name) {
                            out.counter(name, help, &pairs(labels), *v);
                        }
                    }
                    Kind::Gauge => {
                        for ((_, labels), v) in s.gauges.iter().filter(|((n, _), _)| *n == name) {
                            out.gauge_f64(name, help, &pairs(labels), *v);
                        }
                    }
                }
            }
        }
        out.histogram(
            "forward_lag_seconds",
            "Time from a source record's timestamp to its delivery at the destination.",
            &self.forward_lag_seconds,
        );
        out.gauge(
            "ready",
            "1 once every route's clients are created and its thread runs.",
            &[],
            i64::from(self.ready.load(std::sync::atomic::Ordering::Relaxed)),
        );
        out.render("bridge")
    }
}

fn pairs(labels: &LabelSet) -> Vec<(&'static str, &str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn each_counter_is_exported_once_as_a_typed_total_with_its_labels() {
        let m = Metrics::default();
        m.add(
            "records_forwarded",
            &[("route", "forward"), ("topic", "t")],
            5,
        );
        let text = m.render();
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("evd_bridge_records_forwarded"))
            .collect();
        assert_eq!(
            samples,
            ["evd_bridge_records_forwarded_total{route=\"forward\",topic=\"t\"} 5"],
            "{text}"
        );
        assert!(
            text.contains("# TYPE evd_bridge_records_forwarded counter\n"),
            "{text}"
        );
    }
}
