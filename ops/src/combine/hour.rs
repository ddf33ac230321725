//! Combining one closed hour: every row of the files its marker lists, in the
//! marker's order, into one Parquet file of the closed-hours table.
//!
//! The file goes up through `object_store`'s `BufWriter`: one put when small, else a
//! multipart upload, which the store makes visible only when it completes. So a
//! reader never sees part of a combined file, and an attempt that fails or is
//! stopped leaves nothing at the file's name. Its content is fixed by the marker (same
//! files, same order, same options), so writing it again is harmless.

use std::sync::Arc;

use arrow_schema::SchemaRef;
use bytes::Bytes;
use evd_consumer::commit::Output;
use evd_consumer::layout;
use evd_consumer::parquet_options::ParquetOptions;
use evd_consumer::parquet_out::writer_properties;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::KeyValue;
use parquet::file::metadata::ParquetMetaDataReader;
use tokio::io::AsyncWriteExt;

use super::queue::Job;
use super::schema;
use crate::auditor::OpsError;
use crate::config::CombineConfig;

/// Bytes handed to the store at a time (one part of a multipart upload).
const PART_BYTES: usize = 16 << 20;

/// Rows decoded at a time from a consumer's file.
const READ_BATCH_ROWS: usize = 64 * 1024;

/// What an attempt at one hour did. Every outcome finishes the hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written {
        files: usize,
        rows: u64,
        bytes: u64,
    },
    /// The combined file exists (an earlier attempt, or an earlier run).
    AlreadyThere,
    /// The hour closed without files: there is nothing to combine.
    Empty,
    /// The files cannot go into one file (their versions differ, or their columns
    /// beyond optional ones added within a version, or one is not Parquet); the
    /// consumers' files stay the hour's only copy.
    NotCombinable(String),
}

/// Combines `job`'s hour unless its file exists. A store error is returned (the
/// caller retries the hour later); anything about the files themselves is an outcome.
pub async fn combine_hour(
    output: &Output,
    job: &Job,
    config: &CombineConfig,
) -> Result<Outcome, OpsError> {
    combine_hour_in_parts(output, job, config, PART_BYTES).await
}

