//! The auditor's state machine. Pure: inputs are decoded audit records, scans of data
//! files and manifests, and closed markers; time is a parameter.
//!
//! Independence from the consumer: *delivered* is counted from the rows found in the
//! Parquet files (per agent and batch seq), never from the consumer's manifests, so a
//! consumer that loses or duplicates rows and still claims success is caught. Only the
//! quarantine counts come from manifests (quarantined events have no rows to count).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use evd_schemas::wire::audit::{AuditBody, AuditRecord, Heartbeat};
use evd_schemas::{Hour, Origin, SeqRanges, Tier};
use serde::{Deserialize, Serialize};

use super::histogram::Histogram;

mod hosts;
mod landed;
mod prune;
mod reports;
mod settle;

use landed::{Landed, OriginRef, intern};
use settle::{CellBatches, Pending};

pub use reports::{
    AgentHour, ClosedMarker, FileScan, HostReport, HourReport, IdentityAlarm, MARKER_VERSION,
    MarkerFile,
};

/// When hours turn late and when they close at the latest, per tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosePolicy {
    /// An open hour this long past its end shows as late.
    pub late_after_ms: i64,
    pub deadline_high_ms: i64,
    pub deadline_normal_ms: i64,
    pub deadline_low_ms: i64,
    /// A host silent this long is decommissioned: no per-host metrics, no alerts.
    pub host_retire_after_ms: i64,
}

impl ClosePolicy {
    /// After this long past its end an hour closes even if incomplete.
    pub fn deadline_ms(&self, tier: Tier) -> i64 {
        match tier {
            Tier::High => self.deadline_high_ms,
            Tier::Normal => self.deadline_normal_ms,
            Tier::Low => self.deadline_low_ms,
        }
    }
}

/// A cell's colour on the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellState {
    /// Not yet closed, within `late_after_ms` of its end.
    Open,
    /// Not yet closed, later than `late_after_ms` after its end.
    Late,
    /// Closed with every published event delivered.
    Complete,
    /// Closed with nothing missing, but some events quarantined.
    Quarantine,
    /// Closed at its deadline with events missing: data loss.
    Incomplete,
    /// Closed at its deadline with nothing announced missing, but a host alive in the
    /// hour never reported it (no heartbeat with `final_before_hour` past it): what it
    /// may have sealed is unknown. Alerts like a loss until someone looks.
    Unverified,
}

impl CellState {
    pub fn as_str(self) -> &'static str {
        match self {
            CellState::Open => "open",
            CellState::Late => "late",
            CellState::Complete => "complete",
            CellState::Quarantine => "quarantine",
            CellState::Incomplete => "incomplete",
            CellState::Unverified => "unverified",
        }
    }

    pub fn is_closed(self) -> bool {
        matches!(
            self,
            CellState::Complete
                | CellState::Quarantine
                | CellState::Incomplete
                | CellState::Unverified
        )
    }
}

#[derive(Debug, Clone, Default)]
struct Host {
    heartbeat: Option<(i64, Heartbeat)>,
    first_heartbeat_ms: Option<i64>,
    alive: BTreeSet<Hour>,
    batches: u64,
    seq_regressions: u64,
}

impl Host {
    /// Its latest heartbeat says every batch of `hour` was announced.
    fn reported(&self, hour: Hour) -> bool {
        self.heartbeat
            .as_ref()
            .is_some_and(|(_, h)| h.final_before_hour > hour)
    }
}

#[derive(Debug, Default)]
pub struct AuditState {
    tiers: BTreeMap<String, Tier>,
    /// Every incarnation a per-batch key names.
    origins: HashSet<OriginRef>,
    /// (agent incarnation, seq) → a batch announced and not settled (`settle`).
    batches: HashMap<(OriginRef, u64), Pending>,
    by_hour: BTreeMap<(String, Hour), BTreeMap<OriginRef, CellBatches>>,
    /// (agent incarnation, seq) → rows per folder hour, for batches not settled.
    landed: HashMap<(OriginRef, u64), Landed>,
    /// Per incarnation, the seqs of its settled batches.
    settled: HashMap<OriginRef, SeqRanges>,
    /// Event types announcements named, by id (`settle`'s pending batches hold ids).
    type_names: Vec<String>,
    type_ids: HashMap<String, u32>,
    quarantined: HashMap<(Origin, String, Hour), u64>,
    hosts: BTreeMap<Origin, Host>,
    closed: BTreeMap<(String, Hour), ClosedMarker>,
    lateness: BTreeMap<(String, Hour), Histogram>,
    latency: BTreeMap<(String, Hour), Histogram>,
    /// Inputs about hours before this are ignored (`prune`).
    floor: Hour,
}

