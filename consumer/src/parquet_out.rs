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
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::parquet_options::{Dictionary, ParquetOptions};

/// Values of a column looked at to decide on its dictionary.
const DICTIONARY_SAMPLE_ROWS: usize = 4096;

/// A dictionary pays when at most this share of sampled values is distinct.
const DICTIONARY_MAX_DISTINCT_SHARE: f64 = 0.5;

/// Parquet with the default options (zstd 3) and the Arrow schema embedded (so
/// readers get the UTC timestamps and field metadata back).
pub fn encode(batch: &RecordBatch) -> Result<Bytes, ParquetError> {
    encode_with(batch, &ParquetOptions::default())
}

/// Parquet as `options` say; options that do not compile (a level out of range) are
/// an error here, though `ParquetOptions::check` refuses them before start.
pub fn encode_with(batch: &RecordBatch, options: &ParquetOptions) -> Result<Bytes, ParquetError> {
    let props = writer_properties(batch, options)?;
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4);
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(Bytes::from(out))
}

/// The writer settings for files of `sample`'s schema as `options` say, with each
/// column's dictionary decided from `sample`'s first rows. The consumer passes a
/// flush's rows; the auditor's combiner the first rows of a closed hour.
pub fn writer_properties(
    sample: &RecordBatch,
    options: &ParquetOptions,
) -> Result<WriterProperties, ParquetError> {
    let compression = options.compression().map_err(ParquetError::General)?;
    let mut props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(options.row_group_rows))
        .set_data_page_row_count_limit(options.page_rows)
        .set_created_by("evd".into());
    for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
        let path = ColumnPath::from(field.name().as_str());
        let dictionary = match options.dictionary {
            Dictionary::Auto => dictionary_pays(column.as_ref()),
            Dictionary::Always => true,
            Dictionary::Never => false,
        };
        if !dictionary {
            props = props.set_column_dictionary_enabled(path.clone(), false);
        }
        if options
            .bloom_filter_columns
            .iter()
            .any(|c| c == field.name())
        {
            props = props.set_column_bloom_filter_enabled(path, true);
        }
    }
    Ok(props.build())
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

    fn sample(n: i64) -> RecordBatch {
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
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn uses_dictionary(column: &parquet::file::metadata::ColumnChunkMetaData) -> bool {
        column
            .encodings()
            .any(|e| e == Encoding::RLE_DICTIONARY || e == Encoding::PLAIN_DICTIONARY)
    }

    /// Repeating columns get a dictionary, mostly distinct ones are written plain.
    #[test]
    fn dictionaries_only_where_values_repeat() {
        let batch = sample(10_000);
        let file = SerializedFileReader::new(encode(&batch).unwrap()).unwrap();
        let group = file.metadata().row_group(0);
        let dictionary = |i: usize| uses_dictionary(group.column(i));
        assert!(!dictionary(0), "seq");
        assert!(!dictionary(1), "user");
        assert!(dictionary(2), "country");
        assert!(dictionary(3), "status");
        let _: Bytes = encode(&batch.slice(0, 0)).unwrap();
    }

    /// The `[parquet]` options reach the file: codec, row groups, dictionaries and
    /// bloom filters.
    #[test]
    fn options_shape_the_file() {
        let options = ParquetOptions {
            compression: crate::parquet_options::Codec::Snappy,
            compression_level: None,
            row_group_rows: 1_000,
            page_rows: 1_000,
            dictionary: Dictionary::Never,
            bloom_filter_columns: vec!["user".into()],
        };
        let file =
            SerializedFileReader::new(encode_with(&sample(10_000), &options).unwrap()).unwrap();
        let meta = file.metadata();
        assert_eq!(meta.num_row_groups(), 10);
        let group = meta.row_group(0);
        assert_eq!(
            group.column(0).compression(),
            parquet::basic::Compression::SNAPPY
        );
        assert!(!uses_dictionary(group.column(2)), "country: never");
        assert!(group.column(1).bloom_filter_offset().is_some(), "user");
        assert!(group.column(2).bloom_filter_offset().is_none(), "country");
    }

    /// Pages end at `page_rows` (checked every 1,024 rows) or at 1 MiB.
    #[test]
    fn pages_hold_up_to_page_rows() {
        let data_pages = |options: &ParquetOptions| {
            let file =
                SerializedFileReader::new(encode_with(&sample(10_000), options).unwrap()).unwrap();
            let mut pages = file
                .get_row_group(0)
                .unwrap()
                .get_column_page_reader(0)
                .unwrap();
            let mut n = 0;
            while let Some(page) = pages.get_next_page().unwrap() {
                n += usize::from(
                    page.num_values() > 0
                        && !matches!(page, parquet::column::page::Page::DictionaryPage { .. }),
                );
            }
            n
        };
        assert_eq!(data_pages(&ParquetOptions::default()), 1);
        let small = ParquetOptions {
            page_rows: 2_048,
            ..ParquetOptions::default()
        };
        assert_eq!(data_pages(&small), 5);
    }
}