/// [`combine_hour`], handing the store `part_bytes` at a time.
pub async fn combine_hour_in_parts(
    output: &Output,
    job: &Job,
    config: &CombineConfig,
    part_bytes: usize,
) -> Result<Outcome, OpsError> {
    let target = output.path(&layout::closed_hour_file(&job.event_type, job.hour));
    match output.store.head(&target).await {
        Ok(_) => return Ok(Outcome::AlreadyThere),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    if job.files.is_empty() {
        return Ok(Outcome::Empty);
    }
    let mut upload = BufWriter::with_capacity(output.store.clone(), target, part_bytes);
    let result = write_rows(output, job, config, part_bytes, &mut upload).await;
    if !matches!(result, Ok(Ok(_)))
        && let Err(e) = upload.abort().await
    {
        tracing::warn!("combining: aborting an upload: {e}");
    }
    match result {
        Ok(Ok(written)) => {
            upload.shutdown().await.map_err(|e| OpsError::Output {
                what: format!("the combined file of {} {}", job.event_type, job.hour),
                source: Some(e.into()),
            })?;
            Ok(written)
        }
        Ok(Err(why)) => Ok(Outcome::NotCombinable(why)),
        Err(e) => Err(e),
    }
}

/// Streams every file's rows into `upload`: `Ok(Err(why))` when the files cannot be
/// combined, `Err` on a store error.
async fn write_rows(
    output: &Output,
    job: &Job,
    config: &CombineConfig,
    part_bytes: usize,
    upload: &mut BufWriter,
) -> Result<Result<Outcome, String>, OpsError> {
    // Footers first, several at a time: each costs the store a round trip or two.
    // Owned paths and store, so the stream's futures borrow nothing (and stay `Send`).
    let paths: Vec<String> = job.files.iter().map(|f| f.path.clone()).collect();
    let max = config.max_file_bytes;
    let footers: Vec<_> = futures::stream::iter(paths)
        .map(|path| {
            let output = output.clone();
            async move { read_footer(&output, &path, max).await }
        })
        .buffered(FOOTERS_AT_ONCE)
        .collect()
        .await;
    let mut schemas = Vec::with_capacity(job.files.len());
    let mut footers_by_file = Vec::with_capacity(job.files.len());
    for (file, footer) in job.files.iter().zip(footers) {
        match footer? {
            Ok(footer) => {
                schemas.push((file.path.clone(), footer.metadata.schema().clone()));
                footers_by_file.push(footer);
            }
            Err(why) => return Ok(Err(why)),
        }
    }
    let target = match schema::merge(&schemas) {
        Ok(target) => target,
        Err(why) => return Ok(Err(why)),
    };
    let mut combining = Combining::new(job, config.parquet.clone(), target);
    for (file, footer) in job.files.iter().zip(footers_by_file) {
        let found = output.store.get(&output.path(&file.path)).await?;
        if found.meta.size > config.max_file_bytes {
            return Ok(Err(too_large(
                &file.path,
                found.meta.size,
                config.max_file_bytes,
            )));
        }
        // The footer read above describes these bytes unless the object changed size.
        let footer = (found.meta.size == footer.size).then_some(footer.metadata);
        let bytes = found.bytes().await?;
        let path = file.path.clone();
        let decoded = tokio::task::spawn_blocking(move || {
            let added = combining.add(&path, bytes, footer);
            (combining, added)
        })
        .await;
        let (back, added) = match decoded {
            Ok(done) => done,
            // The Parquet reader panicked on this file: bad input, not a reason to retry.
            Err(e) if e.is_panic() => {
                return Ok(Err(format!(
                    "{}: the Parquet reader failed on it",
                    file.path
                )));
            }
            Err(e) => {
                let source = Some(e.into());
                let what = "combining task".into();
                return Err(OpsError::Output { what, source });
            }
        };
        combining = back;
        if let Err(why) = added {
            return Ok(Err(why));
        }
        while let Some(part) = combining.take_part(part_bytes) {
            upload.put(part).await?;
        }
    }
    let (tail, outcome) = combining.finish()?;
    upload.put(tail).await?;
    Ok(Ok(outcome))
}

fn too_large(path: &str, size: u64, max_file_bytes: u64) -> String {
    format!("{path} is {size} bytes, over combine.max_file_bytes ({max_file_bytes})")
}

/// Footers read at once by [`write_rows`].
const FOOTERS_AT_ONCE: usize = 16;

/// A file's size and its decoded footer.
struct Footer {
    size: u64,
    metadata: ArrowReaderMetadata,
}

/// The footer of the Parquet file at `path` (its schema, row groups), read with a head
/// and two ranged gets (the footer's length, then the footer). `Ok(Err(why))` when
/// the object is too large or not a Parquet file; `Err` on a store error.
async fn read_footer(
    output: &Output,
    path: &str,
    max_file_bytes: u64,
) -> Result<Result<Footer, String>, OpsError> {
    let location = output.path(path);
    let size = output.store.head(&location).await?.size;
    if size > max_file_bytes {
        return Ok(Err(too_large(path, size, max_file_bytes)));
    }
    let not_parquet = || format!("{path}: not a Parquet file");
    if size < FOOTER_TAIL_BYTES {
        return Ok(Err(not_parquet()));
    }
    let tail = output
        .store
        .get_range(&location, size - FOOTER_TAIL_BYTES..size)
        .await?;
    let Ok(tail) = <[u8; 8]>::try_from(&tail[..]) else {
        return Ok(Err(not_parquet()));
    };
    let footer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if &tail[4..] != b"PAR1" || footer_len > size - FOOTER_TAIL_BYTES {
        return Ok(Err(not_parquet()));
    }
    if footer_len > MAX_FOOTER_BYTES {
        return Ok(Err(format!(
            "{path}: a footer of {footer_len} bytes, over the {MAX_FOOTER_BYTES} a consumer's file needs"
        )));
    }
    let end = size - FOOTER_TAIL_BYTES;
    let footer = output
        .store
        .get_range(&location, end - footer_len..end)
        .await?;
    let decoded = tokio::task::spawn_blocking(move || {
        let metadata = ParquetMetaDataReader::decode_metadata(&footer)?;
        ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::default())
    })
    .await;
    Ok(match decoded {
        Ok(Ok(metadata)) => Ok(Footer { size, metadata }),
        Ok(Err(e)) => Err(format!("{path}: {e}")),
        Err(e) if e.is_panic() => Err(format!("{path}: the Parquet reader failed on its footer")),
        Err(e) => {
            let source = Some(e.into());
            let what = "combining task".into();
            return Err(OpsError::Output { what, source });
        }
    })
}

/// A Parquet file ends with its footer's length (4 bytes, little-endian) and `PAR1`.
const FOOTER_TAIL_BYTES: u64 = 8;

