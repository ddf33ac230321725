//! Metrics exposition every role shares, on `prometheus-client`.
//!
//! A role keeps its figures where its tasks update them (atomics, its pure cores'
//! state) and describes them at each scrape in a [`Scrape`]: one family per name,
//! with its help, its type and its series. [`Scrape::render`] encodes them with
//! `prometheus-client` in the OpenMetrics text format, so every role follows the same
//! conventions: counters end in `_total` (the library appends it; names given here
//! never carry it), every family has `# HELP` and `# TYPE`, units are base units named
//! in the family (`_seconds`, `_bytes`), and every role exports `evd_build_info`.
//!
//! Contract: label values are escaped here (backslash, double quote, newline), since
//! the library writes them as given; no agent id, file path or topic name can break
//! a scrape. Family names are static and evd's own.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt::Write;
use std::sync::Arc;

/// The `Content-Type` of a rendered scrape.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A latency histogram in seconds, 1 ms to about 35 minutes in powers of two: wide
/// enough for a client ack after fsync (ms) and an end-to-end ack (minutes) alike.
/// Clones share the same counts.
#[derive(Debug, Clone)]
pub struct Latency(Arc<Histogram>);

impl Default for Latency {
    fn default() -> Self {
        Latency(Arc::new(Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 22),
        )))
    }
}

impl Latency {
    pub fn observe_since(&self, start: std::time::Instant) {
        self.0.observe(start.elapsed().as_secs_f64());
    }

    /// A duration in milliseconds of evd's clock; negative (a clock step) counts as 0.
    pub fn observe_ms(&self, ms: i64) {
        self.0.observe(ms.max(0) as f64 / 1000.0);
    }
}

/// A label value as the exposition format wants it: backslash, double quote and
/// newline escaped.
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A label value, escaped when encoded.
#[derive(Debug, Clone)]
struct Escaped(String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&label_value(&self.0))
    }
}

type Labels = Vec<(&'static str, Escaped)>;

#[derive(Debug)]
enum Value {
    Counter(u64),
    Gauge(i64),
    GaugeF64(f64),
    /// Sum, count and non-cumulative bucket counts by upper bound (the last `+Inf`).
    Buckets(f64, u64, Vec<(f64, u64)>),
    Histogram(Arc<Histogram>),
}

impl Value {
    fn metric_type(&self) -> MetricType {
        match self {
            Value::Counter(_) => MetricType::Counter,
            Value::Gauge(_) | Value::GaugeF64(_) => MetricType::Gauge,
            Value::Buckets(..) | Value::Histogram(_) => MetricType::Histogram,
        }
    }

    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> std::fmt::Result {
        match self {
            Value::Counter(v) => ConstCounter::new(*v).encode(encoder),
            Value::Gauge(v) => ConstGauge::new(*v).encode(encoder),
            Value::GaugeF64(v) => ConstGauge::new(*v).encode(encoder),
            Value::Buckets(sum, count, buckets) => encoder
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    *sum, *count, buckets, None,
                ),
            Value::Histogram(h) => h.encode(encoder),
        }
    }
}

#[derive(Debug)]
struct Family {
    name: String,
    help: &'static str,
    series: Vec<(Labels, Value)>,
}

/// The families of one scrape, in the order they were added.
#[derive(Debug, Default)]
pub struct Scrape {
    families: Vec<Family>,
}

/// Label pairs of one series, as the role has them.
pub type LabelPairs<'a> = &'a [(&'static str, &'a str)];

