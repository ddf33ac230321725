//! The auditor's configuration file (TOML). Field docs are the user documentation.

use evd_schemas::Invalid;
use std::collections::BTreeMap;
use std::path::PathBuf;

use evd_schemas::kafka_client::{ClientSpec, role_tables};
use serde::Deserialize;

use crate::audit::ClosePolicy;

/// `evd ops --config ops.toml`. Run one auditor per output location.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Written into every closed-hour marker as `closed_by`.
    #[serde(default = "defaults::auditor_id")]
    pub auditor_id: String,
    /// Directory of event-type TOML files (types and tiers).
    pub registry_dir: PathBuf,
    /// The master keyring (`evd keys generate`), the consumers' own: every audit record
    /// is authenticated with its agent's control key derived from it, and a record
    /// that does not verify is counted and ignored. Relative to this file.
    pub keyring_path: PathBuf,
    /// The consumers' output, as in their `output_url`.
    pub output_url: String,
    pub kafka: OpsKafka,
    /// `host:port` for the dashboard (`/`), the JSON API (`/api/hours`, `/api/hosts`)
    /// and Prometheus metrics (`/metrics`).
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// How often the output is scanned for new files and due hours are closed.
    #[serde(default = "defaults::scan_interval_ms")]
    pub scan_interval_ms: u64,
    /// An open hour shows as late this long after it ended.
    #[serde(default = "defaults::late_after_ms")]
    pub late_after_ms: u64,
    /// An hour of a `high` tier type closes at this long after its end even when
    /// incomplete (then the marker names the hosts and batches missing).
    #[serde(default = "defaults::deadline_high_ms")]
    pub deadline_high_ms: u64,
    /// The same for `normal` tier types.
    #[serde(default = "defaults::deadline_normal_ms")]
    pub deadline_normal_ms: u64,
    /// The same for `low` tier types.
    #[serde(default = "defaults::deadline_low_ms")]
    pub deadline_low_ms: u64,
    /// A host (agent id) silent this long is taken as decommissioned: its per-host
    /// metrics (`evd_ops_host_*{agent_id}`) stop, so `EvdAgentSilent` and
    /// `EvdSpoolGrowing` resolve, and it is counted in `evd_ops_hosts_retired`. Hours
    /// it was alive in still close unverified if it never reported them.
    #[serde(default = "defaults::host_retire_after_ms")]
    pub host_retire_after_ms: u64,
    /// Hours shown on the dashboard and considered for closing.
    #[serde(default = "defaults::window_hours")]
    pub window_hours: usize,
    /// Combining each closed hour's files into one file of the closed-hours table.
    #[serde(default)]
    pub combine: CombineConfig,
}

/// `[combine]`: after an hour closes, the auditor writes every row of its files into
/// one file, `closed-hours/<Type>/date=…/hour=…/<Type>-<hour>.parquet`, in one atomic
/// put, so a reader of that table sees each closed hour whole or not at all, as one
/// file. The consumers' files stay where they are (expire them with a bucket
/// lifecycle rule once the closed-hours table is what readers use).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CombineConfig {
    /// Off by default: the combined files double the storage of the hours they cover
    /// while the consumers' files are kept.
    #[serde(default)]
    pub enabled: bool,
    /// Each listed file is read whole into memory: an hour with a file larger than
    /// this (not one a consumer wrote, whose files its flush limits bound) is left
    /// uncombined and counted.
    #[serde(default = "defaults::combine_max_file_bytes")]
    pub max_file_bytes: u64,
    /// How combined files are encoded, as in the consumer's `[parquet]`.
    #[serde(default)]
    pub parquet: evd_consumer::parquet_options::ParquetOptions,
}

