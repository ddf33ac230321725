//! The event-type registry: one TOML file per type, checked as a whole.
//!
//! ```toml
//! name = "PageView"            # [A-Za-z][A-Za-z0-9_]*, at most 100 bytes
//! version = 1                  # bump for any change other than adding optional fields
//! owner = "web-platform"       # the team paged for this type
//! tier = "high"                # high | normal | low: drives hour-closing deadlines
//! topic = "evd.events.PageView"  # optional; this is the default
//! description = "A page was shown."
//!
//! [[fields]]
//! name = "user_id"             # [a-z_][a-z0-9_]*, not a reserved column name
//! type = "string"              # string | int64 | float64 | bool | timestamp | json
//! required = true              # default false
//! pii = true                   # default false
//! doc = "Pseudonymous user id."
//! ```
//!
//! The registry is built from `(origin, text)` pairs so this crate stays free of I/O;
//! the binaries read the directory. Every error names the file, line and key.

mod arrow;
pub use arrow::{DATA_LAYOUT, DATA_LAYOUT_KEY};
mod check;
mod evolution;
mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::toml_source::{SourceError, TomlSource};

pub use check::{Accepted, EnvelopeKeys, FieldValue, LineView, TailEnvelope, envelope_keys};
pub use evolution::{IncompatibleChange, check_evolution};

/// Columns every event row has besides its type's fields; field names may not use them.
pub const RESERVED_COLUMNS: [&str; 7] = [
    "type",
    "ts",
    "received_at",
    "agent_id",
    "spool_id",
    "event_seq",
    "batch_seq",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    High,
    Normal,
    Low,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::High => "high",
            Tier::Normal => "normal",
            Tier::Low => "low",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Int64,
    Float64,
    Bool,
    /// RFC 3339 string or integer epoch milliseconds; stored as µs UTC.
    Timestamp,
    /// Any JSON value; stored as its JSON text.
    Json,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int64 => "int64",
            FieldType::Float64 => "float64",
            FieldType::Bool => "bool",
            FieldType::Timestamp => "timestamp",
            FieldType::Json => "json",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub pii: bool,
    #[serde(default)]
    pub doc: String,
}

/// One event type as written in its registry file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventType {
    pub name: String,
    pub version: u32,
    pub owner: String,
    pub tier: Tier,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
}

impl EventType {
    /// The Kafka topic carrying this type's batches.
    pub fn topic(&self) -> String {
        self.topic
            .clone()
            .unwrap_or_else(|| format!("evd.events.{}", self.name))
    }

    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Parses and checks one type file on its own.
    pub fn from_toml(origin: &str, text: &str) -> std::result::Result<Self, SourceError> {
        let source = TomlSource::new(origin, text);
        let ty: EventType = source.deserialize()?;
        ty.check(&source)?;
        Ok(ty)
    }

    fn check(&self, source: &TomlSource<'_>) -> std::result::Result<(), SourceError> {
        let fail = |key: &str, why: String| Err(source.error_at_key(key, &why));
        if !is_type_name(&self.name) {
            return fail(
                "name",
                format!(
                    "{:?} is not a valid type name ([A-Za-z][A-Za-z0-9_]*, at most 100 bytes)",
                    self.name
                ),
            );
        }
        if self.version == 0 {
            return fail("version", "versions start at 1".into());
        }
        if self.owner.trim().is_empty() {
            return fail("owner", "every type needs an owning team".into());
        }
        if let Some(topic) = &self.topic
            && !is_topic_name(topic)
        {
            return fail(
                "topic",
                format!("{topic:?} is not a valid Kafka topic name ([A-Za-z0-9._-], 1..=249)"),
            );
        }
        for (i, field) in self.fields.iter().enumerate() {
            let key = format!("fields[{i}].name");
            if !is_field_name(&field.name) {
                return fail(
                    &key,
                    format!(
                        "{:?} is not a valid field name ([a-z_][a-z0-9_]*, at most 64 bytes)",
                        field.name
                    ),
                );
            }
            if RESERVED_COLUMNS.contains(&field.name.as_str()) {
                return fail(&key, format!("{:?} is a reserved column name", field.name));
            }
            if self.fields[..i].iter().any(|f| f.name == field.name) {
                return fail(&key, format!("field {:?} is defined twice", field.name));
            }
        }
        Ok(())
    }
}

