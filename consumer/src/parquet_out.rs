//! Encoding one (type, hour)'s rows as a Parquet file in memory.
//!
//! Encodings are chosen per file from the rows themselves: a column keeps Parquet's
//! dictionary only where it pays, i.e. when a sample of its values repeats (most are
//! not distinct); columns of mostly distinct values (ids, sequences, timestamps) are
//! written plain and left to zstd. Readers need nothing beyond Parquet 1.0 encodings.
//! `docs/benchmarks.md` has the size table these choices were measured by.

use std::collections::HashSet;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// Rows per row group: large enough for good compression and fast scans, small enough
/// that a reader's memory per row group stays modest.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Values of a column looked at to decide on its dictionary.
const DICTIONARY_SAMPLE_ROWS: usize = 4096;

/// A dictionary pays when at most this share of sampled values is distinct.
const DICTIONARY_MAX_DISTINCT_SHARE: f64 = 0.5;

/// zstd-compressed Parquet with the Arrow schema embedded (so readers get the UTC
/// timestamps and field metadata back).
pub fn encode(batch: &RecordBatch) -> Result<Bytes, parquet::errors::ParquetError> {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by("evd".into());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !dictionary_pays(column.as_ref()) {
            let path = ColumnPath::from(field.name().as_str());
            props = props.set_column_dictionary_enabled(path, false);
        }
    }
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4);
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props.build()))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(Bytes::from(out))
}

/// Whether most values of a sample at the start of `column` repeat. Columns of a
/// type this does not sample keep the dictionary (Parquet falls back by itself).
fn dictionary_pays(column: &dyn Array) -> bool {
    let rows = column.len().min(DICTIONARY_SAMPLE_ROWS);
    if rows == 0 {
        return true;
    }
    let distinct = match column.data_type() {
        DataType::Utf8 => {
            let strings = column.as_string::<i32>();
            let seen: HashSet<&str> = (0..rows)
                .filter(|&i| strings.is_valid(i))
                .map(|i| strings.value(i))
                .collect();
            seen.len()
        }
        DataType::Int64 | DataType::UInt64 | DataType::Float64 | DataType::Timestamp(..) => {
            let values = column.to_data();
            let bytes = &values.buffers()[0].as_slice()[values.offset() * 8..];
            let seen: HashSet<&[u8]> = bytes.chunks_exact(8).take(rows).collect();
            seen.len()
        }
        _ => return true,
    };
    (distinct as f64) <= rows as f64 * DICTIONARY_MAX_DISTINCT_SHARE
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};
    use bytes::Bytes;
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    /// Repeating columns get a dictionary, mostly distinct ones are written plain.
    #[test]
    fn dictionaries_only_where_values_repeat() {
        let n = 10_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("seq", DataType::Int64, false),
            Field::new("user", DataType::Utf8, false),
            Field::new("country", DataType::Utf8, false),
            Field::new("status", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(0..n)),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("u{i}")),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| ["se", "de", "us"][i as usize % 3]),
            )),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 7))),
        ];
        let batch = RecordBatch::try_new(schema, columns).unwrap();
        let file = SerializedFileReader::new(encode(&batch).unwrap()).unwrap();
        let group = file.metadata().row_group(0);
        let dictionary = |i: usize| {
            group
                .column(i)
                .encodings()
                .any(|e| e == Encoding::RLE_DICTIONARY || e == Encoding::PLAIN_DICTIONARY)
        };
        assert!(!dictionary(0), "seq");
        assert!(!dictionary(1), "user");
        assert!(dictionary(2), "country");
        assert!(dictionary(3), "status");
        let _: Bytes = encode(&batch.slice(0, 0)).unwrap();
    }
}