impl Scrape {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, name: &str, help: &'static str, labels: LabelPairs, value: Value) {
        let labels = labels
            .iter()
            .map(|(k, v)| (*k, Escaped((*v).to_string())))
            .collect();
        match self.families.iter_mut().find(|f| f.name == name) {
            Some(f) => f.series.push((labels, value)),
            None => self.families.push(Family {
                name: name.to_string(),
                help,
                series: vec![(labels, value)],
            }),
        }
    }

    /// A counter; `name` without `_total`, which the exposition appends.
    pub fn counter(&mut self, name: &str, help: &'static str, labels: LabelPairs, v: u64) {
        debug_assert!(!name.ends_with("_total"), "{name}: the library adds _total");
        self.push(name, help, labels, Value::Counter(v));
    }

    pub fn gauge(&mut self, name: &str, help: &'static str, labels: LabelPairs, v: i64) {
        self.push(name, help, labels, Value::Gauge(v));
    }

    pub fn gauge_f64(&mut self, name: &str, help: &'static str, labels: LabelPairs, v: f64) {
        self.push(name, help, labels, Value::GaugeF64(v));
    }

    /// A histogram the role keeps itself: sum, count and non-cumulative counts per
    /// upper bound, the last bound `f64::MAX` for `+Inf`.
    pub fn buckets(
        &mut self,
        name: &str,
        help: &'static str,
        labels: LabelPairs,
        (sum, count, buckets): (f64, u64, Vec<(f64, u64)>),
    ) {
        self.push(name, help, labels, Value::Buckets(sum, count, buckets));
    }

    /// A live latency histogram.
    pub fn histogram(&mut self, name: &str, help: &'static str, h: &Latency) {
        self.push(name, help, &[], Value::Histogram(Arc::clone(&h.0)));
    }

    /// The OpenMetrics text: `evd_build_info{role,version}` and every family under
    /// `evd_<role>_`, then `# EOF`.
    pub fn render(self, role: &'static str) -> String {
        let mut registry = Registry::with_prefix("evd");
        // A gauge rather than an OpenMetrics `info`, which Prometheus-format tools
        // (promtool, older scrapers) do not know.
        let mut build = Scrape::new();
        build.gauge(
            "build_info",
            "The evd build this process runs (value 1).",
            &[("role", role), ("version", env!("CARGO_PKG_VERSION"))],
            1,
        );
        registry.register_collector(Box::new(build));
        registry
            .sub_registry_with_prefix(role)
            .register_collector(Box::new(self));
        let mut out = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a
        // family's shape, which the tests below would show.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for f in &self.families {
            let Some(kind) = f.series.first().map(|(_, v)| v.metric_type()) else {
                continue;
            };
            let mut family = encoder.encode_descriptor(&f.name, f.help, None, kind)?;
            match f.series.as_slice() {
                // One series without labels: no `{}` after the name.
                [(labels, value)] if labels.is_empty() => value.encode(family)?,
                series => {
                    for (labels, value) in series {
                        value.encode(family.encode_family(labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_cannot_break_the_exposition() {
        assert_eq!(label_value("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        let mut s = Scrape::new();
        s.gauge("lost", "Lost.", &[("agent_id", "a\"}\nevil 1")], 3);
        let text = s.render("ops");
        assert!(
            text.contains("evd_ops_lost{agent_id=\"a\\\"}\\nevil 1\"} 3"),
            "{text}"
        );
        assert!(!text.lines().any(|l| l.starts_with("evil")), "{text}");
    }

    #[test]
    fn counters_get_total_help_and_type_and_every_scrape_has_build_info() {
        let mut s = Scrape::new();
        s.counter("events_accepted", "Events acked.", &[], 7);
        s.gauge("ready", "Ready.", &[], 1);
        s.counter("forwarded", "Records.", &[("route", "r1")], 2);
        s.counter("forwarded", "Records.", &[("route", "r2")], 3);
        let text = s.render("agent");
        for line in [
            "# HELP evd_agent_events_accepted Events acked.",
            "# TYPE evd_agent_events_accepted counter",
            "evd_agent_events_accepted_total 7",
            "# TYPE evd_agent_ready gauge",
            "evd_agent_ready 1",
            "evd_agent_forwarded_total{route=\"r1\"} 2",
            "evd_agent_forwarded_total{route=\"r2\"} 3",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(
            text.contains("evd_build_info{role=\"agent\",version=\""),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE evd_agent_forwarded ").count(), 1);
    }

    #[test]
    fn histograms_render_cumulative_buckets_sum_and_count() {
        let h = Latency::default();
        h.observe_ms(1);
        h.observe_ms(3000);
        let mut s = Scrape::new();
        s.histogram("ack_duration_seconds", "Ack latency.", &h);
        s.buckets(
            "lateness_seconds",
            "Lateness.",
            &[("event_type", "PageView")],
            (6.0, 2, vec![(1.0, 1), (5.0, 1), (f64::MAX, 0)]),
        );
        let text = s.render("consumer");
        for line in [
            "# TYPE evd_consumer_ack_duration_seconds histogram",
            "evd_consumer_ack_duration_seconds_count 2",
            "evd_consumer_ack_duration_seconds_bucket{le=\"0.001\"} 1",
            "evd_consumer_ack_duration_seconds_bucket{le=\"+Inf\"} 2",
            "evd_consumer_lateness_seconds_bucket{le=\"5.0\",event_type=\"PageView\"} 2",
            "evd_consumer_lateness_seconds_count{event_type=\"PageView\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
