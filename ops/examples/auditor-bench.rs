//! The auditor's pure core at scale: generated audit records and file scans for
//! AGENTS agents × TYPES event types × HOURS hours (each agent writing TYPES_PER_AGENT
//! of the types, BATCHES batches per agent, type and hour), then the closing pass and the
//! dashboard's reports over the window, and pruning. Prints time and memory (peak RSS
//! of this process) per step.
//!
//! `cargo run --release -p evd-ops --example auditor-bench -- [AGENTS TYPES HOURS TYPES_PER_AGENT BATCHES]`

use std::time::Instant;

use evd_ops::audit::{AuditState, ClosePolicy, FileScan};
use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord, Heartbeat};
use evd_schemas::{Hour, Origin, SpoolId, Tier};

const FIRST: Hour = Hour(500_000);
const POLICY: ClosePolicy = ClosePolicy {
    late_after_ms: 120_000,
    deadline_high_ms: 1_800_000,
    deadline_normal_ms: 7_200_000,
    deadline_low_ms: 21_600_000,
    host_retire_after_ms: 86_400_000,
};

fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    run(&args);
}

/// The bench with `[AGENTS TYPES HOURS TYPES_PER_AGENT BATCHES]` (defaults for those
/// missing).
fn run(args: &[usize]) {
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (agents, types, hours, per_agent) = (arg(0, 10_000), arg(1, 250), arg(2, 48), arg(3, 5));
    let per_cell = arg(4, 1);
    let names: Vec<String> = (0..types).map(|t| format!("Type{t:03}")).collect();
    let mut state = AuditState::new(names.iter().map(|n| (n.clone(), Tier::Normal)));
    let origins: Vec<Origin> = (0..agents)
        .map(|a| Origin::new(format!("host-{a:05}"), SpoolId(a as u64 + 1)))
        .collect();
    let started = Instant::now();
    let mut announcements = 0u64;
    let mut seqs = vec![0u64; agents];
    for h in 0..hours as u32 {
        let hour = Hour(FIRST.0 + h);
        let mut files: Vec<FileScan> = names
            .iter()
            .map(|n| FileScan {
                event_type: n.clone(),
                folder_hour: hour,
                ..FileScan::default()
            })
            .collect();
        for (a, origin) in origins.iter().enumerate() {
            for k in (0..per_agent).flat_map(|k| std::iter::repeat_n(k, per_cell)) {
                let t = (a * 7 + k * 31) % types;
                seqs[a] += 1;
                state.on_audit(&AuditRecord {
                    agent_id: origin.agent_id.clone(),
                    spool_id: origin.spool_id,
                    at_ms: hour.start_ms() + 1_000,
                    body: AuditBody::Announcement(Announcement {
                        event_type: names[t].clone(),
                        bucket_hour: hour,
                        batch_seq: seqs[a],
                        event_count: 100,
                    }),
                });
                files[t].rows.insert((origin.clone(), seqs[a]), 100);
                announcements += 1;
            }
            state.on_audit(&AuditRecord {
                agent_id: origin.agent_id.clone(),
                spool_id: origin.spool_id,
                at_ms: hour.start_ms() + 30 * 60_000,
                body: AuditBody::Heartbeat(Heartbeat {
                    final_before_hour: hour,
                    next_batch_seq: seqs[a] + 1,
                    ..Heartbeat::default()
                }),
            });
        }
        for f in &files {
            state.on_file(f);
        }
    }
    let last = Hour(FIRST.0 + hours as u32);
    for origin in &origins {
        state.on_audit(&AuditRecord {
            agent_id: origin.agent_id.clone(),
            spool_id: origin.spool_id,
            at_ms: last.start_ms() + 1_000,
            body: AuditBody::Heartbeat(Heartbeat {
                final_before_hour: last,
                ..Heartbeat::default()
            }),
        });
    }
    let ingest = started.elapsed();
    let rss_after_ingest = rss_mib("VmRSS:");
    let now = last.start_ms() + 60_000;

    let t = Instant::now();
    let due = state.due(now, &POLICY, hours + 1);
    let due_time = t.elapsed();
    let t = Instant::now();
    let reports = state.reports(now, &POLICY, hours + 1);
    let reports_time = t.elapsed();
    assert_eq!(due.len(), types * hours, "every cell is complete and due");
    let missing: u64 = reports.iter().map(|r| r.missing).sum();
    assert_eq!(missing, 0);
    drop(reports);
    for (ty, hour, closing) in &due {
        let report = state.report(ty, *hour, now, &POLICY);
        state.on_closed(AuditState::marker(&report, *closing, vec![], "bench", now));
    }
    // Steady state: every cell of the window closed, the scan's closing pass again.
    let t = Instant::now();
    let again = state.due(now, &POLICY, hours + 1);
    let steady_due_time = t.elapsed();
    assert!(again.is_empty());
    let size_before = state.size();
    let t = Instant::now();
    state.prune(Hour(last.0 - hours as u32 / 2));
    let prune_time = t.elapsed();
    let size_after = state.size();

    println!(
        "auditor core: {agents} agents x {types} types x {hours} hours, {per_agent} types per agent, \
         {per_cell} batches per agent, type and hour\n"
    );
    println!("| step | figure |");
    println!("|---|---:|");
    println!(
        "| announcements + heartbeats ingested | {announcements} + {} |",
        agents * (hours + 1)
    );
    println!(
        "| ingest time | {:.1} s ({:.0} announcements/s) |",
        ingest.as_secs_f64(),
        announcements as f64 / ingest.as_secs_f64()
    );
    println!("| RSS after ingest | {rss_after_ingest:.0} MiB |");
    println!(
        "| closing pass over {} cells (`due`) | {:.2} s |",
        types * hours,
        due_time.as_secs_f64()
    );
    println!(
        "| closing pass again, every cell closed (each scan, steady state) | {:.3} s |",
        steady_due_time.as_secs_f64()
    );
    println!(
        "| dashboard reports over the window (per page load) | {:.2} s |",
        reports_time.as_secs_f64()
    );
    println!(
        "| prune to the newest {} hours | {:.2} s; batches {} -> {} |",
        hours - hours / 2,
        prune_time.as_secs_f64(),
        size_before.batches,
        size_after.batches
    );
    println!("| peak RSS | {:.0} MiB |", rss_mib("VmHWM:"));
}

/// `cargo test` runs the bench at a tiny size so it cannot rot (nothing is timed).
#[test]
fn runs_at_a_tiny_size() {
    run(&[20, 5, 3, 2, 3]);
}
