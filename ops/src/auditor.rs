//! The auditor's shell: feeds `audit::AuditState` from scans of the output (the audit
//! topic's reader is `audit_topic`), and closes due hours with the `closing` protocol.
//!
//! State is rebuilt at every start from the audit topic (read from the beginning) and
//! the output (data files, manifests, closed markers); the auditor persists nothing
//! else. Each data file is read once (files are immutable), manifests likewise.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt64Type};
use evd_consumer::closing::HourFile;
use evd_consumer::commit::{CommitError, Output};
use evd_consumer::layout::{self, CLOSED_MARKER};
use evd_consumer::ledger::Manifest;
use evd_schemas::clock::{Clock, SystemClock};
use evd_schemas::{Hour, Origin, Registry, SpoolId};
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::audit::{AuditState, CellState, ClosePolicy, ClosedMarker, FileScan, MarkerFile};
use crate::config::OpsConfig;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Fix the configuration the message names.
    #[error("configuration: {0}")]
    Config(String),
    /// The output could not be read or written; the loop retries on its next scan.
    #[error("output: {0}")]
    Output(String),
    /// One object is unreadable (not Parquet, a column missing, bad JSON): it is set
    /// aside and counted; everything else goes on.
    #[error("unreadable object: {0}")]
    Unreadable(String),
}

impl From<CommitError> for OpsError {
    fn from(e: CommitError) -> Self {
        OpsError::Output(e.to_string())
    }
}

impl From<object_store::Error> for OpsError {
    fn from(e: object_store::Error) -> Self {
        OpsError::Output(e.to_string())
    }
}

/// What the auditor shares with the dashboard, the metrics and `evd demo`.
pub struct Shared {
    pub state: Mutex<AuditState>,
    pub policy: ClosePolicy,
    pub clock: Arc<dyn Clock>,
    pub window_hours: usize,
    pub files_scanned: AtomicU64,
    pub rows_scanned: AtomicU64,
    pub hours_closed: AtomicU64,
    pub quarantined_batches: AtomicU64,
    pub audit_records: AtomicU64,
    pub audit_undecodable: AtomicU64,
    pub audit_unauthenticated: AtomicU64,
    pub scan_errors: AtomicU64,
    pub lock_recoveries: AtomicU64,
    pub bad_objects: AtomicU64,
    /// The audit-topic reader has read everything that was on the topic when it
    /// started (`audit::CatchUp`); nothing closes before.
    pub audit_caught_up: AtomicBool,
}

impl Shared {
    pub fn new(
        registry: &Registry,
        policy: ClosePolicy,
        clock: Arc<dyn Clock>,
        window_hours: usize,
    ) -> Arc<Shared> {
        let types = registry.types().map(|t| (t.name.clone(), t.tier));
        Arc::new(Shared {
            state: Mutex::new(AuditState::new(types)),
            policy,
            clock,
            window_hours,
            files_scanned: AtomicU64::new(0),
            rows_scanned: AtomicU64::new(0),
            hours_closed: AtomicU64::new(0),
            quarantined_batches: AtomicU64::new(0),
            audit_records: AtomicU64::new(0),
            audit_undecodable: AtomicU64::new(0),
            audit_unauthenticated: AtomicU64::new(0),
            scan_errors: AtomicU64::new(0),
            lock_recoveries: AtomicU64::new(0),
            bad_objects: AtomicU64::new(0),
            audit_caught_up: AtomicBool::new(false),
        })
    }

    /// The oldest hour of the window (`window_hours` back from now): older hours are
    /// pruned once closed, and their folders no longer listed.
    pub fn window_floor(&self) -> Hour {
        let now = Hour::from_unix_ms(self.clock.now_ms());
        Hour(
            now.0
                .saturating_sub(self.window_hours.min(u32::MAX as usize) as u32),
        )
    }

    /// Lets hours close: the audit topic has been read up to where it stood at start.
    pub fn mark_audit_caught_up(&self) {
        self.audit_caught_up.store(true, Ordering::Relaxed);
    }

    /// The state, locked. A task that panicked while holding the lock (a bug) does not
    /// take the monitor with it: readers (HTTP, metrics) never mutate, so the poison
    /// is cleared and counted in `evd_ops_lock_recoveries_total`, which alerts; a
    /// restart rebuilds the state from the audit topic and the output if in doubt.
    pub fn state(&self) -> std::sync::MutexGuard<'_, AuditState> {
        self.state.lock().unwrap_or_else(|poisoned| {
            self.lock_recoveries.fetch_add(1, Ordering::Relaxed);
            self.state.clear_poison();
            poisoned.into_inner()
        })
    }
}

