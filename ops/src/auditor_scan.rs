//! The auditor's output scan: every new data file, manifest and closed marker taken
//! into the state once, unreadable objects set aside and counted (`auditor` closes
//! hours on what this found).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType, UInt64Type};
use arrow_array::{PrimitiveArray, RecordBatch, StringArray};
use evd_consumer::commit::Output;
use evd_consumer::layout::{self, CLOSED_MARKER};
use evd_consumer::ledger::Manifest;
use evd_schemas::clock::{Clock, SystemClock};
use evd_schemas::registry::{DATA_LAYOUT, DATA_LAYOUT_KEY};
use evd_schemas::{Hour, Origin, SpoolId};
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::audit::{ClosedMarker, FileScan};
use crate::auditor::{OpsError, Shared};

/// Objects already taken into the state, and those that could not be read.
#[derive(Default)]
pub struct Seen {
    files: HashSet<String>,
    manifests: HashSet<String>,
    markers: HashSet<String>,
    /// Objects that could not be read or parsed: skipped from then on (until a
    /// restart), counted and logged once. Their rows count as missing.
    bad: HashSet<String>,
    /// The newest ledger snapshot when the manifest archive was last listed.
    archive_listed_for: Option<Option<String>>,
}

impl Seen {
    /// A closed marker this auditor wrote (its own, so not read back).
    pub(crate) fn note_marker(&mut self, rel: String) {
        self.markers.insert(rel);
    }

    /// Records an unreadable object once: counted in `evd_ops_bad_objects_total` and
    /// logged; later scans skip it.
    fn set_aside(&mut self, shared: &Shared, rel: &str, e: &OpsError) {
        if self.bad.insert(rel.to_string()) {
            shared.bad_objects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "BAD OBJECT {rel} skipped (its rows count as missing): {}",
                evd_runtime::error_chain(e)
            );
        }
    }

    /// Passes `taken` on, except that an unreadable object is set aside instead.
    pub(crate) fn set_aside_unreadable(
        &mut self,
        shared: &Shared,
        rel: &str,
        taken: Result<(), OpsError>,
    ) -> Result<(), OpsError> {
        match taken {
            Err(e @ OpsError::Unreadable { .. }) => {
                self.set_aside(shared, rel, &e);
                Ok(())
            }
            other => other,
        }
    }

    /// Forgets objects in hour folders before `floor` (never listed again).
    pub(crate) fn prune(&mut self, floor: Hour) {
        let keep = |rel: &String| folder_hour(rel).is_none_or(|h| h >= floor);
        self.files.retain(keep);
        self.markers.retain(keep);
        self.bad.retain(keep);
    }

    /// Whether `rel` was taken in already or set aside.
    pub(crate) fn known(&self, rel: &str) -> bool {
        self.files.contains(rel) || self.markers.contains(rel) || self.bad.contains(rel)
    }
}

/// Takes every new data file, manifest and closed marker into the state.
pub async fn scan(output: &Output, shared: &Shared, seen: &mut Seen) -> Result<(), OpsError> {
    let types: Vec<String> = shared.state().types().map(|(t, _)| t.to_string()).collect();
    // Only the window's dates can still change: older folders are closed and pruned.
    let floor = shared.window_floor();
    let last = Hour::from_unix_ms(shared.clock.now_ms()).next();
    let mut dates: Vec<String> = (floor.0..=last.0.max(floor.0))
        .map(|h| Hour(h).date())
        .collect();
    dates.dedup();
    for ty in types {
        let mut metas: Vec<ObjectMeta> = Vec::new();
        for date in &dates {
            let listed: Vec<ObjectMeta> = output
                .store
                .list(Some(&output.path(&format!("{ty}/date={date}"))))
                .try_collect()
                .await?;
            metas.extend(listed);
        }
        for meta in metas {
            let rel = output.relative(&meta.location);
            if seen.known(&rel) {
                continue;
            }
            let taken = if rel.ends_with(".parquet") {
                take_file(output, shared, seen, &ty, &meta).await
            } else if rel.ends_with(CLOSED_MARKER) {
                take_marker(output, shared, seen, &rel).await
            } else {
                Ok(())
            };
            seen.set_aside_unreadable(shared, &rel, taken)?;
        }
    }
    scan_manifests(output, shared, seen).await?;
    count_quarantined(output, shared).await
}

