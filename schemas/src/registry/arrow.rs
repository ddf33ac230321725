//! The Arrow (and so Parquet) schema of an event type's rows.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};

use super::{EventType, FieldType};

/// The version of the data files' column layout, in the schema metadata as
/// `evd.layout`. 2: `event_seq` and `batch_seq` are signed 64-bit (`INT64`), which
/// Spark, Hive and Athena read as `bigint`. 1 (no `evd.layout` key): they were
/// unsigned. Readers of evd's files refuse a layout they do not know.
pub const DATA_LAYOUT: u32 = 2;

/// The schema metadata key of [`DATA_LAYOUT`].
pub const DATA_LAYOUT_KEY: &str = "evd.layout";

/// Time zone of every timestamp column.
pub const UTC: &str = "UTC";

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC)))
}

impl FieldType {
    pub fn arrow_type(self) -> DataType {
        match self {
            FieldType::String | FieldType::Json => DataType::Utf8,
            FieldType::Int64 => DataType::Int64,
            FieldType::Float64 => DataType::Float64,
            FieldType::Bool => DataType::Boolean,
            FieldType::Timestamp => timestamp(),
        }
    }
}

impl EventType {
    /// Row schema: the fixed columns `received_at`, `ts`, `agent_id`, `spool_id` (the
    /// spool incarnation, 16 hex digits), `event_seq`, `batch_seq` (signed, below 2^63), then the type's fields in file order (nullable unless required).
    /// Field metadata keeps `doc`, `pii` and, for `json` fields, `evd.type = json`.
    pub fn arrow_schema(&self) -> Schema {
        let mut fields = vec![
            Field::new("received_at", timestamp(), false),
            Field::new("ts", timestamp(), false),
            Field::new("agent_id", DataType::Utf8, false),
            Field::new("spool_id", DataType::Utf8, false),
            Field::new("event_seq", DataType::Int64, false),
            Field::new("batch_seq", DataType::Int64, false),
        ];
        for spec in &self.fields {
            let mut meta = HashMap::new();
            if !spec.doc.is_empty() {
                meta.insert("doc".to_string(), spec.doc.clone());
            }
            if spec.pii {
                meta.insert("pii".to_string(), "true".to_string());
            }
            if spec.ty == FieldType::Json {
                meta.insert("evd.type".to_string(), "json".to_string());
            }
            fields.push(
                Field::new(&spec.name, spec.ty.arrow_type(), !spec.required).with_metadata(meta),
            );
        }
        let meta = HashMap::from([
            ("evd.event_type".to_string(), self.name.clone()),
            ("evd.version".to_string(), self.version.to_string()),
            (DATA_LAYOUT_KEY.to_string(), DATA_LAYOUT.to_string()),
        ]);
        Schema::new(fields).with_metadata(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_columns_then_fields() {
        let ty = EventType::from_toml(
            "t.toml",
            "name=\"T\"\nversion=1\nowner=\"o\"\ntier=\"low\"\n[[fields]]\nname=\"n\"\ntype=\"int64\"\nrequired=true\npii=true\n",
        )
        .unwrap();
        let schema = ty.arrow_schema();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "received_at",
                "ts",
                "agent_id",
                "spool_id",
                "event_seq",
                "batch_seq",
                "n"
            ]
        );
        for seq in ["event_seq", "batch_seq"] {
            let field = schema.field_with_name(seq).unwrap();
            assert_eq!(
                field.data_type(),
                &DataType::Int64,
                "{seq}: bigint for SQL engines"
            );
        }
        assert_eq!(schema.metadata()[DATA_LAYOUT_KEY], "2");
        let n = schema.field_with_name("n").unwrap();
        assert_eq!(n.data_type(), &DataType::Int64);
        assert!(!n.is_nullable());
        assert_eq!(n.metadata().get("pii").map(String::as_str), Some("true"));
    }
}
