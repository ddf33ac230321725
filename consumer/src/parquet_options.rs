//! The `[parquet]` table of the consumer config: how data files are encoded. The
//! defaults are the measured ones in `docs/benchmarks.md` (zstd level 3, 256 Ki rows
//! per row group, pages of up to 1 MiB, dictionaries only where a sample repeats, no
//! bloom filters).

use evd_schemas::{Invalid, Registry};
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use serde::Deserialize;

/// Rows per row group unless configured: large enough for good compression and fast
/// scans, small enough that a reader's memory per row group stays modest.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 256 * 1024;

/// Rows per data page at most unless configured: pages end at 1 MiB of values
/// first in practice. (arrow-rs's own default, 20,000 rows, cut mostly distinct
/// string columns into small pages that zstd compressed ~30% worse.)
pub const DEFAULT_PAGE_ROWS: usize = 1 << 20;

/// Most rows a row group may be configured to hold.
const MAX_ROW_GROUP_ROWS: usize = 64 << 20;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ParquetOptions {
    /// Page compression: `"zstd"` (default), `"snappy"`, `"gzip"` or `"none"`.
    #[serde(default)]
    pub compression: Codec,
    /// zstd 1..=22 (default 3) or gzip 0..=9 (default 6); not allowed with snappy
    /// or none.
    #[serde(default)]
    pub compression_level: Option<i32>,
    /// Rows per row group (default 262144): a reader's unit of parallelism and of
    /// statistics-based skipping.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// Rows per data page at most (default 1048576); a page also ends at 1 MiB of
    /// encoded values. Smaller pages let engines that read page indexes skip finer,
    /// at a cost in size (docs/benchmarks.md).
    #[serde(default = "default_page_rows")]
    pub page_rows: usize,
    /// `"auto"` (default): a column keeps Parquet's dictionary only when most values
    /// of a sample repeat; `"always"`; `"never"`.
    #[serde(default)]
    pub dictionary: Dictionary,
    /// Columns that get a bloom filter (e.g. `["user_id"]`), so engines that read them
    /// (DuckDB, Spark, Trino) skip row groups on `=` filters. Each must be a column
    /// of some type in the registry, or a fixed column (`agent_id`, …).
    #[serde(default)]
    pub bloom_filter_columns: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Zstd,
    Snappy,
    Gzip,
    None,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Dictionary {
    #[default]
    Auto,
    Always,
    Never,
}

fn default_row_group_rows() -> usize {
    DEFAULT_ROW_GROUP_ROWS
}

fn default_page_rows() -> usize {
    DEFAULT_PAGE_ROWS
}

impl Default for ParquetOptions {
    fn default() -> ParquetOptions {
        ParquetOptions {
            compression: Codec::default(),
            compression_level: None,
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            page_rows: DEFAULT_PAGE_ROWS,
            dictionary: Dictionary::default(),
            bloom_filter_columns: Vec::new(),
        }
    }
}

impl ParquetOptions {
    /// The Parquet compression setting, or why the level does not fit the codec.
    pub fn compression(&self) -> Result<Compression, String> {
        let level = self.compression_level;
        let bad = |e: parquet::errors::ParquetError| e.to_string();
        Ok(match (self.compression, level) {
            (Codec::Zstd, level) => {
                Compression::ZSTD(ZstdLevel::try_new(level.unwrap_or(3)).map_err(bad)?)
            }
            (Codec::Gzip, level) => {
                let level = u32::try_from(level.unwrap_or(6))
                    .map_err(|_| "gzip levels are 0..=9".to_string())?;
                Compression::GZIP(GzipLevel::try_new(level).map_err(bad)?)
            }
            (Codec::Snappy | Codec::None, Some(_)) => {
                return Err("compression_level applies to zstd and gzip only".into());
            }
            (Codec::Snappy, None) => Compression::SNAPPY,
            (Codec::None, None) => Compression::UNCOMPRESSED,
        })
    }

    /// What can be checked without the registry (`evd validate` and start).
    pub fn check(&self) -> Result<(), Invalid> {
        self.compression()
            .map_err(|e| Invalid::at("parquet.compression_level", e))?;
        if self.row_group_rows == 0 || self.row_group_rows > MAX_ROW_GROUP_ROWS {
            return Err(Invalid::at(
                "parquet.row_group_rows",
                format!("must be 1..={MAX_ROW_GROUP_ROWS}"),
            ));
        }
        if self.page_rows == 0 || self.page_rows > MAX_ROW_GROUP_ROWS {
            return Err(Invalid::at(
                "parquet.page_rows",
                format!("must be 1..={MAX_ROW_GROUP_ROWS}"),
            ));
        }
        Ok(())
    }

    /// Every bloom filter column is a column of some registry type.
    pub fn check_columns(&self, registry: &Registry) -> Result<(), String> {
        for column in &self.bloom_filter_columns {
            let fixed = column != "type"
                && evd_schemas::registry::RESERVED_COLUMNS.contains(&column.as_str());
            if !fixed && !registry.types().any(|t| t.field(column).is_some()) {
                return Err(format!(
                    "parquet.bloom_filter_columns: {column:?} is not a column of any type in the registry"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<ParquetOptions, String> {
        let opts: ParquetOptions = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        opts.check().map_err(|e| e.to_string())?;
        Ok(opts)
    }

    #[test]
    fn defaults_are_zstd_3_and_levels_must_fit_their_codec() {
        let d = parse("").unwrap();
        assert_eq!(d, ParquetOptions::default());
        assert_eq!(
            d.compression().unwrap(),
            Compression::ZSTD(ZstdLevel::try_new(3).unwrap())
        );
        assert!(parse("compression = \"gzip\"\ncompression_level = 9").is_ok());
        assert!(parse("compression = \"zstd\"\ncompression_level = 23").is_err());
        assert!(parse("compression = \"gzip\"\ncompression_level = -1").is_err());
        let err = parse("compression = \"snappy\"\ncompression_level = 1").unwrap_err();
        assert!(err.contains("zstd and gzip only"), "{err}");
        assert!(parse("row_group_rows = 0").is_err());
        assert!(parse("compression = \"lzo\"").is_err());
        assert!(parse("bloom = []").is_err());
    }
}
