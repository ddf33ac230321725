//! What the auditor reports and persists: cells (`HourReport`), their closed markers
//! (`_CLOSED.json`), hosts and identity alarms, and what one file scan found.

use std::collections::BTreeMap;

use evd_schemas::{Hour, Origin, SpoolId};
use serde::{Deserialize, Serialize};

use super::CellState;
use crate::audit::histogram::Histogram;

/// One agent incarnation's share of one (type, hour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHour {
    pub agent_id: String,
    /// The spool incarnation (absent in version 1 markers: the legacy one).
    #[serde(default)]
    pub spool_id: SpoolId,
    pub published: u64,
    pub delivered: u64,
    pub quarantined: u64,
    pub missing: u64,
    /// Batches with rows missing (inclusive ranges); empty when nothing is missing.
    pub missing_batch_seqs: Vec<(u64, u64)>,
    /// The agent has announced every batch of this hour (its heartbeat says so).
    pub reported: bool,
}

/// Everything known about one (type, hour).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HourReport {
    pub event_type: String,
    pub tier: &'static str,
    pub hour: String,
    pub hour_number: u32,
    pub state: CellState,
    pub published: u64,
    pub delivered: u64,
    pub quarantined: u64,
    pub missing: u64,
    /// Rows beyond what was published (a consumer bug if ever > 0).
    pub duplicates: u64,
    /// Rows of this hour's batches that landed in a later hour's folder.
    pub skew: u64,
    pub agents: Vec<AgentHour>,
    /// Set once closed: the marker as written.
    pub closed: Option<ClosedMarker>,
    pub lateness: Histogram,
    pub delivery_latency: Histogram,
}

impl HourReport {
    /// Events lost for good: missing in an hour closed incomplete.
    pub fn open_loss(&self) -> bool {
        self.state == CellState::Incomplete && self.missing > 0
    }

    /// Closed without proof of completeness: hosts alive in it never reported it.
    pub fn unverified(&self) -> bool {
        self.state == CellState::Unverified
    }

    /// Agent ids alive in the hour that have not reported it (yet).
    pub fn unreported_agents(&self) -> Vec<String> {
        self.agents
            .iter()
            .filter(|a| !a.reported)
            .map(|a| a.agent_id.clone())
            .collect()
    }
}

/// `_CLOSED.json` in an hour folder (version 2; version 1 had no spool ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosedMarker {
    pub version: u32,
    pub event_type: String,
    pub hour: String,
    pub hour_number: u32,
    pub closed_at_ms: i64,
    pub closed_by: String,
    pub state: CellState,
    pub published: u64,
    pub delivered: u64,
    pub quarantined: u64,
    pub missing: u64,
    pub duplicates: u64,
    /// The hour's data files, relative to the output prefix: the hour, for good.
    pub files: Vec<MarkerFile>,
    pub agents: Vec<AgentHour>,
}

/// Version 3 added the `unverified` state; 1 and 2 are read too.
pub const MARKER_VERSION: u32 = 3;
/// Marker versions this build reads; others are set aside as unreadable.
pub const MARKER_READS: std::ops::RangeInclusive<u32> = 1..=MARKER_VERSION;

impl ClosedMarker {
    /// Parses a `_CLOSED.json`: a version this build reads (`MARKER_READS`) and an hour
    /// in range, or an error naming what is wrong.
    pub fn from_json(bytes: &[u8]) -> Result<ClosedMarker, String> {
        let m: ClosedMarker =
            serde_json::from_slice(bytes).map_err(|e| format!("closed marker: {e}"))?;
        if !MARKER_READS.contains(&m.version) {
            return Err(format!(
                "marker version {} (this build reads {MARKER_READS:?})",
                m.version
            ));
        }
        if Hour::checked(m.hour_number).is_none() {
            return Err(format!("hour {} out of range", m.hour_number));
        }
        Ok(m)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkerFile {
    pub path: String,
    pub bytes: u64,
}

/// What one scan of one data file found.
#[derive(Debug, Clone, Default)]
pub struct FileScan {
    pub event_type: String,
    /// The hour folder the file is in.
    pub folder_hour: Hour,
    /// Rows per (agent incarnation, batch seq).
    pub rows: BTreeMap<(Origin, u64), u64>,
    /// Receive time − service `ts`.
    pub lateness: Histogram,
    /// Commit time (the file's last-modified) − receive time.
    pub delivery_latency: Histogram,
}

/// A host (one incarnation of an agent id) as its heartbeats describe it.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub agent_id: String,
    pub spool_id: SpoolId,
    pub first_heartbeat_ms: i64,
    pub last_heartbeat_ms: i64,
    pub spool_bytes: u64,
    pub unacked_batches: u64,
    pub oldest_unacked_ms: i64,
    pub next_batch_seq: u64,
    pub reported_before: String,
    pub batches_announced: u64,
    /// Heartbeats whose `next_batch_seq` was below an earlier one's: the spool went
    /// back in time (restored from an old copy), so seqs may be reused.
    pub seq_regressions: u64,
}

/// An agent id whose identity is in doubt (`docs/wire-format.md` §3, identity alarms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityAlarm {
    pub agent_id: String,
    /// Incarnations whose heartbeat periods overlap another's: live at once.
    pub concurrent_spools: Vec<SpoolId>,
    /// Heartbeats, over all incarnations, whose batch seq went backwards.
    pub seq_regressions: u64,
}