impl Default for CombineConfig {
    fn default() -> CombineConfig {
        CombineConfig {
            enabled: false,
            max_file_bytes: defaults::combine_max_file_bytes(),
            parquet: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsKafka {
    pub bootstrap_servers: String,
    /// The agents' audit topic (heartbeats and batch announcements). Its retention
    /// must cover `window_hours`: the auditor rebuilds its state from it at start.
    #[serde(default = "defaults::audit_topic")]
    pub audit_topic: String,
    /// librdkafka settings for every Kafka client of the auditor: security
    /// (`security.protocol`, `sasl.*`, `ssl.*`), timeouts, … Keys with dots are quoted.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// librdkafka settings for the audit topic reader only, over `options`
    /// (`enable.auto.commit` is fixed to false).
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
}

impl OpsKafka {
    /// The audit topic reader, as layered settings ([`evd_schemas::kafka_client`]).
    pub fn audit_consumer(&self, auditor_id: &str) -> ClientSpec<'_> {
        ClientSpec {
            client: "auditor audit reader",
            defaults: vec![
                ("bootstrap.servers", self.bootstrap_servers.clone()),
                ("group.id", format!("evd-ops-{auditor_id}")),
                ("log_level", "4".into()),
            ],
            tables: role_tables(
                "kafka.options",
                &self.options,
                "kafka.consumer",
                &self.consumer,
            ),
            fixed: vec![("enable.auto.commit", "false".into())],
        }
    }
}

mod defaults {
    pub fn host_retire_after_ms() -> u64 {
        24 * 3_600_000
    }
    pub fn auditor_id() -> String {
        "evd-ops".into()
    }
    pub fn listen() -> String {
        "127.0.0.1:9300".into()
    }
    pub fn scan_interval_ms() -> u64 {
        5_000
    }
    pub fn late_after_ms() -> u64 {
        // The design target: an hour closed at most 2 minutes after it ends.
        120_000
    }
    pub fn deadline_high_ms() -> u64 {
        30 * 60_000
    }
    pub fn deadline_normal_ms() -> u64 {
        2 * 3_600_000
    }
    pub fn deadline_low_ms() -> u64 {
        6 * 3_600_000
    }
    pub fn combine_max_file_bytes() -> u64 {
        1 << 30
    }
    pub fn window_hours() -> usize {
        48
    }
    pub fn audit_topic() -> String {
        "evd.audit".into()
    }
}

impl evd_schemas::ValidatedConfig for OpsConfig {
    fn validate(&self) -> Result<(), Invalid> {
        evd_consumer::storage::check_output_url(&self.output_url)?;
        if self.scan_interval_ms == 0 {
            return Err(Invalid::at("scan_interval_ms", "must be positive".into()));
        }
        if self.window_hours == 0 || self.window_hours > 24 * 14 {
            return Err(Invalid::at(
                "window_hours",
                "must be between 1 and 336".into(),
            ));
        }
        for (key, v) in [
            ("deadline_high_ms", self.deadline_high_ms),
            ("deadline_normal_ms", self.deadline_normal_ms),
            ("deadline_low_ms", self.deadline_low_ms),
        ] {
            if v < self.late_after_ms {
                return Err(Invalid::at(
                    key,
                    format!("{v} is before late_after_ms ({})", self.late_after_ms),
                ));
            }
        }
        if self.combine.max_file_bytes == 0 {
            return Err(Invalid::at(
                "combine.max_file_bytes",
                "must be positive".into(),
            ));
        }
        self.combine.parquet.check().map_err(|e| {
            let key = match e.key {
                "parquet.compression_level" => "combine.parquet.compression_level",
                "parquet.row_group_rows" => "combine.parquet.row_group_rows",
                "parquet.page_rows" => "combine.parquet.page_rows",
                other => other,
            };
            Invalid::at(key, e.why)
        })
    }
}

impl OpsConfig {
    /// Parses and validates a config file's text; errors name the file, line and key.
    pub fn from_toml(origin: &str, text: &str) -> Result<OpsConfig, evd_schemas::SourceError> {
        evd_schemas::TomlSource::load_config(origin, text)
    }

    pub fn policy(&self) -> ClosePolicy {
        ClosePolicy {
            late_after_ms: self.late_after_ms as i64,
            deadline_high_ms: self.deadline_high_ms as i64,
            deadline_normal_ms: self.deadline_normal_ms as i64,
            deadline_low_ms: self.deadline_low_ms as i64,
            host_retire_after_ms: self.host_retire_after_ms as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_line_and_key() {
        let text = "registry_dir = \"r\"\nkeyring_path = \"k\"\noutput_url = \"file:///o\"\ndeadline_high_ms = 1\n[kafka]\nbootstrap_servers = \"b\"\n";
        let e = OpsConfig::from_toml("ops.toml", text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ops.toml:4") && e.contains("deadline_high_ms"),
            "{e}"
        );
        let e = OpsConfig::from_toml("ops.toml", "registry_dir = \"r\"\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ops.toml:2") && e.contains("bogus"), "{e}");
        let text = "registry_dir = \"r\"\nkeyring_path = \"k\"\noutput_url = \"file:///o\"\n[kafka]\nbootstrap_servers = \"b\"\n[combine]\nenabled = true\n[combine.parquet]\ncompression_level = 99\n";
        let e = OpsConfig::from_toml("ops.toml", text)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ops.toml:9") && e.contains("combine.parquet.compression_level"),
            "{e}"
        );
    }
}
