//! Flush manifests and the delivery ledger built from them. Pure: no I/O.
//!
//! A **manifest** (JSON, `version: 2`) is written once per flush, with a create-only
//! put, under `<prefix>/_evd/manifests/<flush_id>.json`. Its existence is the commit
//! point of the flush: every batch it lists counts as delivered, and recovery finishes
//! whatever of the flush is unfinished (copying its files to their final paths).
//!
//! The **ledger** is the union of all manifests (and of the latest ledger snapshot,
//! see `compaction`): per agent and spool incarnation, the batch seqs already
//! committed, for dedup. Memory is one range set per incarnation.
//!
//! Version 2 of both documents added `spool_id` (`docs/wire-format.md` §0); version 1
//! documents are read with every batch in the legacy incarnation.

use std::collections::BTreeMap;

use evd_schemas::{Origin, SeqRanges, SpoolId};
use serde::{Deserialize, Serialize};

pub const MANIFEST_VERSION: u32 = 2;
/// Versions of manifests and snapshots this build reads.
const READS: [u32; 2] = [1, 2];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub flush_id: String,
    pub consumer_id: String,
    pub created_at_ms: i64,
    /// Data files: written to `staging` first, visible at `final_path` after commit.
    pub files: Vec<FileEntry>,
    /// Batch seqs made durable by this flush, per agent and spool incarnation.
    pub batches: Vec<AgentBatches>,
    /// Events delivered per (agent, spool, type, hour): the auditor's input.
    pub delivered: Vec<Delivered>,
    /// Quarantine objects written by this flush.
    pub quarantine: Vec<String>,
    /// Kafka positions after this flush (a hint: the ledger, not offsets, dedups).
    pub offsets: Vec<OffsetEntry>,
    /// Set on a manifest the auditor created to abort a flush that had not committed
    /// when it closed an hour (see `closing`). An aborted manifest lists nothing; its
    /// consumer retries the flush under a new id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aborted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub staging: String,
    pub final_path: String,
    pub event_type: String,
    pub hour: u32,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentBatches {
    pub agent_id: String,
    /// Absent in version 1 documents: the legacy incarnation.
    #[serde(default)]
    pub spool_id: SpoolId,
    /// Inclusive `[first, last]` pairs.
    pub ranges: Vec<(u64, u64)>,
}

impl AgentBatches {
    pub fn origin(&self) -> Origin {
        Origin::new(self.agent_id.clone(), self.spool_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivered {
    pub agent_id: String,
    /// Absent in version 1 documents: the legacy incarnation.
    #[serde(default)]
    pub spool_id: SpoolId,
    pub event_type: String,
    pub hour: u32,
    pub events: u64,
    /// Events of these batches quarantined instead of delivered.
    #[serde(default)]
    pub quarantined: u64,
    pub batch_ranges: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetEntry {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

impl Manifest {
    /// A manifest of data files only: no batches, deliveries, quarantine or offsets
    /// (a quarantine replay's, or a test's or bench's flush).
    pub fn of_files(
        flush_id: &str,
        consumer_id: &str,
        created_at_ms: i64,
        files: Vec<FileEntry>,
    ) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            flush_id: flush_id.into(),
            consumer_id: consumer_id.into(),
            created_at_ms,
            files,
            batches: vec![],
            delivered: vec![],
            quarantine: vec![],
            offsets: vec![],
            aborted: false,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifests serialize")
    }

    /// Whether `self` (found in the store) is an earlier attempt of the flush `other`:
    /// the same flush of the same consumer, with the same batches and staged files.
    /// Only the hours files moved to may differ (a closing intent seen in between).
    pub fn is_retry_of(&self, other: &Manifest) -> bool {
        let staged = |m: &Manifest| {
            m.files
                .iter()
                .map(|f| f.staging.clone())
                .collect::<Vec<_>>()
        };
        !self.aborted
            && self.flush_id == other.flush_id
            && self.consumer_id == other.consumer_id
            && self.created_at_ms == other.created_at_ms
            && self.batches == other.batches
            && self.offsets == other.offsets
            && staged(self) == staged(other)
    }

    /// The manifest that takes a flush id away from a flush not yet committed.
    pub fn aborted(flush_id: &str, by: &str, at_ms: i64) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            flush_id: flush_id.to_string(),
            consumer_id: by.to_string(),
            created_at_ms: at_ms,
            files: vec![],
            batches: vec![],
            delivered: vec![],
            quarantine: vec![],
            offsets: vec![],
            aborted: true,
        }
    }

    pub fn from_json(bytes: &[u8]) -> Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("manifest: {e}"))?;
        if !READS.contains(&m.version) {
            return Err(format!(
                "manifest version {} (this build reads {READS:?})",
                m.version
            ));
        }
        Ok(m)
    }
}

