//! Builds every Kafka client's native librdkafka configuration from a role's config
//! before anything starts. `evd validate` and each role's start-up go through here, so
//! a key librdkafka does not know, a value it refuses, or a feature this build lacks
//! is reported with the file, line and key that set it, not at the first connection.

use evd_schemas::kafka_client::{ClientSpec, key_path};
use evd_schemas::{SourceError, TomlSource};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;

/// Checks each client of a config file (`origin` with its `text`).
pub fn check_clients(
    origin: &str,
    text: &str,
    specs: &[ClientSpec<'_>],
) -> Result<(), SourceError> {
    let source = TomlSource::new(origin, text);
    for spec in specs {
        let settings = spec
            .settings()
            .map_err(|e| source.error_at_key(&key_path(&e.table, &e.key), &e.message))?;
        let config: ClientConfig = settings.into_iter().collect();
        if let Err(e) = config.create_native_config() {
            return Err(match e {
                KafkaError::ClientConfig(_, why, key, value) => {
                    let message = format!("{}: librdkafka refuses {value:?}: {why}", spec.client);
                    match spec.table_of(&key) {
                        Some(table) => source.error_at_key(&key_path(table, &key), &message),
                        None => source.error_at_key("", &format!("{key}: {message}")),
                    }
                }
                other => source.error_at_key("", &format!("{}: {other}", spec.client)),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use evd_schemas::kafka_client::SettingsTable;

    use super::*;

    fn spec(entries: &BTreeMap<String, String>) -> ClientSpec<'_> {
        ClientSpec {
            client: "agent producer",
            defaults: vec![("bootstrap.servers", "127.0.0.1:9092".into())],
            tables: vec![SettingsTable {
                path: "kafka.options",
                entries,
            }],
            fixed: vec![("acks", "all".into())],
        }
    }

    const TEXT: &str = "[kafka]\nbootstrap_servers = \"x\"\n[kafka.options]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"ssl.no.such.key\" = \"1\"\n";

    #[test]
    fn an_unknown_key_is_reported_with_file_line_and_key() {
        let entries: BTreeMap<String, String> = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("ssl.no.such.key", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let err = check_clients("agent.toml", TEXT, &[spec(&entries)]).unwrap_err();
        assert_eq!(err.line, Some(6), "{err}");
        assert_eq!(err.key, "kafka.options.\"ssl.no.such.key\"");
        assert!(err.message.contains("agent producer"), "{err}");
    }

    /// TLS, SASL/SCRAM and the codecs a broker may recompress with are compiled in.
    #[test]
    fn tls_sasl_and_codecs_are_supported_by_this_build() {
        let entries: BTreeMap<String, String> = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
            ("compression.type", "zstd"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        check_clients("agent.toml", TEXT, &[spec(&entries)]).unwrap();
        for codec in ["gzip", "zstd", "lz4", "snappy"] {
            let entries = [("compression.type".to_string(), codec.to_string())].into();
            check_clients("agent.toml", TEXT, &[spec(&entries)])
                .unwrap_or_else(|e| panic!("{codec}: {e}"));
        }
    }
}