/// The largest footer read. A consumer's file has a few row groups and a footer of a
/// few KiB; the cap bounds what [`FOOTERS_AT_ONCE`] reads may hold whatever a stray
/// object's last bytes claim.
const MAX_FOOTER_BYTES: u64 = 16 << 20;

/// The CPU side: decodes files and encodes the combined one into memory, a part at
/// a time.
struct Combining {
    event_type: String,
    marker: String,
    state: &'static str,
    options: ParquetOptions,
    /// The columns of the combined file ([`schema::merge`] of the hour's files).
    target: SchemaRef,
    writer: Option<ArrowWriter<Vec<u8>>>,
    files: usize,
    rows: u64,
    bytes_out: u64,
}

impl Combining {
    fn new(job: &Job, options: ParquetOptions, target: SchemaRef) -> Combining {
        Combining {
            event_type: job.event_type.clone(),
            marker: layout::closed_marker(&job.event_type, job.hour),
            state: job.state.as_str(),
            options,
            target,
            writer: None,
            files: 0,
            rows: 0,
            bytes_out: 0,
        }
    }

    /// Appends every row of the file `path` holds (`footer`: its footer, if already
    /// decoded); `Err` says why it cannot join.
    fn add(
        &mut self,
        path: &str,
        bytes: Bytes,
        footer: Option<ArrowReaderMetadata>,
    ) -> Result<(), String> {
        let unreadable = |e: parquet::errors::ParquetError| format!("{path}: {e}");
        let builder = match footer {
            Some(footer) => ParquetRecordBatchReaderBuilder::new_with_metadata(bytes, footer),
            None => ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(unreadable)?,
        };
        let reader = builder
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(unreadable)?;
        for batch in reader {
            let batch = batch.map_err(|e| format!("{path}: {e}"))?;
            let batch =
                schema::conform(&batch, &self.target).map_err(|e| format!("{path}: {e}"))?;
            let writer = match &mut self.writer {
                Some(writer) => writer,
                None => self
                    .writer
                    .insert(start_writer(&self.target, &batch, &self.options).map_err(unreadable)?),
            };
            writer.write(&batch).map_err(unreadable)?;
            self.rows += batch.num_rows() as u64;
        }
        self.files += 1;
        Ok(())
    }

    /// The bytes encoded so far, once there are at least `at_least`. Taking them from
    /// the writer's buffer is safe: the writer only appends, and counts what it wrote.
    fn take_part(&mut self, at_least: usize) -> Option<Bytes> {
        let buffer = self.writer.as_mut()?.inner_mut();
        if buffer.len() < at_least {
            return None;
        }
        let part = std::mem::take(buffer);
        self.bytes_out += part.len() as u64;
        Some(Bytes::from(part))
    }

    /// Closes the file, with the marker's path and state in its key-value metadata;
    /// returns its last bytes.
    fn finish(mut self) -> Result<(Bytes, Outcome), OpsError> {
        let Some(mut writer) = self.writer.take() else {
            // Files without rows: an empty file of the hour's columns.
            let empty = arrow_array::RecordBatch::new_empty(self.target.clone());
            let writer =
                start_writer(&self.target, &empty, &self.options).map_err(|e| self.error(e))?;
            self.writer = Some(writer);
            return self.finish();
        };
        for (key, value) in [
            ("evd.closed_marker", self.marker.clone()),
            ("evd.closed_state", self.state.to_string()),
            ("evd.combined_files", self.files.to_string()),
        ] {
            writer.append_key_value_metadata(KeyValue::new(key.into(), value));
        }
        // Writes the last row group and the footer.
        let tail = writer.into_inner().map_err(|e| self.error(e))?;
        let bytes = self.bytes_out + tail.len() as u64;
        let outcome = Outcome::Written {
            files: self.files,
            rows: self.rows,
            bytes,
        };
        Ok((Bytes::from(tail), outcome))
    }

    fn error(&self, e: parquet::errors::ParquetError) -> OpsError {
        OpsError::Output {
            what: format!("encoding the combined file of {}", self.event_type),
            source: Some(e.into()),
        }
    }
}

/// An in-memory writer of `schema` (the hour's, with the files' metadata), with the
/// consumers' settings chosen for `sample`'s rows (the first batch of the hour, or an
/// empty one).
fn start_writer(
    schema: &SchemaRef,
    sample: &arrow_array::RecordBatch,
    options: &ParquetOptions,
) -> Result<ArrowWriter<Vec<u8>>, parquet::errors::ParquetError> {
    let props = writer_properties(sample, options)?;
    ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
}
