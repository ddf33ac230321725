//! The consumer's configuration file (TOML). Field docs are the user documentation.

use evd_schemas::Invalid;
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `evd consumer --config consumer.toml`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Unique per running instance (part of every file name). Defaults to the host name.
    /// ASCII letters, digits, `.`, `_` and `-` (it becomes part of object names).
    #[serde(default)]
    pub consumer_id: Option<String>,
    /// Directory of event-type TOML files.
    pub registry_dir: PathBuf,
    /// The master keyring (`evd keys generate`): consumers open every agent's batches.
    pub keyring_path: PathBuf,
    /// Where buckets go: `file:///abs/dir` (default backend), `s3://bucket/prefix`,
    /// `gs://…`, `az://…` (credentials from the environment, as each SDK expects).
    pub output_url: String,
    pub kafka: ConsumerKafka,
    /// A flush (files + manifest + offsets + acks) happens at least this often while
    /// data is buffered. Lower: data visible sooner; higher: fewer, larger files.
    #[serde(default = "defaults::flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// ... or as soon as this many rows are buffered.
    #[serde(default = "defaults::flush_max_rows")]
    pub flush_max_rows: usize,
    /// ... or this many bytes of event JSON.
    #[serde(default = "defaults::flush_max_bytes")]
    pub flush_max_bytes: usize,
    /// When a consumer starts or rebalances, or every few of its flushes (a tenth of
    /// this, 1 to 10), and finds more live flush manifests than this, it folds the
    /// finished ones into a ledger snapshot, so start-up reads stay short.
    #[serde(default = "defaults::compact_after_manifests")]
    pub compact_after_manifests: usize,
    /// `host:port` for Prometheus metrics (`/metrics`).
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// How data files are encoded (`[parquet]`: compression and level, row-group
    /// size, dictionaries, bloom filters); see `consumer/src/parquet_options.rs`.
    #[serde(default)]
    pub parquet: crate::parquet_options::ParquetOptions,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerKafka {
    pub bootstrap_servers: String,
    /// Consumers with the same group id split the partitions between them.
    #[serde(default = "defaults::group_id")]
    pub group_id: String,
    /// Event types to consume; empty (default) = every type in the registry.
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default = "defaults::acks_topic")]
    pub acks_topic: String,
    /// librdkafka settings for both of the consumer's clients (batch consumer and
    /// acks producer): security (`security.protocol`, `sasl.*`, `ssl.*`), timeouts, …
    /// Keys with dots are quoted: `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// librdkafka settings for the batch consumer only, over `options`
    /// (`enable.auto.commit` and `enable.auto.offset.store` are fixed to false).
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka settings for the acks producer only, over `options`
    /// (`enable.idempotence`, `acks` and `partitioner` are fixed).
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
}

mod defaults {
    pub fn flush_interval_ms() -> u64 {
        60_000
    }
    pub fn flush_max_rows() -> usize {
        1_000_000
    }
    pub fn flush_max_bytes() -> usize {
        256 << 20
    }
    pub fn compact_after_manifests() -> usize {
        crate::compaction::DEFAULT_COMPACT_AFTER
    }
    pub fn group_id() -> String {
        "evd-consumers".into()
    }
    pub fn acks_topic() -> String {
        "evd.acks".into()
    }
}

impl evd_schemas::ValidatedConfig for ConsumerConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if let Some(id) = &self.consumer_id {
            evd_schemas::origin::check_id(id)
                .map_err(|e| Invalid::at("consumer_id", e.to_string()))?;
        }
        crate::storage::check_output_url(&self.output_url)?;
        self.parquet.check()?;
        if self.flush_interval_ms == 0 || self.flush_max_rows == 0 {
            return Err(Invalid::at(
                "flush_interval_ms",
                "flush limits must be positive".into(),
            ));
        }
        if self.kafka.consumer.contains_key("enable.auto.commit") {
            return Err(Invalid::at(
                "kafka.consumer",
                "`enable.auto.commit` is fixed to false by evd".into(),
            ));
        }
        Ok(())
    }
}

impl ConsumerConfig {
    /// Parses and validates a config file's text; errors name the file, line and key.
    pub fn from_toml(origin: &str, text: &str) -> Result<ConsumerConfig, evd_schemas::SourceError> {
        evd_schemas::TomlSource::load_config(origin, text)
    }

    pub fn consumer_id(&self) -> String {
        self.consumer_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "consumer".into())
        })
    }
}