/// Scans the output and closes due hours every `scan_interval_ms`, until `stop`.
pub async fn scan_and_close(
    config: &OpsConfig,
    output: &Output,
    shared: Arc<Shared>,
    stop: evd_runtime::Stop,
) {
    let mut seen = Seen::default();
    let mut tick = tokio::time::interval(Duration::from_millis(config.scan_interval_ms));
    let mut alarms_logged = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        log_identity_alarms(&shared, &mut alarms_logged);
        let floor = shared.window_floor();
        shared.state().prune(floor);
        seen.prune(floor);
        if let Err(e) = scan(output, &shared, &mut seen).await {
            shared.scan_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("scan: {e} (retrying)");
            continue;
        }
        if let Err(e) = close_due(config, output, &shared, &mut seen).await {
            shared.scan_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("closing: {e} (retrying)");
        }
    }
}

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
    /// Records an unreadable object once: counted in `evd_ops_bad_objects_total` and
    /// logged; later scans skip it.
    fn set_aside(&mut self, shared: &Shared, rel: &str, e: &OpsError) {
        if self.bad.insert(rel.to_string()) {
            shared.bad_objects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("BAD OBJECT {rel} skipped (its rows count as missing): {e}");
        }
    }

    /// Passes `taken` on, except that an unreadable object is set aside instead.
    fn set_aside_unreadable(
        &mut self,
        shared: &Shared,
        rel: &str,
        taken: Result<(), OpsError>,
    ) -> Result<(), OpsError> {
        match taken {
            Err(e @ OpsError::Unreadable(_)) => {
                self.set_aside(shared, rel, &e);
                Ok(())
            }
            other => other,
        }
    }

    /// Forgets objects in hour folders before `floor` (never listed again).
    fn prune(&mut self, floor: Hour) {
        let keep = |rel: &String| folder_hour(rel).is_none_or(|h| h >= floor);
        self.files.retain(keep);
        self.markers.retain(keep);
        self.bad.retain(keep);
    }

    /// Whether `rel` was taken in already or set aside.
    fn known(&self, rel: &str) -> bool {
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
                seen.set_aside(shared, &rel, &OpsError::Unreadable(format!("{rel}: {e}")));
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
async fn take_file(
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
async fn take_marker(
    output: &Output,
    shared: &Shared,
    seen: &mut Seen,
    rel: &str,
) -> Result<(), OpsError> {
    let bytes = output.store.get(&output.path(rel)).await?.bytes().await?;
    let marker =
        ClosedMarker::from_json(&bytes).map_err(|e| OpsError::Unreadable(format!("{rel}: {e}")))?;
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
    let folder_hour = folder_hour(&rel)
        .ok_or_else(|| OpsError::Unreadable(format!("{rel}: not in an hour folder")))?;
    let bytes = output.store.get(&meta.location).await?.bytes().await?;
    let bad = |e: parquet::errors::ParquetError| OpsError::Unreadable(format!("{rel}: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(bad)?;
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
        let batch = batch.map_err(|e| OpsError::Unreadable(format!("{rel}: {e}")))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| OpsError::Unreadable(format!("{rel}: no column {name}")))
        };
        let received = column("received_at")?.as_primitive::<TimestampMicrosecondType>();
        let ts = column("ts")?.as_primitive::<TimestampMicrosecondType>();
        let agent = column("agent_id")?.as_string::<i32>();
        let spool = batch
            .column_by_name("spool_id")
            .map(|c| c.as_string::<i32>());
        let seq = column("batch_seq")?.as_primitive::<UInt64Type>();
        for i in 0..batch.num_rows() {
            let spool_id = match spool {
                None => SpoolId::LEGACY,
                Some(s) => s
                    .value(i)
                    .parse()
                    .map_err(|e| OpsError::Unreadable(format!("{rel}: row {i}: {e}")))?,
            };
            *scan
                .rows
                .entry((Origin::new(agent.value(i), spool_id), seq.value(i)))
                .or_default() += 1;
            let received_ms = received.value(i) / 1000;
            scan.lateness.observe_ms(received_ms - ts.value(i) / 1000);
            scan.delivery_latency.observe_ms(committed_ms - received_ms);
        }
    }
    Ok(scan)
}

/// `<type>/date=YYYY-MM-DD/hour=HH/<file>` → that hour.
pub fn folder_hour(rel: &str) -> Option<Hour> {
    let date = rel.split('/').find_map(|p| p.strip_prefix("date="))?;
    let hour = rel.split('/').find_map(|p| p.strip_prefix("hour="))?;
    Hour::parse(&format!("{date}T{hour}"))
}

/// Closes every due hour: seal (no file joins it after), take any file the seal
/// finished into the state, write the marker.
pub async fn close_due(
    config: &OpsConfig,
    output: &Output,
    shared: &Shared,
    seen: &mut Seen,
) -> Result<(), OpsError> {
    if !shared.audit_caught_up.load(Ordering::Relaxed) {
        return Ok(()); // the state may lack records already written: close nothing
    }
    let now = shared.clock.now_ms();
    let due = shared.state().due(now, &shared.policy, shared.window_hours);
    for (ty, hour, _) in due {
        let files = output.seal_hour(&ty, hour, &config.auditor_id, now).await?;
        // The seal may have finished flushes: take in this hour's new files only.
        for file in &files {
            if !seen.known(&file.path) {
                let meta = output.store.head(&output.path(&file.path)).await?;
                let taken = take_file(output, shared, seen, &ty, &meta).await;
                seen.set_aside_unreadable(shared, &file.path, taken)?;
            }
        }
        let (marker, tier) = {
            let state = shared.state();
            let report = state.report(&ty, hour, now, &shared.policy);
            let tier = state.types().find(|(t, _)| *t == ty).map(|(_, t)| t);
            let Some(tier) = tier else { continue };
            // Due before the seal, so still due (the seal only adds rows).
            let close = AuditState::close_state(&report, hour, now, &shared.policy, tier)
                .unwrap_or(CellState::Incomplete);
            let files = files
                .into_iter()
                .map(|HourFile { path, bytes }| MarkerFile { path, bytes })
                .collect();
            (
                AuditState::marker(&report, close, files, &config.auditor_id, now),
                tier,
            )
        };
        let json = serde_json::to_vec_pretty(&marker).expect("markers serialize");
        if !output.write_closed_marker(&ty, hour, json).await? {
            // Closed before (by an earlier run): the existing marker stands.
            let rel = layout::closed_marker(&ty, hour);
            take_marker(output, shared, seen, &rel).await?;
            continue;
        }
        log_close(&marker, tier.as_str());
        seen.markers.insert(layout::closed_marker(&ty, hour));
        shared.state().on_closed(marker);
        shared.hours_closed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Logs each identity alarm once, when it first appears or changes.
fn log_identity_alarms(shared: &Shared, logged: &mut Vec<crate::audit::IdentityAlarm>) {
    let alarms = shared.state().identity_alarms();
    for a in alarms.iter().filter(|a| !logged.contains(a)) {
        tracing::warn!(
            "AGENT IDENTITY {}: spool incarnations live at once: {:?}; batch seq went backwards {} times \
             (two hosts share this agent id, or a spool was copied or restored)",
            a.agent_id,
            a.concurrent_spools
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            a.seq_regressions
        );
    }
    *logged = alarms;
}

fn log_close(m: &ClosedMarker, tier: &str) {
    tracing::info!(
        "closed {} {} ({tier}): {} — published {}, delivered {}, quarantined {}, missing {}, {} files",
        m.event_type,
        m.hour,
        m.state.as_str(),
        m.published,
        m.delivered,
        m.quarantined,
        m.missing,
        m.files.len()
    );
    for a in m.agents.iter().filter(|a| a.missing > 0) {
        tracing::error!(
            "DATA LOSS {} {}: host {} (spool {}) missing {} events in batch seqs {:?}",
            m.event_type,
            m.hour,
            a.agent_id,
            a.spool_id,
            a.missing,
            a.missing_batch_seqs
        );
    }
    if m.state == CellState::Unverified {
        for a in m.agents.iter().filter(|a| !a.reported) {
            tracing::warn!(
                "UNVERIFIED {} {}: host {} (spool {}) was alive in the hour and never reported it",
                m.event_type,
                m.hour,
                a.agent_id,
                a.spool_id
            );
        }
    }
}
