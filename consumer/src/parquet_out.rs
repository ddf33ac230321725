//! Encoding one (type, hour)'s rows as a Parquet file in memory.

use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use arrow_array::RecordBatch;

/// Rows per row group: large enough for good compression and fast scans, small enough
/// that a reader's memory per row group stays modest.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// zstd-compressed Parquet with the Arrow schema embedded (so readers get the UTC
/// timestamps and field metadata back).
pub fn encode(batch: &RecordBatch) -> Result<Bytes, parquet::errors::ParquetError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by("evd".into())
        .build();
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4);
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(Bytes::from(out))
}
