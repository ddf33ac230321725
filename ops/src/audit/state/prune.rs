//! Keeping the auditor's state bounded: hours before the window that every type has
//! closed are forgotten, and inputs about them ignored from then on.

use std::collections::{BTreeMap, BTreeSet};

use evd_schemas::Hour;

use super::{AuditState, StateSize};

impl AuditState {
    /// Forgets every hour before `floor` that every type has closed, and ignores
    /// later inputs about hours before `floor` (an agent's retransmitted announcement,
    /// a late file of a pruned hour). Hours before `floor` not yet closed stay until
    /// they close. Hosts with no hour left and no heartbeat since `floor` go too.
    pub fn prune(&mut self, floor: Hour) {
        self.floor = self.floor.max(floor);
        let floor = self.floor;
        let candidates: BTreeSet<Hour> = self
            .by_hour
            .keys()
            .map(|(_, h)| *h)
            .chain(self.closed.keys().map(|(_, h)| *h))
            .chain(self.hosts.values().flat_map(|h| h.alive.iter().copied()))
            .filter(|h| *h < floor)
            .collect();
        let mut closed_types: BTreeMap<Hour, usize> = BTreeMap::new();
        for (_, h) in self.closed.keys() {
            *closed_types.entry(*h).or_default() += 1;
        }
        let types = self.tiers.len();
        let old: BTreeSet<Hour> = candidates
            .into_iter()
            .filter(|h| closed_types.get(h).copied().unwrap_or(0) >= types)
            .collect();
        if old.is_empty() {
            return;
        }
        let mut gone = Vec::new();
        self.by_hour.retain(|(_, hour), per_origin| {
            let keep = !old.contains(hour);
            if !keep {
                for (origin, cell) in per_origin.iter() {
                    gone.extend(cell.seqs.iter().map(|s| (origin.clone(), *s)));
                }
            }
            keep
        });
        for key in &gone {
            self.batches.remove(key);
            self.landed.remove(key);
        }
        // Rows of batches never announced, landed only in pruned hours.
        self.landed
            .retain(|_, landed| landed.per_hour().iter().any(|(h, _)| !old.contains(h)));
        // Settled seqs of incarnations with no cell left: inputs about them are from
        // before the floor now, and ignored.
        let in_cells: std::collections::HashSet<&super::OriginRef> =
            self.by_hour.values().flat_map(|m| m.keys()).collect();
        self.settled.retain(|origin, _| in_cells.contains(origin));
        // Incarnations no per-batch key names any more.
        self.origins
            .retain(|origin| std::sync::Arc::strong_count(origin) > 1);
        self.quarantined.retain(|(_, _, h), _| !old.contains(h));
        self.closed.retain(|(_, h), _| !old.contains(h));
        self.lateness.retain(|(_, h), _| !old.contains(h));
        self.latency.retain(|(_, h), _| !old.contains(h));
        let floor_ms = floor.start_ms();
        self.hosts.retain(|_, host| {
            host.alive.retain(|h| !old.contains(h));
            !host.alive.is_empty()
                || host
                    .heartbeat
                    .as_ref()
                    .is_some_and(|(at, _)| *at >= floor_ms)
        });
    }

    pub fn size(&self) -> StateSize {
        StateSize {
            batches: self.batches.len(),
            landed: self.landed.len(),
            cells: self.by_hour.len(),
            hosts: self.hosts.len(),
            closed: self.closed.len(),
        }
    }
}
