//! The bridge's configuration file (TOML). Field docs here are the user documentation;
//! `evd validate bridge.toml` checks a file without starting anything.

use evd_schemas::Invalid;
use std::collections::BTreeMap;

use serde::Deserialize;

/// `evd bridge --config bridge.toml`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Consumer group prefix: the forward route uses `<group_id>.forward` on the edge
    /// cluster, the reverse route `<group_id>.reverse` on the central cluster. Bridge
    /// instances with the same `group_id` share partitions.
    #[serde(default = "defaults::group_id")]
    pub group_id: String,
    /// `host:port` for Prometheus metrics (`/metrics`); unset = no metrics server.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// The site's own cluster: events are read here, acks written back here.
    pub edge: ClusterConfig,
    /// The central cluster: events are written here, acks read here.
    pub central: ClusterConfig,
    #[serde(default)]
    pub forward: ForwardConfig,
    #[serde(default)]
    pub reverse: ReverseConfig,
    #[serde(default)]
    pub tuning: TuningConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `host:port,host:port`
    pub bootstrap_servers: String,
    /// librdkafka settings for every client on this cluster (the consumer of one
    /// route, the producer of the other): security (`security.protocol`, `sasl.*`,
    /// `ssl.*`), timeouts, … Keys with dots are quoted.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// librdkafka settings for consumers reading this cluster, over `options`.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka settings for producers writing to this cluster, over `options`.
    /// `enable.idempotence`, `acks`, `compression.type` and `partitioner` are fixed.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
}

/// Edge → central: the event topics (and the audit topic).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Topics to carry. Empty: every topic `topic_pattern` matches.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regular expression (librdkafka's) for topics to carry when `topics` is empty;
    /// new matching topics are picked up as they appear.
    #[serde(default = "defaults::forward_pattern")]
    pub topic_pattern: String,
    /// Source topic → destination topic; topics not named keep their name.
    #[serde(default)]
    pub topic_map: BTreeMap<String, String>,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            topics: Vec::new(),
            topic_pattern: defaults::forward_pattern(),
            topic_map: BTreeMap::new(),
        }
    }
}

/// Central → edge: the end-to-end acks, so agents at the edge free their spools.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReverseConfig {
    /// Set false if agents read acks from the central cluster themselves.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    #[serde(default = "defaults::reverse_topics")]
    pub topics: Vec<String>,
    #[serde(default)]
    pub topic_map: BTreeMap<String, String>,
}

impl Default for ReverseConfig {
    fn default() -> Self {
        ReverseConfig {
            enabled: true,
            topics: defaults::reverse_topics(),
            topic_map: BTreeMap::new(),
        }
    }
}

/// Throughput over long links. Batches are already zstd-compressed and are never
/// recompressed (`compression.type = none`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningConfig {
    /// How long the producer waits to fill a request.
    #[serde(default = "defaults::linger_ms")]
    pub linger_ms: u64,
    /// Largest producer request batch per partition.
    #[serde(default = "defaults::batch_bytes")]
    pub batch_bytes: u64,
    /// Requests in flight per connection (1..=5 with idempotence).
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: u32,
    /// TCP send/receive buffers for every connection (0 = the OS default). Raise them
    /// on long fat links: throughput is at most buffer / round-trip time.
    #[serde(default)]
    pub socket_send_buffer_bytes: u64,
    #[serde(default)]
    pub socket_receive_buffer_bytes: u64,
    /// How often delivered offsets are committed to the source cluster.
    #[serde(default = "defaults::commit_interval_ms")]
    pub commit_interval_ms: u64,
}

impl Default for TuningConfig {
    fn default() -> Self {
        TuningConfig {
            linger_ms: defaults::linger_ms(),
            batch_bytes: defaults::batch_bytes(),
            max_in_flight: defaults::max_in_flight(),
            socket_send_buffer_bytes: 0,
            socket_receive_buffer_bytes: 0,
            commit_interval_ms: defaults::commit_interval_ms(),
        }
    }
}