/// How much the state holds (for the benchmark and the pruning tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StateSize {
    pub batches: usize,
    pub landed: usize,
    pub cells: usize,
    pub hosts: usize,
    pub closed: usize,
}

impl AuditState {
    /// Event types and their tiers (from the registry). Only these get cells.
    pub fn new(types: impl IntoIterator<Item = (String, Tier)>) -> AuditState {
        AuditState {
            tiers: types.into_iter().collect(),
            ..AuditState::default()
        }
    }

    pub fn on_audit(&mut self, record: &AuditRecord) {
        if let AuditBody::Announcement(a) = &record.body
            && a.bucket_hour < self.floor
        {
            return;
        }
        let origin = record.origin();
        let host = self.hosts.entry(origin.clone()).or_default();
        match &record.body {
            AuditBody::Heartbeat(h) => {
                host.alive.insert(Hour::from_unix_ms(record.at_ms));
                let first = host.first_heartbeat_ms.get_or_insert(record.at_ms);
                *first = (*first).min(record.at_ms);
                let last = host.heartbeat.as_ref();
                if last.is_none_or(|(at, _)| *at <= record.at_ms) {
                    if last.is_some_and(|(_, l)| h.next_batch_seq < l.next_batch_seq) {
                        host.seq_regressions += 1;
                    }
                    host.heartbeat = Some((record.at_ms, *h));
                }
            }
            AuditBody::Announcement(a) => {
                host.alive.insert(a.bucket_hour);
                let origin = intern(&mut self.origins, &origin);
                if self.announce(origin.clone(), a) {
                    let host = self.hosts.get_mut(&*origin).expect("added above");
                    host.batches += 1;
                }
            }
        }
    }

    /// A data file seen for the first time (the caller scans each file once).
    pub fn on_file(&mut self, scan: &FileScan) {
        if scan.folder_hour < self.floor {
            return;
        }
        let hour = scan.folder_hour;
        for ((origin, seq), rows) in &scan.rows {
            let origin = intern(&mut self.origins, origin);
            self.land(origin, *seq, *rows, &scan.event_type, hour);
        }
        let key = (scan.event_type.clone(), scan.folder_hour);
        self.lateness
            .entry(key.clone())
            .or_default()
            .merge(&scan.lateness);
        self.latency
            .entry(key)
            .or_default()
            .merge(&scan.delivery_latency);
    }

    /// Events a consumer quarantined (from a manifest seen for the first time).
    pub fn on_quarantined(&mut self, origin: &Origin, event_type: &str, hour: Hour, events: u64) {
        if hour < self.floor {
            return;
        }
        *self
            .quarantined
            .entry((origin.clone(), event_type.to_string(), hour))
            .or_default() += events;
    }

    pub fn on_closed(&mut self, marker: ClosedMarker) {
        if Hour(marker.hour_number) < self.floor {
            return;
        }
        self.closed.insert(
            (marker.event_type.clone(), Hour(marker.hour_number)),
            marker,
        );
    }

    /// The markers of the closed hours in the window.
    pub fn closed_markers(&self) -> impl Iterator<Item = &ClosedMarker> {
        self.closed.values()
    }

    pub fn is_closed(&self, event_type: &str, hour: Hour) -> bool {
        self.closed.contains_key(&(event_type.to_string(), hour))
    }

    /// Hours in which any agent was alive, newest first, at most `limit`.
    pub fn active_hours(&self, limit: usize) -> Vec<Hour> {
        let all: BTreeSet<Hour> = self
            .hosts
            .values()
            .flat_map(|h| h.alive.iter().copied())
            .collect();
        all.into_iter().rev().take(limit).collect()
    }

    pub fn types(&self) -> impl Iterator<Item = (&str, Tier)> {
        self.tiers.iter().map(|(n, t)| (n.as_str(), *t))
    }

