//! One schema for an hour's files, and each file's rows fitted to it. Pure: plain
//! Arrow values in, a schema or the reason there is none out.
//!
//! Within one version of an event type the registry allows only optional fields to be
//! added (and `doc`, owner or tier to be edited, and a required field to become
//! optional). So an hour that straddles a registry update holds files of one version
//! whose columns differ by optional columns at most. Such files still combine: the
//! widest file's columns, every other file's rows with nulls in the columns it lacks.
//! Files of different versions (a version may remove or retype fields), or whose
//! columns differ in any other way, do not.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, new_null_array};
use arrow_schema::{Field, Schema, SchemaRef};
use evd_schemas::registry::DATA_LAYOUT_KEY;

/// The schema metadata that says what a file's rows are: files combine only when these
/// agree. Other metadata is the widest file's.
const IDENTITY_KEYS: [&str; 3] = ["evd.event_type", "evd.version", DATA_LAYOUT_KEY];

/// The schema every file of the hour fits: that of the file with the most columns,
/// each column nullable if it is nullable in any file. `Err` says which file does not
/// fit and why. `files` holds (path, schema) in the marker's order.
pub fn merge(files: &[(String, SchemaRef)]) -> Result<SchemaRef, String> {
    let Some((widest_path, widest)) = files.iter().max_by_key(|(_, s)| s.fields().len()) else {
        return Err("no files".into());
    };
    for (path, schema) in files {
        for key in IDENTITY_KEYS {
            if schema.metadata().get(key) != widest.metadata().get(key) {
                return Err(format!("{path} has another {key} than {widest_path}"));
            }
        }
        for field in schema.fields() {
            match widest.field_with_name(field.name()) {
                Ok(wide) if wide.data_type() == field.data_type() => {}
                Ok(_) => {
                    return Err(format!(
                        "{path} has column {} of another type than {widest_path}",
                        field.name()
                    ));
                }
                Err(_) => {
                    return Err(format!(
                        "{path} has column {} that {widest_path} lacks",
                        field.name()
                    ));
                }
            }
        }
    }
    let mut fields = Vec::with_capacity(widest.fields().len());
    for wide in widest.fields() {
        let mut nullable = wide.is_nullable();
        for (path, schema) in files {
            match schema.field_with_name(wide.name()) {
                Ok(field) => nullable |= field.is_nullable(),
                Err(_) if wide.is_nullable() => {}
                Err(_) => {
                    return Err(format!(
                        "{path} lacks column {}, which is required in {widest_path}",
                        wide.name()
                    ));
                }
            }
        }
        fields.push(Field::clone(wide).with_nullable(nullable));
    }
    Ok(Arc::new(
        Schema::new(fields).with_metadata(widest.metadata().clone()),
    ))
}

/// `batch`'s rows with `target`'s columns: its own columns by name, nulls for the
/// columns it lacks. `target` comes from [`merge`] over the batch's file. A batch that
/// already has those columns is returned as it is (schema metadata is the writer's).
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, String> {
    if batch.schema().fields() == target.fields() {
        return Ok(batch.clone());
    }
    let columns: Vec<ArrayRef> = target
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => column.clone(),
            None => new_null_array(field.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(target.clone(), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array};
    use arrow_schema::DataType;
    use std::collections::HashMap;

    fn schema(version: &str, fields: &[(&str, DataType, bool)]) -> SchemaRef {
        let fields: Vec<Field> = fields
            .iter()
            .map(|(n, t, null)| Field::new(*n, t.clone(), *null))
            .collect();
        let meta = HashMap::from([("evd.version".to_string(), version.to_string())]);
        Arc::new(Schema::new(fields).with_metadata(meta))
    }

    fn files(schemas: &[SchemaRef]) -> Vec<(String, SchemaRef)> {
        schemas
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("f{i}"), s.clone()))
            .collect()
    }

    #[test]
    fn an_added_optional_column_widens_the_hour_and_older_rows_get_nulls() {
        let old = schema("1", &[("seq", DataType::Int64, false)]);
        let new = schema(
            "1",
            &[
                ("seq", DataType::Int64, false),
                ("country", DataType::Utf8, true),
            ],
        );
        let target = merge(&files(&[old.clone(), new.clone(), old.clone()])).unwrap();
        assert_eq!(target, new);
        let rows = RecordBatch::try_new(old, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let fitted = conform(&rows, &target).unwrap();
        assert_eq!(fitted.schema().fields(), target.fields());
        assert_eq!(fitted.column(1).null_count(), 2);
    }

    #[test]
    fn a_column_that_became_optional_is_nullable_in_the_hour() {
        let required = schema(
            "1",
            &[
                ("seq", DataType::Int64, false),
                ("u", DataType::Utf8, false),
            ],
        );
        let optional = schema(
            "1",
            &[("seq", DataType::Int64, false), ("u", DataType::Utf8, true)],
        );
        let target = merge(&files(&[required, optional])).unwrap();
        assert!(target.field_with_name("u").unwrap().is_nullable());
    }

    #[test]
    fn other_versions_types_or_column_sets_do_not_combine() {
        let base = schema("1", &[("seq", DataType::Int64, false)]);
        let cases = [
            (
                schema("2", &[("seq", DataType::Int64, false)]),
                "evd.version",
            ),
            (
                schema("1", &[("seq", DataType::Utf8, false)]),
                "another type",
            ),
            (
                schema(
                    "1",
                    &[
                        ("seq", DataType::Int64, false),
                        ("x", DataType::Utf8, false),
                    ],
                ),
                "required",
            ),
        ];
        for (other, why) in cases {
            let err = merge(&files(&[base.clone(), other])).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let left = schema(
            "1",
            &[("seq", DataType::Int64, false), ("a", DataType::Utf8, true)],
        );
        let right = schema(
            "1",
            &[("seq", DataType::Int64, false), ("b", DataType::Utf8, true)],
        );
        let err = merge(&files(&[left, right])).unwrap_err();
        assert!(err.contains("lacks"), "{err}");
    }
}