mod defaults {
    pub fn group_id() -> String {
        "evd-bridge".into()
    }
    pub fn forward_pattern() -> String {
        r"^evd\.(events\..+|audit)$".into()
    }
    pub fn reverse_topics() -> Vec<String> {
        vec!["evd.acks".into()]
    }
    pub fn yes() -> bool {
        true
    }
    pub fn linger_ms() -> u64 {
        5
    }
    pub fn batch_bytes() -> u64 {
        1 << 20
    }
    pub fn max_in_flight() -> u32 {
        5
    }
    pub fn commit_interval_ms() -> u64 {
        1_000
    }
}

/// Producer settings evd owns.
const FIXED_PRODUCER_KEYS: [&str; 5] = [
    "enable.idempotence",
    "acks",
    "compression.type",
    "bootstrap.servers",
    "transactional.id",
];

/// Consumer settings evd owns.
const FIXED_CONSUMER_KEYS: [&str; 4] = [
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
    "bootstrap.servers",
];

impl evd_schemas::ValidatedConfig for BridgeConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.group_id.is_empty() {
            return Err(Invalid::at("group_id", "must not be empty".into()));
        }
        let clusters = [
            (
                "edge.bootstrap_servers",
                "edge.producer",
                "edge.consumer",
                &self.edge,
            ),
            (
                "central.bootstrap_servers",
                "central.producer",
                "central.consumer",
                &self.central,
            ),
        ];
        for (servers, producer, consumer, cluster) in clusters {
            if cluster.bootstrap_servers.is_empty() {
                return Err(Invalid::at(servers, "must not be empty".into()));
            }
            let fixed = |keys: &BTreeMap<String, String>, fixed: &[&str]| {
                keys.keys().find(|k| fixed.contains(&k.as_str())).cloned()
            };
            if let Some(k) = fixed(&cluster.producer, &FIXED_PRODUCER_KEYS) {
                return Err(Invalid::at(producer, format!("`{k}` is fixed by evd")));
            }
            if let Some(k) = fixed(&cluster.consumer, &FIXED_CONSUMER_KEYS) {
                return Err(Invalid::at(consumer, format!("`{k}` is fixed by evd")));
            }
        }
        if self.forward.topics.is_empty() && !self.forward.topic_pattern.starts_with('^') {
            return Err(Invalid::at(
                "forward.topic_pattern",
                "must start with `^` (librdkafka treats only such names as patterns)".into(),
            ));
        }
        if self.reverse.enabled && self.reverse.topics.is_empty() {
            return Err(Invalid::at(
                "reverse.topics",
                "must name the acks topic".into(),
            ));
        }
        if !(1..=5).contains(&self.tuning.max_in_flight) {
            return Err(Invalid::at("tuning.max_in_flight", "must be 1..=5".into()));
        }
        if self.tuning.commit_interval_ms == 0 {
            return Err(Invalid::at(
                "tuning.commit_interval_ms",
                "must be > 0".into(),
            ));
        }
        Ok(())
    }
}

impl BridgeConfig {
    /// Parses and validates a config file's text; errors name the file, line and key.
    pub fn from_toml(origin: &str, text: &str) -> Result<BridgeConfig, evd_schemas::SourceError> {
        evd_schemas::TomlSource::load_config(origin, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[edge]
bootstrap_servers = "edge:9092"

[central]
bootstrap_servers = "central:9092"
"#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = BridgeConfig::from_toml("bridge.toml", MINIMAL).unwrap();
        assert_eq!(c.group_id, "evd-bridge");
        assert!(c.forward.topics.is_empty());
        assert_eq!(c.reverse.topics, ["evd.acks"]);
        assert_eq!(c.tuning.max_in_flight, 5);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = format!("{MINIMAL}[central.producer]\n\"compression.type\" = \"zstd\"\n");
        let msg = BridgeConfig::from_toml("bridge.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("central.producer"), "{msg}");
        assert!(msg.contains("`compression.type` is fixed"), "{msg}");
        let text = MINIMAL.replace("[central]", "[central]\nbootstrap = 1");
        let msg = BridgeConfig::from_toml("bridge.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("bridge.toml:6: key `central.bootstrap`"),
            "{msg}"
        );
    }
}
