//! Hosts as their heartbeats describe them, and identity alarms (two live spools of
//! one agent id, a batch seq going backwards).

use std::collections::{BTreeMap, BTreeSet};

use evd_schemas::SpoolId;

use super::{AuditState, Host, HostReport, IdentityAlarm};

impl AuditState {
    pub fn hosts(&self) -> Vec<HostReport> {
        self.hosts
            .iter()
            .map(|(origin, h)| {
                let hb = h.heartbeat.unwrap_or_default();
                HostReport {
                    agent_id: origin.agent_id.clone(),
                    spool_id: origin.spool_id,
                    first_heartbeat_ms: h.first_heartbeat_ms.unwrap_or_default(),
                    last_heartbeat_ms: hb.0,
                    spool_bytes: hb.1.spool_bytes,
                    unacked_batches: hb.1.unacked_batches,
                    oldest_unacked_ms: hb.1.oldest_unacked_ms,
                    next_batch_seq: hb.1.next_batch_seq,
                    reported_before: hb.1.final_before_hour.to_string(),
                    batches_announced: h.batches,
                    seq_regressions: h.seq_regressions,
                }
            })
            .collect()
    }

    /// Agent ids with two incarnations live at once (their first-to-last heartbeat
    /// periods overlap) or an incarnation whose batch seq went backwards. A spool
    /// re-created after a wipe starts after its predecessor's last heartbeat: no alarm.
    pub fn identity_alarms(&self) -> Vec<IdentityAlarm> {
        let mut by_agent: BTreeMap<&str, Vec<(SpoolId, &Host)>> = BTreeMap::new();
        for (origin, host) in &self.hosts {
            by_agent
                .entry(origin.agent_id.as_str())
                .or_default()
                .push((origin.spool_id, host));
        }
        let period = |h: &Host| Some((h.first_heartbeat_ms?, h.heartbeat.as_ref()?.0));
        let mut alarms = Vec::new();
        for (agent_id, spools) in by_agent {
            let mut concurrent = BTreeSet::new();
            for (i, (a, ha)) in spools.iter().enumerate() {
                for (b, hb) in &spools[i + 1..] {
                    if let (Some((a0, a1)), Some((b0, b1))) = (period(ha), period(hb))
                        && a0 <= b1
                        && b0 <= a1
                    {
                        concurrent.insert(*a);
                        concurrent.insert(*b);
                    }
                }
            }
            let seq_regressions = spools.iter().map(|(_, h)| h.seq_regressions).sum();
            if !concurrent.is_empty() || seq_regressions > 0 {
                alarms.push(IdentityAlarm {
                    agent_id: agent_id.to_string(),
                    concurrent_spools: concurrent.into_iter().collect(),
                    seq_regressions,
                });
            }
        }
        alarms
    }
}