fn is_type_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 100
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_field_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_topic_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 249
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Every known event type, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<String, Arc<EventType>>,
}

/// All problems found in a registry, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
struct RegistryErrors(Vec<SourceError>);

impl Registry {
    /// Builds a registry from `(origin, text)` pairs (origin is usually the file path).
    /// Reports every problem in every file, not just the first.
    pub fn from_sources<O, T>(sources: impl IntoIterator<Item = (O, T)>) -> Result<Registry>
    where
        O: AsRef<str>,
        T: AsRef<str>,
    {
        let mut errors = Vec::new();
        let mut types: BTreeMap<String, (String, Arc<EventType>)> = BTreeMap::new();
        let mut topics: BTreeMap<String, String> = BTreeMap::new();
        for (origin, text) in sources {
            let (origin, text) = (origin.as_ref(), text.as_ref());
            let ty = match EventType::from_toml(origin, text) {
                Ok(ty) => ty,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let source = TomlSource::new(origin, text);
            if let Some((first, _)) = types.get(&ty.name) {
                errors.push(source.error_at_key(
                    "name",
                    &format!("type {:?} is already defined in {first}", ty.name),
                ));
                continue;
            }
            let topic = ty.topic();
            if let Some(other) = topics.get(&topic) {
                errors.push(source.error_at_key(
                    "topic",
                    &format!("topic {topic:?} is already used by type {other:?}"),
                ));
                continue;
            }
            topics.insert(topic, ty.name.clone());
            types.insert(ty.name.clone(), (origin.to_string(), Arc::new(ty)));
        }
        if !errors.is_empty() {
            return Err(Error::config(RegistryErrors(errors)));
        }
        Ok(Registry {
            types: types.into_iter().map(|(k, (_, t))| (k, t)).collect(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<EventType>> {
        self.types.get(name)
    }

    pub fn types(&self) -> impl Iterator<Item = &Arc<EventType>> {
        self.types.values()
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The type whose batches travel on `topic`.
    pub fn by_topic(&self, topic: &str) -> Option<&Arc<EventType>> {
        self.types.values().find(|t| t.topic() == topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE_VIEW: &str = r#"name = "PageView"
version = 1
owner = "web"
tier = "high"

[[fields]]
name = "user_id"
type = "string"
required = true

[[fields]]
name = "url"
type = "string"
"#;

    #[test]
    fn loads_a_type_with_default_topic() {
        let reg = Registry::from_sources([("pv.toml", PAGE_VIEW)]).unwrap();
        let ty = reg.get("PageView").unwrap();
        assert_eq!(ty.topic(), "evd.events.PageView");
        assert!(reg.by_topic("evd.events.PageView").is_some());
    }

    #[test]
    fn bad_field_type_names_file_line_and_key() {
        let text = PAGE_VIEW.replace("type = \"string\"\nrequired", "type = \"strng\"\nrequired");
        let err = Registry::from_sources([("reg/pv.toml", text)]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("reg/pv.toml:8: key `fields[0].type`: "),
            "{msg}"
        );
        assert!(msg.contains("strng"), "{msg}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = PAGE_VIEW.replace("tier = \"high\"", "tier = \"high\"\ncolour = \"red\"");
        let msg = Registry::from_sources([("pv.toml", text)])
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("pv.toml:5: key `colour`"), "{msg}");
    }

    #[test]
    fn semantic_errors_name_line_and_key() {
        let text = PAGE_VIEW.replace("name = \"url\"", "name = \"agent_id\"");
        let msg = Registry::from_sources([("pv.toml", text)])
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("pv.toml:12: key `fields[1].name`: \"agent_id\" is a reserved"),
            "{msg}"
        );
    }

    #[test]
    fn duplicate_types_name_both_files_and_all_errors_are_listed() {
        let bad = "name = \"X\"\nversion = 0\nowner = \"o\"\ntier = \"low\"\n";
        let msg = Registry::from_sources([
            ("a.toml", PAGE_VIEW),
            ("b.toml", PAGE_VIEW),
            ("c.toml", bad),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("b.toml:1: key `name`: type \"PageView\" is already defined in a.toml"),
            "{msg}"
        );
        assert!(
            msg.contains("c.toml:2: key `version`: versions start at 1"),
            "{msg}"
        );
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let msg = Registry::from_sources([("pv.toml", "name = \"PageView\"\nversion = = 1\n")])
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("pv.toml:2: "), "{msg}");
    }
}
