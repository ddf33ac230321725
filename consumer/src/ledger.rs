//! Flush manifests and the delivery ledger built from them. Pure: no I/O.
//!
//! A **manifest** (JSON, `version: 1`) is written once per flush, with a create-only
//! put, under `<prefix>/_evd/manifests/<flush_id>.json`. Its existence is the commit
//! point of the flush: every batch it lists counts as delivered, and recovery finishes
//! whatever of the flush is unfinished (copying its files to their final paths).
//!
//! The **ledger** is the union of all manifests: per agent, the batch seqs already
//! committed (for dedup), and per (agent, type, hour) the events delivered (for the
//! auditor). Memory is one range set per agent plus one counter per (agent, type, hour).

use std::collections::BTreeMap;

use evd_schemas::{Hour, SeqRanges};
use serde::{Deserialize, Serialize};

pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub flush_id: String,
    pub consumer_id: String,
    pub created_at_ms: i64,
    /// Data files: written to `staging` first, visible at `final_path` after commit.
    pub files: Vec<FileEntry>,
    /// Batch seqs made durable by this flush, per agent.
    pub batches: Vec<AgentBatches>,
    /// Events delivered per (agent, type, hour): the auditor's input.
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
    /// Inclusive `[first, last]` pairs.
    pub ranges: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivered {
    pub agent_id: String,
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
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifests serialize")
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
        if m.version != MANIFEST_VERSION {
            return Err(format!(
                "manifest version {} (this build reads {MANIFEST_VERSION})",
                m.version
            ));
        }
        Ok(m)
    }
}

/// Delivered counts for one (agent, type, hour).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveredCount {
    pub events: u64,
    pub quarantined: u64,
    pub batches: SeqRanges,
}

#[derive(Debug, Default, Clone)]
pub struct Ledger {
    committed: BTreeMap<String, SeqRanges>,
    delivered: BTreeMap<(String, String, Hour), DeliveredCount>,
    manifests: usize,
}

impl Ledger {
    pub fn is_committed(&self, agent_id: &str, batch_seq: u64) -> bool {
        self.committed
            .get(agent_id)
            .is_some_and(|r| r.contains(batch_seq))
    }

    /// Adds a committed manifest. Applying the same manifest twice changes nothing
    /// for dedup; counts are only added for batches not seen before.
    pub fn apply(&mut self, m: &Manifest) {
        self.manifests += 1;
        for d in &m.delivered {
            let key = (d.agent_id.clone(), d.event_type.clone(), Hour(d.hour));
            let entry = self.delivered.entry(key).or_default();
            let batches = SeqRanges::from_ranges(d.batch_ranges.iter().copied());
            if batches.intersection_count(&entry.batches) == 0 {
                entry.events += d.events;
                entry.quarantined += d.quarantined;
                for &(a, b) in &d.batch_ranges {
                    entry.batches.insert_range(a, b);
                }
            }
        }
        for b in &m.batches {
            let set = self.committed.entry(b.agent_id.clone()).or_default();
            for &(first, last) in &b.ranges {
                set.insert_range(first, last);
            }
        }
    }

    pub fn delivered(&self) -> impl Iterator<Item = (&(String, String, Hour), &DeliveredCount)> {
        self.delivered.iter()
    }

    pub fn manifests(&self) -> usize {
        self.manifests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, agent: &str, ranges: Vec<(u64, u64)>, events: u64) -> Manifest {
        Manifest {
            version: 1,
            flush_id: id.into(),
            consumer_id: "c".into(),
            created_at_ms: 0,
            files: vec![],
            batches: vec![AgentBatches {
                agent_id: agent.into(),
                ranges: ranges.clone(),
            }],
            delivered: vec![Delivered {
                agent_id: agent.into(),
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
    fn ledger_dedups_and_counts_each_batch_once() {
        let mut l = Ledger::default();
        let m = manifest("f1", "a", vec![(1, 3)], 30);
        l.apply(&m);
        l.apply(&m);
        l.apply(&manifest("f2", "a", vec![(4, 4)], 10));
        assert!(l.is_committed("a", 2) && l.is_committed("a", 4));
        assert!(!l.is_committed("a", 5) && !l.is_committed("b", 1));
        let (_, count) = l.delivered().next().unwrap();
        assert_eq!(count.events, 40);
    }

    #[test]
    fn manifests_round_trip_and_versions_are_checked() {
        let m = manifest("f1", "a", vec![(1, 3)], 30);
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        let mut v2 = m.clone();
        v2.version = 2;
        assert!(
            Manifest::from_json(&v2.to_json())
                .unwrap_err()
                .contains("version 2")
        );
    }
}
