//! The auditor's figures, computed from its state at each scrape and exposed through
//! the shared [`Scrape`]: names are listed in docs/metrics.md, and a test keeps the
//! two the same.
//!
//! Labels are event type and tier; per-host labels appear only where on-call needs
//! the host (lost events, unreported hosts, identity alarms, host gauges).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use evd_schemas::Hour;
use evd_schemas::metrics::Scrape;

use crate::audit::{CellState, HostReport, HourReport};
use crate::auditor::Shared;

/// The auditor's `/metrics` text.
pub fn render(shared: &Shared) -> String {
    let mut s = Scrape::new();
    counters(&mut s, shared);
    per_type(&mut s, shared);
    hosts(&mut s, shared);
    s.render("ops")
}

fn counters(s: &mut Scrape, shared: &Shared) {
    let counters = [
        (
            "files_scanned",
            "Parquet files read by the scans.",
            &shared.files_scanned,
        ),
        (
            "rows_scanned",
            "Rows counted by the scans.",
            &shared.rows_scanned,
        ),
        (
            "hours_closed",
            "Hours closed (any closed state).",
            &shared.hours_closed,
        ),
        (
            "audit_records",
            "Audit records read.",
            &shared.audit_records,
        ),
        (
            "audit_undecodable",
            "Audit records that did not decode; ignored.",
            &shared.audit_undecodable,
        ),
        (
            "audit_unauthenticated",
            "Audit records whose tag does not verify (forged, or an unauthenticated old version); counted and ignored.",
            &shared.audit_unauthenticated,
        ),
        (
            "scan_errors",
            "Object-store scans that failed (retried at the next scan).",
            &shared.scan_errors,
        ),
        (
            "lock_recoveries",
            "Times a task found the state lock poisoned by a panic and went on.",
            &shared.lock_recoveries,
        ),
        (
            "bad_objects",
            "Unreadable output objects skipped and quarantined.",
            &shared.bad_objects,
        ),
        (
            "hours_combined",
            "Closed hours written as one file to the closed-hours table.",
            &shared.hours_combined,
        ),
        (
            "hours_not_combined",
            "Closed hours whose files cannot go into one file (two type versions in the hour, columns that differ beyond optional ones added, or a file unreadable or too large); readers use the consumers' files.",
            &shared.hours_not_combined,
        ),
        (
            "combine_errors",
            "Attempts to combine a closed hour that failed on the store (retried, waiting longer each time).",
            &shared.combine_errors,
        ),
    ];
    for (name, help, c) in counters {
        s.counter(name, help, &[], c.load(Ordering::Relaxed));
    }
    s.gauge(
        "quarantined_batches",
        "Batches in the quarantine.",
        &[],
        shared.quarantined_batches.load(Ordering::Relaxed) as i64,
    );
    s.gauge(
        "audit_caught_up",
        "1 once the audit reader reached the high watermarks it saw at start; no hour closes before.",
        &[],
        i64::from(shared.audit_caught_up.load(Ordering::Relaxed)),
    );
}

const CELL_STATES: [CellState; 6] = [
    CellState::Open,
    CellState::Late,
    CellState::Complete,
    CellState::Quarantine,
    CellState::Incomplete,
    CellState::Unverified,
];

fn per_type(s: &mut Scrape, shared: &Shared) {
    let now = shared.clock.now_ms();
    let reports = crate::dashboard::reports(shared);
    let state = shared.state();
    for (ty, tier) in state.types() {
        let type_labels = [("event_type", ty), ("tier", tier.as_str())];
        let mine: Vec<&HourReport> = reports.iter().filter(|r| r.event_type == ty).collect();
        for st in CELL_STATES {
            let n = mine.iter().filter(|r| r.state == st).count();
            let labels = [type_labels[0], type_labels[1], ("state", st.as_str())];
            s.gauge(
                "hours",
                "Hours in the audit window by state.",
                &labels,
                n as i64,
            );
        }
        let loss = mine.iter().filter(|r| r.open_loss()).count();
        s.gauge(
            "open_loss_hours",
            "Hours with events published and not delivered (open or closed incomplete).",
            &type_labels,
            loss as i64,
        );
        let unverified = mine.iter().filter(|r| r.unverified()).count();
        s.gauge(
            "unverified_hours",
            "Hours closed unverified: a live host never reported.",
            &type_labels,
            unverified as i64,
        );
        per_host(s, &type_labels, &mine);
        let quarantined: u64 = mine.iter().map(|r| r.quarantined).sum();
        s.gauge(
            "quarantined_events",
            "Events quarantined in the window's hours.",
            &type_labels,
            quarantined as i64,
        );
        let oldest_unclosed = mine
            .iter()
            .filter(|r| !r.state.is_closed() && Hour(r.hour_number).end_ms() <= now)
            .map(|r| (now - Hour(r.hour_number).end_ms()) / 1000)
            .max()
            .unwrap_or(0);
        s.gauge(
            "oldest_unclosed_hour_age_seconds",
            "Seconds since the end of the oldest hour not yet closed.",
            &type_labels,
            oldest_unclosed,
        );
        if let Some(last) = mine.iter().find(|r| r.closed.is_some()) {
            last_closed(s, &type_labels, last);
        }
        let (lateness, latency) = state.histograms(ty);
        s.buckets(
            "lateness_seconds",
            "Event time to receive time, per event.",
            &type_labels,
            lateness.exposition(),
        );
        s.buckets(
            "delivery_latency_seconds",
            "Receive time to commit in Parquet, per event.",
            &type_labels,
            latency.exposition(),
        );
    }
}

