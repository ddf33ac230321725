//! One Kafka client's librdkafka settings, in layers (pure: the shells turn the result
//! into an `rdkafka::ClientConfig`, and `evd validate` into a native one).
//!
//! Lowest to highest:
//! 1. evd's **defaults** for that client (`log_level`, `linger.ms`, …);
//! 2. the role's shared **options** table (`[kafka.options]`; a bridge has one per
//!    cluster, `[edge.options]`, `[central.options]`): what every client of the role
//!    needs alike, such as `security.protocol`, `sasl.*`, `ssl.*`;
//! 3. the client's own table (`[kafka.producer]`, `[kafka.consumer]`, …);
//! 4. the keys evd **fixes** for correctness (`enable.idempotence`, `acks`,
//!    `enable.auto.commit`, …). A table may repeat a fixed key with the same value;
//!    any other value is refused, naming the table and key.

use std::collections::BTreeMap;

/// A user table that contributes settings: its config path (`kafka.options`) and
/// entries.
#[derive(Debug, Clone, Copy)]
pub struct SettingsTable<'a> {
    pub path: &'a str,
    pub entries: &'a BTreeMap<String, String>,
}

/// How one client's settings are made.
#[derive(Debug, Clone)]
pub struct ClientSpec<'a> {
    /// Which client, for messages: `agent producer`, `consumer acks producer`, …
    pub client: &'static str,
    pub defaults: Vec<(&'static str, String)>,
    /// User tables, lowest precedence first.
    pub tables: Vec<SettingsTable<'a>>,
    pub fixed: Vec<(&'static str, String)>,
}

/// A setting a user table may not make: it names the table, the key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub table: String,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {:?}: {}", self.table, self.key, self.message)
    }
}

impl std::error::Error for SettingError {}

impl ClientSpec<'_> {
    /// The final settings, one per key (sorted by key).
    pub fn settings(&self) -> Result<Vec<(String, String)>, SettingError> {
        let mut out: BTreeMap<String, String> = self
            .defaults
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        for table in &self.tables {
            for (key, value) in table.entries {
                if let Some((_, fixed)) = self.fixed.iter().find(|(k, _)| k == key)
                    && fixed != value
                {
                    return Err(SettingError {
                        table: table.path.to_string(),
                        key: key.clone(),
                        message: format!(
                            "evd fixes this to {fixed:?} for the {}; remove the setting",
                            self.client
                        ),
                    });
                }
                out.insert(key.clone(), value.clone());
            }
        }
        for (k, v) in &self.fixed {
            out.insert(k.to_string(), v.clone());
        }
        Ok(out.into_iter().collect())
    }

    /// The user table that set `key` last (the one whose value the client got), for
    /// pointing an error from librdkafka at a line of the config file.
    pub fn table_of(&self, key: &str) -> Option<&str> {
        if self.fixed.iter().any(|(k, _)| *k == key) {
            return None;
        }
        self.tables
            .iter()
            .rev()
            .find(|t| t.entries.contains_key(key))
            .map(|t| t.path)
    }
}

/// The usual user tables of a client: its cluster's shared options table at
/// `options_path` (`kafka.options`, `edge.options`), then the client's own table at
/// `own_path` (`kafka.producer`, `central.consumer`).
pub fn role_tables<'a>(
    options_path: &'a str,
    options: &'a BTreeMap<String, String>,
    own_path: &'a str,
    own: &'a BTreeMap<String, String>,
) -> Vec<SettingsTable<'a>> {
    vec![
        SettingsTable {
            path: options_path,
            entries: options,
        },
        SettingsTable {
            path: own_path,
            entries: own,
        },
    ]
}

/// A client that only talks to the cluster (metadata, admin requests): its bootstrap
/// servers and the cluster's shared options table, nothing client-specific.
pub fn cluster_client<'a>(
    client: &'static str,
    bootstrap: &str,
    options_path: &'a str,
    options: &'a BTreeMap<String, String>,
) -> ClientSpec<'a> {
    ClientSpec {
        client,
        defaults: vec![
            ("bootstrap.servers", bootstrap.to_string()),
            ("log_level", "4".into()),
        ],
        tables: vec![SettingsTable {
            path: options_path,
            entries: options,
        }],
        fixed: vec![],
    }
}

/// The config path of `key` inside `table`, quoted for dotted librdkafka keys:
/// `kafka.options."security.protocol"`.
pub fn key_path(table: &str, key: &str) -> String {
    format!("{table}.\"{key}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order_and_fixed_keys_win() {
        let shared = map(&[("security.protocol", "SASL_SSL"), ("linger.ms", "20")]);
        let own = map(&[("linger.ms", "50"), ("acks", "all")]);
        let spec = ClientSpec {
            client: "agent producer",
            defaults: vec![("linger.ms", "5".into()), ("log_level", "4".into())],
            tables: vec![
                SettingsTable {
                    path: "kafka.options",
                    entries: &shared,
                },
                SettingsTable {
                    path: "kafka.producer",
                    entries: &own,
                },
            ],
            fixed: vec![("acks", "all".into())],
        };
        let settings: BTreeMap<_, _> = spec.settings().unwrap().into_iter().collect();
        assert_eq!(settings["linger.ms"], "50");
        assert_eq!(settings["security.protocol"], "SASL_SSL");
        assert_eq!(settings["log_level"], "4");
        assert_eq!(settings["acks"], "all");
        assert_eq!(spec.table_of("linger.ms"), Some("kafka.producer"));
        assert_eq!(spec.table_of("security.protocol"), Some("kafka.options"));
        assert_eq!(spec.table_of("acks"), None);
    }

    #[test]
    fn a_fixed_key_with_another_value_is_refused_naming_the_table() {
        let shared = map(&[("enable.auto.commit", "true")]);
        let spec = ClientSpec {
            client: "consumer",
            defaults: vec![],
            tables: vec![SettingsTable {
                path: "kafka.options",
                entries: &shared,
            }],
            fixed: vec![("enable.auto.commit", "false".into())],
        };
        let err = spec.settings().unwrap_err();
        assert_eq!(err.table, "kafka.options");
        assert_eq!(err.key, "enable.auto.commit");
        assert!(err.message.contains("\"false\""), "{err}");
    }

    #[test]
    fn key_paths_quote_dotted_keys() {
        assert_eq!(
            key_path("kafka.options", "sasl.mechanism"),
            "kafka.options.\"sasl.mechanism\""
        );
    }
}
