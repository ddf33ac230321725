//! The auditor's shell: feeds `audit::AuditState` from scans of the output (the audit
//! topic's reader is `audit_topic`), and closes due hours with the `closing` protocol.
//!
//! State is rebuilt at every start from the audit topic (read from the beginning) and
//! the output (data files, manifests, closed markers); the auditor persists nothing
//! else. Each data file is read once (files are immutable), manifests likewise.

use evd_runtime::{BoxError, error_chain};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evd_consumer::closing::HourFile;
use evd_consumer::commit::{CommitError, Output};
use evd_consumer::layout;
use evd_schemas::clock::Clock;
use evd_schemas::{Hour, Registry};
use object_store::ObjectStoreExt;

use crate::audit::{AuditState, CellState, ClosePolicy, ClosedMarker, MarkerFile};
use crate::auditor_scan::take_marker;
pub use crate::auditor_scan::{Seen, folder_hour, scan};
use crate::config::OpsConfig;

/// What went wrong in the auditor, by what happens next. `what` says what failed;
/// `source`, when there is one, is the error underneath.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Fix the configuration the message names.
    #[error("configuration: {what}")]
    Config {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The output could not be read or written; the loop retries on its next scan.
    #[error("output: {what}")]
    Output {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    /// One object is unreadable (not Parquet, a column missing, bad JSON): it is set
    /// aside and counted; everything else goes on.
    #[error("unreadable object: {what}")]
    Unreadable {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl OpsError {
    pub(crate) fn config(what: impl Into<String>, source: impl Into<BoxError>) -> OpsError {
        let (what, source) = (what.into(), Some(source.into()));
        OpsError::Config { what, source }
    }

    /// `rel` (an object's name under the output) cannot be read for `source`.
    pub(crate) fn unreadable(rel: &str, source: impl Into<BoxError>) -> OpsError {
        let (what, source) = (rel.to_string(), Some(source.into()));
        OpsError::Unreadable { what, source }
    }
}

impl From<CommitError> for OpsError {
    fn from(e: CommitError) -> Self {
        let what = "the commit protocol's objects".to_string();
        OpsError::Output {
            what,
            source: Some(e.into()),
        }
    }
}

impl From<object_store::Error> for OpsError {
    fn from(e: object_store::Error) -> Self {
        let what = "object store".to_string();
        OpsError::Output {
            what,
            source: Some(e.into()),
        }
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
    /// Closed hours written to the closed-hours table (`[combine]`).
    pub hours_combined: AtomicU64,
    /// Closed hours whose files cannot go into one (columns differ, or not Parquet).
    pub hours_not_combined: AtomicU64,
    /// Attempts to combine an hour that failed on the store (retried later).
    pub combine_errors: AtomicU64,
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
            hours_combined: AtomicU64::new(0),
            hours_not_combined: AtomicU64::new(0),
            combine_errors: AtomicU64::new(0),
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
            tracing::warn!("scan: {} (retrying)", error_chain(&e));
            continue;
        }
        if let Err(e) = close_due(config, output, &shared, &mut seen).await {
            shared.scan_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("closing: {} (retrying)", error_chain(&e));
        }
    }
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
                let taken = crate::auditor_scan::take_file(output, shared, seen, &ty, &meta).await;
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
        seen.note_marker(layout::closed_marker(&ty, hour));
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