/// The hosts behind a type's problem hours: who never reported for a closed hour,
/// and how many events each lost.
fn per_host(s: &mut Scrape, type_labels: &[(&'static str, &str); 2], mine: &[&HourReport]) {
    for r in mine.iter().filter(|r| r.unverified()) {
        let hour = r.hour.to_string();
        for agent in r.unreported_agents() {
            let labels = [
                type_labels[0],
                type_labels[1],
                ("hour", hour.as_str()),
                ("agent_id", agent.as_str()),
            ];
            s.gauge(
                "unreported_host_hours",
                "A live host that never reported for a closed hour (value 1).",
                &labels,
                1,
            );
        }
    }
    for r in mine.iter().filter(|r| r.open_loss()) {
        let hour = r.hour.to_string();
        for a in r.agents.iter().filter(|a| a.missing > 0) {
            let spool = a.spool_id.to_string();
            let labels = [
                type_labels[0],
                type_labels[1],
                ("hour", hour.as_str()),
                ("agent_id", a.agent_id.as_str()),
                ("spool_id", spool.as_str()),
            ];
            s.gauge(
                "lost_events",
                "Events published and not delivered, per hour and host.",
                &labels,
                a.missing as i64,
            );
        }
    }
}

/// Figures of the newest closed hour of one type.
fn last_closed(s: &mut Scrape, labels: &[(&'static str, &str)], last: &HourReport) {
    let Some(m) = last.closed.as_ref() else {
        return;
    };
    let ratio = |n: u64| {
        if last.published == 0 {
            1.0
        } else {
            n as f64 / last.published as f64
        }
    };
    let timeliness = m.closed_at_ms.saturating_sub(Hour(m.hour_number).end_ms()) as f64 / 1000.0;
    s.gauge_f64(
        "completeness_ratio",
        "Delivered over published in the newest closed hour.",
        labels,
        ratio(last.delivered),
    );
    s.gauge_f64("skew_ratio", "Events received in the newest closed hour whose event time is in another hour, over published.", labels, ratio(last.skew));
    s.gauge_f64(
        "timeliness_seconds",
        "Seconds from the end of the newest closed hour to its closing.",
        labels,
        timeliness,
    );
}

fn hosts(s: &mut Scrape, shared: &Shared) {
    let now = shared.clock.now_ms();
    let state = shared.state();
    for a in state.identity_alarms() {
        let labels = [("agent_id", a.agent_id.as_str())];
        s.gauge(
            "agent_concurrent_spools",
            "Spool incarnations of one agent id live at once (over 1: two hosts share the id, or a spool was copied).",
            &labels,
            a.concurrent_spools.len() as i64,
        );
        s.gauge(
            "agent_seq_regressions",
            "Heartbeats of one agent id whose batch seq went backwards (a spool restored from an old copy).",
            &labels,
            a.seq_regressions as i64,
        );
    }
    let hosts = state.hosts();
    s.gauge(
        "hosts",
        "Spool incarnations that ever sent a heartbeat.",
        &[],
        hosts.len() as i64,
    );
    // Per agent id, its newest incarnation (a re-created spool replaces the old one);
    // hosts silent past `host_retire_after_ms` are decommissioned and left out.
    let mut newest: BTreeMap<&str, &HostReport> = BTreeMap::new();
    for h in &hosts {
        let e = newest.entry(h.agent_id.as_str()).or_insert(h);
        if h.last_heartbeat_ms > e.last_heartbeat_ms {
            *e = h;
        }
    }
    let retire_before = now - shared.policy.host_retire_after_ms;
    let (live, retired): (Vec<&HostReport>, Vec<_>) = newest
        .values()
        .copied()
        .partition(|h| h.last_heartbeat_ms >= retire_before);
    s.gauge(
        "hosts_retired",
        "Agent ids silent longer than host_retire_after_ms.",
        &[],
        retired.len() as i64,
    );
    for h in &live {
        let labels = [("agent_id", h.agent_id.as_str())];
        s.gauge(
            "host_heartbeat_age_seconds",
            "Seconds since the host's last heartbeat.",
            &labels,
            (now - h.last_heartbeat_ms) / 1000,
        );
        s.gauge(
            "host_spool_bytes",
            "Bytes in the host's spool at its last heartbeat.",
            &labels,
            h.spool_bytes as i64,
        );
        let oldest = if h.oldest_unacked_ms > 0 {
            (now - h.oldest_unacked_ms) / 1000
        } else {
            0
        };
        s.gauge(
            "host_oldest_unacked_age_seconds",
            "Age of the host's oldest unacked batch (0 = none).",
            &labels,
            oldest,
        );
    }
    s.gauge(
        "unacked_batches",
        "Batches waiting for an end-to-end ack, over all hosts' last heartbeats.",
        &[],
        hosts.iter().map(|h| h.unacked_batches).sum::<u64>() as i64,
    );
}