    /// Host incarnations alive in `hour` (a heartbeat or an announcement in it) whose
    /// latest heartbeat has not reported it final. One pass over the hosts, shared by
    /// every type's cell of the hour.
    pub fn unreported(&self, hour: Hour) -> BTreeSet<&Origin> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.alive.contains(&hour) && !h.reported(hour))
            .map(|(o, _)| o)
            .collect()
    }

    pub fn report(
        &self,
        event_type: &str,
        hour: Hour,
        now_ms: i64,
        policy: &ClosePolicy,
    ) -> HourReport {
        self.report_given(event_type, hour, now_ms, policy, &self.unreported(hour))
    }

    /// A cell's report: one row per host with batches in it, plus one per host alive
    /// in the hour that has not reported it (`unreported`, from [`Self::unreported`]).
    fn report_given(
        &self,
        event_type: &str,
        hour: Hour,
        now_ms: i64,
        policy: &ClosePolicy,
        unreported: &BTreeSet<&Origin>,
    ) -> HourReport {
        let tier = self.tiers.get(event_type).copied().unwrap_or(Tier::Normal);
        let published_seqs = self.by_hour.get(&(event_type.to_string(), hour));
        let mut origins = unreported.clone();
        origins.extend(
            published_seqs
                .into_iter()
                .flat_map(|m| m.keys().map(|o| &**o)),
        );
        let mut agents = Vec::new();
        let (mut duplicates, mut skew) = (0, 0);
        for origin in origins {
            let seqs = published_seqs.and_then(|m| m.get_key_value(origin));
            let (a, dup, late) = self.agent_hour(event_type, hour, origin, seqs);
            duplicates += dup;
            skew += late;
            agents.push(AgentHour {
                reported: !unreported.contains(origin),
                ..a
            });
        }
        let sum = |f: fn(&AgentHour) -> u64| agents.iter().map(f).sum::<u64>();
        let closed = self.closed.get(&(event_type.to_string(), hour)).cloned();
        let state = match &closed {
            Some(m) => m.state,
            None if now_ms < hour.end_ms() + policy.late_after_ms => CellState::Open,
            None => CellState::Late,
        };
        let key = (event_type.to_string(), hour);
        HourReport {
            event_type: event_type.to_string(),
            tier: tier.as_str(),
            hour: hour.to_string(),
            hour_number: hour.0,
            state,
            published: sum(|a| a.published),
            delivered: sum(|a| a.delivered),
            quarantined: sum(|a| a.quarantined),
            missing: sum(|a| a.missing),
            duplicates,
            skew,
            agents,
            closed,
            lateness: self.lateness.get(&key).cloned().unwrap_or_default(),
            delivery_latency: self.latency.get(&key).cloned().unwrap_or_default(),
        }
    }

    /// One host's row of a cell: what it published (`seqs`, its batches in the cell)
    /// against what landed, with the rows landed twice and the rows landed in a later
    /// hour's folder. `reported` is left true for the caller to set.
    fn agent_hour(
        &self,
        event_type: &str,
        hour: Hour,
        origin: &Origin,
        cell: Option<(&OriginRef, &CellBatches)>,
    ) -> (AgentHour, u64, u64) {
        let (mut duplicates, mut skew) = (0, 0);
        let mut a = AgentHour {
            agent_id: origin.agent_id.clone(),
            spool_id: origin.spool_id,
            published: 0,
            delivered: 0,
            quarantined: if self.quarantined.is_empty() {
                0
            } else {
                self.quarantined
                    .get(&(origin.clone(), event_type.to_string(), hour))
                    .copied()
                    .unwrap_or(0)
            },
            missing: 0,
            missing_batch_seqs: vec![],
            reported: true,
        };
        let mut short = SeqRanges::default();
        if let Some((_, cell)) = cell {
            a.published += cell.settled_events;
            a.delivered += cell.settled_events;
            duplicates += cell.extra_rows;
        }
        let published = cell
            .into_iter()
            .flat_map(|(o, cell)| cell.seqs.iter().map(move |s| (o, *s)));
        for (shared, seq) in published {
            let key = (shared.clone(), seq);
            let Some(pending) = self.batches.get(&key) else {
                continue; // settled: counted above
            };
            let events = u64::from(pending.events);
            let landed = self.landed.get(&key).map_or(&[][..], Landed::per_hour);
            let rows: u64 = landed.iter().map(|(_, n)| n).sum();
            skew += landed
                .iter()
                .filter(|(h, _)| *h > hour)
                .map(|(_, n)| n)
                .sum::<u64>();
            a.published += events;
            a.delivered += rows.min(events);
            duplicates += rows.saturating_sub(events);
            if rows < events {
                short.insert(seq);
            }
        }
        // An event quarantined and later replayed (`evd quarantine replay`) has its row
        // now: it counts as delivered, and no longer as quarantined.
        a.quarantined = a.quarantined.min(a.published.saturating_sub(a.delivered));
        a.missing = a.published.saturating_sub(a.delivered + a.quarantined);
        if a.missing > 0 {
            a.missing_batch_seqs = short.iter().collect();
        }
        (a, duplicates, skew)
    }

    /// Reports for every type × the `limit` most recent active hours, newest first.
    pub fn reports(&self, now_ms: i64, policy: &ClosePolicy, limit: usize) -> Vec<HourReport> {
        let hours = self.active_hours(limit);
        let unreported: Vec<BTreeSet<&Origin>> =
            hours.iter().map(|h| self.unreported(*h)).collect();
        let mut out = Vec::new();
        for (ty, _) in self.types() {
            for (hour, unreported) in hours.iter().zip(&unreported) {
                out.push(self.report_given(ty, *hour, now_ms, policy, unreported));
            }
        }
        out
    }

    /// The state an unclosed hour would close with now, if it is due: the hour has
    /// ended and either every agent alive in it reported it and nothing is missing, or
    /// its tier's deadline has passed.
    pub fn close_state(
        report: &HourReport,
        hour: Hour,
        now_ms: i64,
        policy: &ClosePolicy,
        tier: Tier,
    ) -> Option<CellState> {
        if report.closed.is_some() || now_ms < hour.end_ms() {
            return None;
        }
        let settled = report.agents.iter().all(|a| a.reported) && report.missing == 0;
        if !settled && now_ms < hour.end_ms() + policy.deadline_ms(tier) {
            return None;
        }
        Some(if report.missing > 0 {
            CellState::Incomplete
        } else if !settled {
            CellState::Unverified
        } else if report.quarantined > 0 {
            CellState::Quarantine
        } else {
            CellState::Complete
        })
    }

    /// Every (type, hour) that should close now, oldest first, with its closing state.
    pub fn due(
        &self,
        now_ms: i64,
        policy: &ClosePolicy,
        limit: usize,
    ) -> Vec<(String, Hour, CellState)> {
        let mut hours = self.active_hours(limit);
        hours.reverse();
        let mut due = Vec::new();
        for hour in hours {
            if now_ms < hour.end_ms() {
                continue; // nothing closes before its hour ends
            }
            let open: Vec<(&str, Tier)> = self
                .types()
                .filter(|(ty, _)| !self.is_closed(ty, hour))
                .collect();
            if open.is_empty() {
                continue;
            }
            let unreported = self.unreported(hour);
            for (ty, tier) in open {
                let report = self.report_given(ty, hour, now_ms, policy, &unreported);
                if let Some(state) = Self::close_state(&report, hour, now_ms, policy, tier) {
                    due.push((ty.to_string(), hour, state));
                }
            }
        }
        due
    }

    /// The marker for closing `report` now with `files`.
    pub fn marker(
        report: &HourReport,
        state: CellState,
        files: Vec<MarkerFile>,
        by: &str,
        now_ms: i64,
    ) -> ClosedMarker {
        ClosedMarker {
            version: MARKER_VERSION,
            event_type: report.event_type.clone(),
            hour: report.hour.clone(),
            hour_number: report.hour_number,
            closed_at_ms: now_ms,
            closed_by: by.to_string(),
            state,
            published: report.published,
            delivered: report.delivered,
            quarantined: report.quarantined,
            missing: report.missing,
            duplicates: report.duplicates,
            files,
            agents: report.agents.clone(),
        }
    }

    /// Latency and lateness over all hours of a type (for Prometheus).
    pub fn histograms(&self, event_type: &str) -> (Histogram, Histogram) {
        let mut lateness = Histogram::default();
        let mut latency = Histogram::default();
        for ((ty, _), h) in &self.lateness {
            if ty == event_type {
                lateness.merge(h);
            }
        }
        for ((ty, _), h) in &self.latency {
            if ty == event_type {
                latency.merge(h);
            }
        }
        (lateness, latency)
    }
}