/// The ledger: every batch seq committed, per agent and spool incarnation. Memory is
/// one range set per incarnation (seqs are dense, so a few ranges each); nothing is
/// kept per hour. Delivered counts per (agent, type, hour) stay in the manifests, for
/// the record and the auditor.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ledger {
    committed: BTreeMap<Origin, SeqRanges>,
    manifests: usize,
    corrupt_manifests: usize,
    /// Flush ids of the manifests applied (not those folded into a snapshot).
    applied: std::collections::BTreeSet<String>,
}

impl Ledger {
    pub fn is_committed(&self, origin: &Origin, batch_seq: u64) -> bool {
        self.committed
            .get(origin)
            .is_some_and(|r| r.contains(batch_seq))
    }

    /// Adds a committed manifest. Idempotent: applying a manifest twice, or one a
    /// snapshot already holds, changes nothing.
    pub fn apply(&mut self, m: &Manifest) {
        self.manifests += 1;
        self.applied.insert(m.flush_id.clone());
        for b in &m.batches {
            let set = self.committed.entry(b.origin()).or_default();
            for &(first, last) in &b.ranges {
                set.insert_range(first, last);
            }
        }
    }

    /// Manifests applied since the ledger was built (from a snapshot or from nothing).
    pub fn manifests(&self) -> usize {
        self.manifests
    }

    /// Whether the manifest of `flush_id` was applied to this ledger.
    pub fn has_applied(&self, flush_id: &str) -> bool {
        self.applied.contains(flush_id)
    }

    /// The first batch `m` lists that this ledger already holds committed.
    pub fn first_committed(&self, m: &Manifest) -> Option<(Origin, u64)> {
        m.batches.iter().find_map(|b| {
            let set = self.committed.get(&b.origin())?;
            b.ranges
                .iter()
                .find_map(|&(first, last)| {
                    set.iter()
                        .find(|&(a, z)| z >= first && a <= last)
                        .map(|(a, _)| a.max(first))
                })
                .map(|seq| (b.origin(), seq))
        })
    }

    /// A live manifest that did not parse was set aside while this ledger was built.
    pub fn note_corrupt_manifest(&mut self) {
        self.corrupt_manifests += 1;
    }

    /// Manifests set aside as corrupt while this ledger was built.
    pub fn corrupt_manifests(&self) -> usize {
        self.corrupt_manifests
    }

    pub fn snapshot(&self, generation: u64, by: &str, at_ms: i64) -> LedgerSnapshot {
        LedgerSnapshot {
            version: SNAPSHOT_VERSION,
            generation,
            created_by: by.to_string(),
            created_at_ms: at_ms,
            committed: self
                .committed
                .iter()
                .map(|(origin, set)| AgentBatches {
                    agent_id: origin.agent_id.clone(),
                    spool_id: origin.spool_id,
                    ranges: set.iter().collect(),
                })
                .collect(),
        }
    }

    pub fn from_snapshot(s: &LedgerSnapshot) -> Ledger {
        let mut ledger = Ledger::default();
        ledger.absorb(s);
        ledger
    }

    /// Adds everything a snapshot holds (a union: idempotent).
    pub fn absorb(&mut self, s: &LedgerSnapshot) {
        for b in &s.committed {
            let set = self.committed.entry(b.origin()).or_default();
            for &(first, last) in &b.ranges {
                set.insert_range(first, last);
            }
        }
    }
}

pub const SNAPSHOT_VERSION: u32 = 2;

/// `_evd/ledger/<generation>.json`: the ledger as of the manifests folded into it
/// (see `compaction`). Each generation holds everything the one before held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSnapshot {
    pub version: u32,
    pub generation: u64,
    pub created_by: String,
    pub created_at_ms: i64,
    pub committed: Vec<AgentBatches>,
}

