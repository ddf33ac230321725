//! Validation of an event's fields against its type.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{EventType, FieldType, Registry};
use crate::error::{Error, Reason, Result};
use crate::event::{EventLine, describe, parse_timestamp_us};

#[derive(Debug, thiserror::Error)]
enum SchemaError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("{ty} v{version}: missing required field `{field}`")]
    Missing {
        ty: String,
        version: u32,
        field: String,
    },
    #[error("{ty} v{version}: field `{field}`: expected {expected}, got {got}")]
    WrongType {
        ty: String,
        version: u32,
        field: String,
        expected: &'static str,
        got: String,
    },
    #[error("{ty} v{version}: unknown field `{field}` (known: {known})")]
    Unknown {
        ty: String,
        version: u32,
        field: String,
        known: String,
    },
}

impl Registry {
    /// The type of a parsed line, after checking its fields. Rejections carry
    /// `UnknownType` or `Schema`.
    pub fn validate(&self, line: &EventLine) -> Result<&Arc<EventType>> {
        let ty = self.get(&line.type_name).ok_or_else(|| {
            Error::rejected(
                Reason::UnknownType,
                SchemaError::UnknownType(line.type_name.clone()),
            )
        })?;
        ty.validate_fields(&line.fields)?;
        Ok(ty)
    }
}

impl EventType {
    /// Checks fields (everything but `type` and `ts`): required ones present and not
    /// null, every present one of its declared type, no undeclared ones.
    pub fn validate_fields(&self, fields: &Map<String, Value>) -> Result<()> {
        let schema = |e: SchemaError| Error::rejected(Reason::Schema, e);
        for spec in &self.fields {
            match fields.get(&spec.name) {
                None | Some(Value::Null) if spec.required => {
                    return Err(schema(SchemaError::Missing {
                        ty: self.name.clone(),
                        version: self.version,
                        field: spec.name.clone(),
                    }));
                }
                None | Some(Value::Null) => {}
                Some(value) if !matches_type(spec.ty, value) => {
                    return Err(schema(SchemaError::WrongType {
                        ty: self.name.clone(),
                        version: self.version,
                        field: spec.name.clone(),
                        expected: expected(spec.ty),
                        got: describe(value),
                    }));
                }
                Some(_) => {}
            }
        }
        if let Some(field) = fields.keys().find(|k| self.field(k).is_none()) {
            return Err(schema(SchemaError::Unknown {
                ty: self.name.clone(),
                version: self.version,
                field: field.clone(),
                known: self
                    .fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }));
        }
        Ok(())
    }
}

fn matches_type(ty: FieldType, value: &Value) -> bool {
    match ty {
        FieldType::String => value.is_string(),
        FieldType::Int64 => value.is_i64(),
        FieldType::Float64 => value.is_number(),
        FieldType::Bool => value.is_boolean(),
        FieldType::Timestamp => parse_timestamp_us(value).is_some(),
        FieldType::Json => true,
    }
}

fn expected(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String => "a string",
        FieldType::Int64 => "an integer within int64",
        FieldType::Float64 => "a number",
        FieldType::Bool => "true or false",
        FieldType::Timestamp => "an RFC 3339 string or integer epoch milliseconds",
        FieldType::Json => "any JSON value",
    }
}

#[cfg(test)]
mod tests {
    use crate::event::parse_event_line;
    use crate::registry::Registry;

    fn registry() -> Registry {
        let text = r#"name = "Play"
version = 2
owner = "music"
tier = "normal"
[[fields]]
name = "track"
type = "string"
required = true
[[fields]]
name = "ms_played"
type = "int64"
[[fields]]
name = "ended_at"
type = "timestamp"
[[fields]]
name = "extra"
type = "json"
"#;
        Registry::from_sources([("play.toml", text)]).unwrap()
    }

    fn check(line: &str) -> Result<(), String> {
        let reg = registry();
        let parsed = parse_event_line(line.as_bytes(), 1 << 20).map_err(|e| e.to_string())?;
        reg.validate(&parsed).map(|_| ()).map_err(|e| e.to_string())
    }

    #[test]
    fn valid_events_pass() {
        check(r#"{"type":"Play","ts":1,"track":"t","ms_played":3,"ended_at":"2026-01-01T00:00:00Z","extra":[1]}"#).unwrap();
        check(r#"{"type":"Play","ts":1,"track":"t","ms_played":null}"#).unwrap();
    }

    #[test]
    fn violations_are_precise() {
        let cases = [
            (
                r#"{"type":"Nope","ts":1}"#,
                "unknown_type: unknown event type \"Nope\"",
            ),
            (
                r#"{"type":"Play","ts":1}"#,
                "schema: Play v2: missing required field `track`",
            ),
            (
                r#"{"type":"Play","ts":1,"track":"t","ms_played":1.5}"#,
                "schema: Play v2: field `ms_played`: expected an integer within int64, got number 1.5",
            ),
            (
                r#"{"type":"Play","ts":1,"track":"t","ended_at":"yesterday"}"#,
                "field `ended_at`: expected an RFC 3339 string",
            ),
            (
                r#"{"type":"Play","ts":1,"track":"t","colour":"red"}"#,
                "unknown field `colour` (known: track, ms_played, ended_at, extra)",
            ),
        ];
        for (line, want) in cases {
            let err = check(line).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }
}