/// Takes the quarantined-event counts of every new manifest into the state.
async fn scan_manifests(output: &Output, shared: &Shared, seen: &mut Seen) -> Result<(), OpsError> {
    // Live manifests, and those a ledger compaction moved to the archive (one flush
    // counts once, wherever its manifest is now). The archive only changes when a
    // compaction writes a new ledger generation, so it is listed again only then.
    let generation = newest_ledger_generation(output).await?;
    let mut dirs = vec![layout::MANIFESTS_DIR];
    if seen.archive_listed_for.as_ref() != Some(&generation) {
        dirs.push(layout::ARCHIVED_MANIFESTS_DIR);
    }
    let mut manifests: Vec<ObjectMeta> = Vec::new();
    let mut moved_since_listing = false;
    for dir in dirs {
        let listed: Vec<ObjectMeta> = output
            .store
            .list(Some(&output.path(dir)))
            .try_collect()
            .await?;
        manifests.extend(listed);
    }
    for meta in manifests {
        let rel = output.relative(&meta.location);
        let name = meta.location.filename().unwrap_or_default().to_string();
        if seen.manifests.contains(&name) || seen.bad.contains(&rel) {
            continue;
        }
        let bytes = match output.store.get(&meta.location).await {
            Ok(r) => r.bytes().await?,
            // Moved to the archive since the listing: the next scan lists the archive
            // again and finds it there.
            Err(object_store::Error::NotFound { .. }) => {
                moved_since_listing = true;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let manifest = match Manifest::from_json(&bytes) {
            Ok(m) => m,
            Err(e) => {
                seen.set_aside(shared, &rel, &OpsError::unreadable(&rel, e));
                continue;
            }
        };
        let mut state = shared.state();
        for d in manifest.delivered.iter().filter(|d| d.quarantined > 0) {
            let origin = Origin::new(d.agent_id.clone(), d.spool_id);
            state.on_quarantined(&origin, &d.event_type, Hour(d.hour), d.quarantined);
        }
        seen.manifests.insert(name);
    }
    seen.archive_listed_for = (!moved_since_listing).then_some(generation);
    Ok(())
}

/// Counts the batches kept whole in quarantine (a `.bin` each).
async fn count_quarantined(output: &Output, shared: &Shared) -> Result<(), OpsError> {
    let quarantined: Vec<ObjectMeta> = output
        .store
        .list(Some(&output.path(layout::QUARANTINE_DIR)))
        .try_collect()
        .await?;
    let batches = quarantined
        .iter()
        .filter(|m| m.location.as_ref().ends_with(".bin"))
        .count();
    shared
        .quarantined_batches
        .store(batches as u64, Ordering::Relaxed);
    Ok(())
}

/// The name of the newest ledger snapshot (`_evd/ledger/<generation>.json`), if any:
/// a compaction that archived manifests wrote it.
async fn newest_ledger_generation(output: &Output) -> Result<Option<String>, OpsError> {
    let snapshots: Vec<ObjectMeta> = output
        .store
        .list(Some(&output.path(layout::LEDGER_DIR)))
        .try_collect()
        .await?;
    Ok(snapshots
        .iter()
        .filter_map(|m| m.location.filename().map(str::to_string))
        .max())
}

/// Scans one data file not seen before into the state.
pub(crate) async fn take_file(
    output: &Output,
    shared: &Shared,
    seen: &mut Seen,
    event_type: &str,
    meta: &ObjectMeta,
) -> Result<(), OpsError> {
    // Commit times are wall-clock; receive times are on the agents' clock, which this
    // auditor's clock stands for (they differ only in tests and the demo).
    let clock_shift_ms = shared.clock.now_ms() - SystemClock.now_ms();
    let file = scan_file(output, event_type, meta, clock_shift_ms).await?;
    shared.state().on_file(&file);
    shared.files_scanned.fetch_add(1, Ordering::Relaxed);
    let rows: u64 = file.rows.values().sum();
    shared.rows_scanned.fetch_add(rows, Ordering::Relaxed);
    seen.files.insert(output.relative(&meta.location));
    Ok(())
}

/// Reads a closed-hour marker (`rel` to the prefix) into the state.
pub(crate) async fn take_marker(
    output: &Output,
    shared: &Shared,
    seen: &mut Seen,
    rel: &str,
) -> Result<(), OpsError> {
    let bytes = output.store.get(&output.path(rel)).await?.bytes().await?;
    let marker = ClosedMarker::from_json(&bytes).map_err(|e| OpsError::unreadable(rel, e))?;
    shared.state().on_closed(marker);
    seen.markers.insert(rel.to_string());
    Ok(())
}

/// Reads the audit columns of one data file: rows per (agent incarnation, batch),
/// lateness and delivery latency (commit time = the object's last-modified time).
/// Files written before incarnations have no `spool_id` column: the legacy one.
async fn scan_file(
    output: &Output,
    event_type: &str,
    meta: &ObjectMeta,
    clock_shift_ms: i64,
) -> Result<FileScan, OpsError> {
    let rel = output.relative(&meta.location);
    let folder_hour =
        folder_hour(&rel).ok_or_else(|| OpsError::unreadable(&rel, "not in an hour folder"))?;
    let bytes = output.store.get(&meta.location).await?.bytes().await?;
    let bad = |e: parquet::errors::ParquetError| OpsError::unreadable(&rel, e);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(bad)?;
    let layout = builder.schema().metadata().get(DATA_LAYOUT_KEY);
    if let Some(layout) = layout
        && layout
            .parse::<u32>()
            .ok()
            .is_none_or(|v| v == 0 || v > DATA_LAYOUT)
    {
        return Err(OpsError::unreadable(
            &rel,
            format!("data layout {layout:?} is not one this auditor knows (1..={DATA_LAYOUT})"),
        ));
    }
    let mask = ProjectionMask::columns(
        builder.parquet_schema(),
        ["received_at", "ts", "agent_id", "spool_id", "batch_seq"],
    );
    let reader = builder.with_projection(mask).build().map_err(bad)?;
    let committed_ms = meta.last_modified.timestamp_millis() + clock_shift_ms;
    let mut scan = FileScan {
        event_type: event_type.to_string(),
        folder_hour,
        ..FileScan::default()
    };
    for batch in reader {
        let batch = batch.map_err(|e| OpsError::unreadable(&rel, e))?;
        let columns = AuditColumns::of(&batch).map_err(|e| OpsError::unreadable(&rel, e))?;
        let AuditColumns {
            received,
            ts,
            agent,
            spool,
            seq,
        } = columns;
        for i in 0..batch.num_rows() {
            let spool_id = match spool {
                None => SpoolId::LEGACY,
                Some(s) => s
                    .value(i)
                    .parse()
                    .map_err(|e| OpsError::unreadable(&rel, format!("row {i}: {e}")))?,
            };
            let seq = seq
                .value(i)
                .map_err(|e| OpsError::unreadable(&rel, format!("row {i}: {e}")))?;
            *scan
                .rows
                .entry((Origin::new(agent.value(i), spool_id), seq))
                .or_default() += 1;
            let received_ms = received.value(i) / 1000;
            scan.lateness.observe_ms(received_ms - ts.value(i) / 1000);
            scan.delivery_latency.observe_ms(committed_ms - received_ms);
        }
    }
    Ok(scan)
}

/// The columns of a data file the auditor reads, each of the type evd writes; a
/// file whose columns have other types is unreadable, not a panic.
struct AuditColumns<'a> {
    received: &'a PrimitiveArray<TimestampMicrosecondType>,
    ts: &'a PrimitiveArray<TimestampMicrosecondType>,
    agent: &'a StringArray,
    spool: Option<&'a StringArray>,
    seq: SeqColumn<'a>,
}

/// `batch_seq`: signed since data layout 2, unsigned before.
enum SeqColumn<'a> {
    Signed(&'a PrimitiveArray<Int64Type>),
    Unsigned(&'a PrimitiveArray<UInt64Type>),
}

impl SeqColumn<'_> {
    fn value(&self, i: usize) -> Result<u64, String> {
        match self {
            SeqColumn::Signed(a) => {
                u64::try_from(a.value(i)).map_err(|_| format!("batch_seq {} < 0", a.value(i)))
            }
            SeqColumn::Unsigned(a) => Ok(a.value(i)),
        }
    }
}

impl<'a> AuditColumns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<AuditColumns<'a>, String> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("no column {name}"))
        };
        let typed = |name: &str, what: &str| format!("column {name} is not {what}");
        let timestamps = |name: &str| {
            column(name)?
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| typed(name, "a µs timestamp"))
        };
        let seq = column("batch_seq")?;
        let seq = match (
            seq.as_primitive_opt::<Int64Type>(),
            seq.as_primitive_opt::<UInt64Type>(),
        ) {
            (Some(signed), _) => SeqColumn::Signed(signed),
            (None, Some(unsigned)) => SeqColumn::Unsigned(unsigned),
            (None, None) => return Err(typed("batch_seq", "a 64-bit integer")),
        };
        Ok(AuditColumns {
            received: timestamps("received_at")?,
            ts: timestamps("ts")?,
            agent: column("agent_id")?
                .as_string_opt::<i32>()
                .ok_or_else(|| typed("agent_id", "a string"))?,
            spool: match batch.column_by_name("spool_id") {
                None => None,
                Some(c) => Some(
                    c.as_string_opt::<i32>()
                        .ok_or_else(|| typed("spool_id", "a string"))?,
                ),
            },
            seq,
        })
    }
}

/// `<type>/date=YYYY-MM-DD/hour=HH/<file>` → that hour.
pub fn folder_hour(rel: &str) -> Option<Hour> {
    let date = rel.split('/').find_map(|p| p.strip_prefix("date="))?;
    let hour = rel.split('/').find_map(|p| p.strip_prefix("hour="))?;
    Hour::parse(&format!("{date}T{hour}"))
}