impl LedgerSnapshot {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("snapshots serialize")
    }

    pub fn from_json(bytes: &[u8]) -> Result<LedgerSnapshot, String> {
        let s: LedgerSnapshot =
            serde_json::from_slice(bytes).map_err(|e| format!("ledger snapshot: {e}"))?;
        if !READS.contains(&s.version) {
            return Err(format!(
                "ledger snapshot version {} (this build reads {READS:?})",
                s.version
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(agent: &str, spool: u64) -> Origin {
        Origin::new(agent, SpoolId(spool))
    }

    fn manifest(id: &str, agent: &str, ranges: Vec<(u64, u64)>, events: u64) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            flush_id: id.into(),
            consumer_id: "c".into(),
            created_at_ms: 0,
            files: vec![],
            batches: vec![AgentBatches {
                agent_id: agent.into(),
                spool_id: SpoolId(1),
                ranges: ranges.clone(),
            }],
            delivered: vec![Delivered {
                agent_id: agent.into(),
                spool_id: SpoolId(1),
                event_type: "T".into(),
                hour: 1,
                events,
                quarantined: 0,
                batch_ranges: ranges,
            }],
            quarantine: vec![],
            offsets: vec![],
            aborted: false,
        }
    }

    #[test]
    fn ledger_dedups_and_survives_a_snapshot() {
        let mut l = Ledger::default();
        let m = manifest("f1", "a", vec![(1, 3)], 30);
        l.apply(&m);
        l.apply(&m);
        l.apply(&manifest("f2", "a", vec![(4, 4)], 10));
        let a = origin("a", 1);
        assert!(l.is_committed(&a, 2) && l.is_committed(&a, 4));
        assert!(!l.is_committed(&a, 5) && !l.is_committed(&origin("b", 1), 1));
        let snap = l.snapshot(1, "c", 0);
        let back = Ledger::from_snapshot(&LedgerSnapshot::from_json(&snap.to_json()).unwrap());
        assert!(back.is_committed(&a, 1) && back.is_committed(&a, 4));
        assert!(!back.is_committed(&a, 5));
    }

    /// A spool wiped and re-created under the same agent id starts again at seq 1: the
    /// new incarnation's batches are not duplicates of the old one's.
    #[test]
    fn another_incarnation_of_an_agent_is_not_a_duplicate() {
        let mut l = Ledger::default();
        l.apply(&manifest("f1", "a", vec![(1, 3)], 30));
        assert!(l.is_committed(&origin("a", 1), 1));
        assert!(!l.is_committed(&origin("a", 2), 1));
        assert!(!l.is_committed(&origin("a", 0), 1));
    }

    #[test]
    fn version_1_documents_are_read_as_the_legacy_incarnation() {
        let v1 = br#"{"version":1,"flush_id":"f","consumer_id":"c","created_at_ms":0,"files":[],
            "batches":[{"agent_id":"a","ranges":[[1,2]]}],
            "delivered":[{"agent_id":"a","event_type":"T","hour":1,"events":3,"batch_ranges":[[1,2]]}],
            "quarantine":[],"offsets":[]}"#;
        let m = Manifest::from_json(v1).unwrap();
        assert_eq!(m.batches[0].spool_id, SpoolId::LEGACY);
        assert_eq!(m.delivered[0].spool_id, SpoolId::LEGACY);
        let mut l = Ledger::default();
        l.apply(&m);
        assert!(l.is_committed(&origin("a", 0), 2));
        let snap = br#"{"version":1,"generation":1,"created_by":"c","created_at_ms":0,
            "committed":[{"agent_id":"a","ranges":[[1,9]]}]}"#;
        let l = Ledger::from_snapshot(&LedgerSnapshot::from_json(snap).unwrap());
        assert!(l.is_committed(&origin("a", 0), 9));
    }

    #[test]
    fn manifests_round_trip_and_versions_are_checked() {
        let m = manifest("f1", "a", vec![(1, 3)], 30);
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        let mut v3 = m.clone();
        v3.version = 3;
        assert!(
            Manifest::from_json(&v3.to_json())
                .unwrap_err()
                .contains("version 3")
        );
    }
}
