//! Model tests of the auditor: seeded runs with and without an injected gap.

use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord, Heartbeat};
use evd_schemas::{Hour, Origin, SpoolId, Tier};

use super::*;

const H: Hour = Hour(493_127);
pub(super) const POLICY: ClosePolicy = ClosePolicy {
    late_after_ms: 120_000,
    deadline_high_ms: 600_000,
    deadline_normal_ms: 600_000,
    deadline_low_ms: 600_000,
    host_retire_after_ms: 86_400_000,
};

const SPOOL: SpoolId = SpoolId(0x5eed);

fn origin(agent: &str) -> Origin {
    Origin::new(agent, SPOOL)
}

/// A small deterministic generator (splitmix64); runs are replayed by seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn announce(agent: &str, ty: &str, hour: Hour, seq: u64, events: u32) -> AuditRecord {
    AuditRecord {
        agent_id: agent.into(),
        spool_id: SPOOL,
        at_ms: hour.start_ms() + 1_000,
        body: AuditBody::Announcement(Announcement {
            event_type: ty.into(),
            bucket_hour: hour,
            batch_seq: seq,
            event_count: events,
        }),
    }
}

fn heartbeat(agent: &str, at_ms: i64, final_before: Hour) -> AuditRecord {
    AuditRecord {
        agent_id: agent.into(),
        spool_id: SPOOL,
        at_ms,
        body: AuditBody::Heartbeat(Heartbeat {
            final_before_hour: final_before,
            ..Heartbeat::default()
        }),
    }
}

/// Three agents, two types, one hour of batches; files land in random groupings. With
/// `gap`, one random batch's rows never land. Returns the state after every input and
/// the dropped (agent, type, seq).
fn run(seed: u64, gap: bool) -> (AuditState, Option<(String, String, u64)>) {
    let mut rng = Rng(seed);
    let mut state = AuditState::new([("A".to_string(), Tier::High), ("B".to_string(), Tier::Low)]);
    let mut batches = Vec::new();
    for agent in ["host-1", "host-2", "host-3"] {
        for seq in 1..=(5 + rng.below(20)) {
            let ty = if rng.below(2) == 0 { "A" } else { "B" };
            let events = 1 + rng.below(1_000) as u32;
            state.on_audit(&announce(agent, ty, H, seq, events));
            batches.push((agent.to_string(), ty.to_string(), seq, events));
        }
    }
    let dropped = gap.then(|| {
        let (a, t, s, _) = batches[rng.below(batches.len() as u64) as usize].clone();
        (a, t, s)
    });
    // Before the hour is over and before anything landed, nothing is due or lost.
    assert!(
        state.due(H.end_ms() - 1, &POLICY, 48).is_empty(),
        "seed {seed}"
    );
    let mut file = FileScan {
        folder_hour: H,
        ..FileScan::default()
    };
    for (agent, ty, seq, events) in &batches {
        if dropped.as_ref() == Some(&(agent.clone(), ty.clone(), *seq)) {
            continue;
        }
        file.event_type = ty.clone();
        file.rows.insert((origin(agent), *seq), u64::from(*events));
        if rng.below(4) == 0 {
            state.on_file(&std::mem::take(&mut file));
            file.folder_hour = H;
        }
    }
    state.on_file(&file);
    for agent in ["host-1", "host-2", "host-3"] {
        state.on_audit(&heartbeat(agent, H.end_ms() + 5_000, H.next()));
    }
    (state, dropped)
}

#[test]
fn an_injected_gap_is_flagged_with_agent_and_seq_in_every_seeded_run() {
    for seed in 0..20 {
        let (state, dropped) = run(seed, true);
        let (agent, ty, seq) = dropped.unwrap();
        // Reported but not delivered: not due before the deadline...
        let soon = H.end_ms() + 60_000;
        assert!(
            !state
                .due(soon, &POLICY, 48)
                .iter()
                .any(|(t, _, _)| *t == ty),
            "seed {seed}: closed early"
        );
        // ...and closes incomplete at it, naming the agent and the batch.
        let late = H.end_ms() + POLICY.deadline_high_ms;
        let due = state.due(late, &POLICY, 48);
        let (_, _, st) = due.iter().find(|(t, _, _)| *t == ty).unwrap();
        assert_eq!(*st, CellState::Incomplete, "seed {seed}");
        let report = state.report(&ty, H, late, &POLICY);
        let missing: Vec<_> = report.agents.iter().filter(|a| a.missing > 0).collect();
        assert_eq!(missing.len(), 1, "seed {seed}");
        assert_eq!(missing[0].agent_id, agent, "seed {seed}");
        assert_eq!(
            missing[0].missing_batch_seqs,
            vec![(seq, seq)],
            "seed {seed}"
        );
        // The other type is untouched.
        let other = if ty == "A" { "B" } else { "A" };
        assert_eq!(
            state.report(other, H, late, &POLICY).missing,
            0,
            "seed {seed}"
        );
    }
}

#[test]
fn clean_runs_close_complete_with_no_false_alarm() {
    for seed in 100..120 {
        let (state, _) = run(seed, false);
        let now = H.end_ms() + 5_000;
        let due = state.due(now, &POLICY, 48);
        assert_eq!(
            due.len(),
            2,
            "seed {seed}: both types close as soon as reported"
        );
        for (ty, _, st) in due {
            assert_eq!(st, CellState::Complete, "seed {seed}: {ty}");
            let r = state.report(&ty, H, now, &POLICY);
            assert_eq!((r.missing, r.duplicates), (0, 0), "seed {seed}");
            assert_eq!(r.published, r.delivered, "seed {seed}");
        }
    }
}

#[test]
fn an_agent_that_has_not_reported_holds_the_hour_open_until_the_deadline() {
    let mut state = AuditState::new([("A".to_string(), Tier::Normal)]);
    state.on_audit(&announce("h1", "A", H, 1, 10));
    state.on_audit(&heartbeat("h2", H.start_ms() + 10, H)); // alive, never reports H
    state.on_audit(&heartbeat("h1", H.end_ms() + 1, H.next()));
    let mut f = FileScan {
        event_type: "A".into(),
        folder_hour: H,
        ..FileScan::default()
    };
    f.rows.insert((origin("h1"), 1), 10);
    state.on_file(&f);
    assert!(state.due(H.end_ms() + 60_000, &POLICY, 48).is_empty());
    let r = state.report("A", H, H.end_ms() + 200_000, &POLICY);
    assert_eq!(r.state, CellState::Late);
    let due = state.due(H.end_ms() + POLICY.deadline_normal_ms, &POLICY, 48);
    // Nothing announced is missing, but h2 was alive in H and never said it had
    // announced everything: what it may have sealed is unknown, so the hour closes
    // unverified, not complete.
    assert_eq!(due, vec![("A".to_string(), H, CellState::Unverified)]);
    let r = state.report("A", H, H.end_ms() + POLICY.deadline_normal_ms, &POLICY);
    assert_eq!(r.unreported_agents(), vec!["h2".to_string()]);
}

/// The unverified state's false-alarm test: hosts that reported every hour they were
/// alive in never make an hour unverified, in seeded runs with hosts alive in other
/// hours only, late heartbeats, and quarantines.
#[test]
fn hours_every_live_host_reported_never_close_unverified() {
    for seed in 0..200 {
        let mut rng = Rng(seed);
        let mut state = AuditState::new([("A".to_string(), Tier::Normal)]);
        let late = Hour(H.0 + 1).end_ms() + POLICY.deadline_normal_ms;
        let hosts = 1 + rng.below(6);
        for h in 0..hosts {
            let agent = format!("h{h}");
            // Hosts start in the hour before H, in H, or after it.
            let offset = rng.below(3) as u32;
            let hour = Hour(H.0 - 1 + offset);
            state.on_audit(&heartbeat(&agent, hour.start_ms() + 5, hour));
            for seq in 1..=rng.below(4) {
                state.on_audit(&announce(&agent, "A", hour, seq, 3));
                let mut f = FileScan {
                    event_type: "A".into(),
                    folder_hour: hour,
                    ..FileScan::default()
                };
                f.rows.insert((origin(&agent), seq), 3);
                state.on_file(&f);
            }
            // A live agent heartbeats every 10 minutes (with jitter) until after the
            // check, each beat reporting every hour before its own.
            let mut at = hour.start_ms() + 5 + rng.below(600_000) as i64;
            while at < late + 600_000 {
                state.on_audit(&heartbeat(&agent, at, Hour::from_unix_ms(at)));
                at += 600_000 + rng.below(60_000) as i64;
            }
        }
        let due = state.due(late, &POLICY, 48);
        assert!(!due.is_empty(), "seed {seed}");
        for (_, hour, closing) in due {
            assert_eq!(closing, CellState::Complete, "seed {seed}, hour {hour}");
        }
    }
}

#[test]
fn duplicates_and_skew_are_counted_and_closed_markers_win() {
    let mut state = AuditState::new([("A".to_string(), Tier::High)]);
    state.on_audit(&announce("h1", "A", H, 1, 10));
    state.on_audit(&announce("h1", "A", H, 2, 10));
    let mut f = FileScan {
        event_type: "A".into(),
        folder_hour: H,
        ..FileScan::default()
    };
    f.rows.insert((origin("h1"), 1), 12);
    state.on_file(&f);
    let mut late = FileScan {
        event_type: "A".into(),
        folder_hour: H.next(),
        ..FileScan::default()
    };
    late.rows.insert((origin("h1"), 2), 10);
    state.on_file(&late);
    let r = state.report("A", H, H.end_ms(), &POLICY);
    assert_eq!(
        (r.published, r.delivered, r.duplicates, r.skew),
        (20, 20, 2, 10)
    );
    let marker = AuditState::marker(&r, CellState::Complete, vec![], "t", 1);
    state.on_closed(marker);
    assert_eq!(state.report("A", H, 0, &POLICY).state, CellState::Complete);
    assert!(state.due(H.end_ms() + 10_000_000, &POLICY, 48).is_empty());
}

fn record_of(agent: &str, spool: u64, at_ms: i64, body: AuditBody) -> AuditRecord {
    AuditRecord {
        agent_id: agent.into(),
        spool_id: SpoolId(spool),
        at_ms,
        body,
    }
}

fn beat(next_batch_seq: u64, final_before: Hour) -> AuditBody {
    AuditBody::Heartbeat(Heartbeat {
        next_batch_seq,
        final_before_hour: final_before,
        ..Heartbeat::default()
    })
}

fn batch(seq: u64, events: u32) -> AuditBody {
    AuditBody::Announcement(Announcement {
        event_type: "A".into(),
        bucket_hour: H,
        batch_seq: seq,
        event_count: events,
    })
}

/// A spool wiped and re-created under the same agent id reuses batch seqs: its
/// announcements are not taken for the old spool's, and its missing rows are found.
#[test]
fn a_recreated_spool_is_counted_apart_from_the_old_one() {
    let mut state = AuditState::new([("A".to_string(), Tier::High)]);
    let t0 = H.start_ms();
    state.on_audit(&record_of("h1", 1, t0, beat(1, H)));
    for seq in 1..=3 {
        state.on_audit(&record_of("h1", 1, t0 + 10, batch(seq, 10)));
    }
    state.on_audit(&record_of("h1", 1, t0 + 20, beat(4, H)));
    // Wiped: a new incarnation, after the old one's last heartbeat, seqs from 1 again.
    state.on_audit(&record_of("h1", 2, t0 + 1_000, beat(1, H)));
    for seq in 1..=2 {
        state.on_audit(&record_of("h1", 2, t0 + 1_010, batch(seq, 7)));
    }
    let mut f = FileScan {
        event_type: "A".into(),
        folder_hour: H,
        ..FileScan::default()
    };
    for seq in 1..=3 {
        f.rows.insert((Origin::new("h1", SpoolId(1)), seq), 10);
    }
    f.rows.insert((Origin::new("h1", SpoolId(2)), 1), 7);
    state.on_file(&f);
    state.on_audit(&record_of("h1", 2, H.end_ms() + 1, beat(3, H.next())));
    let r = state.report("A", H, H.end_ms() + 5, &POLICY);
    assert_eq!(r.published, 44);
    assert_eq!(r.delivered, 37);
    assert_eq!(r.missing, 7);
    let lost: Vec<_> = r.agents.iter().filter(|a| a.missing > 0).collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(
        (lost[0].spool_id, &lost[0].missing_batch_seqs),
        (SpoolId(2), &vec![(2, 2)])
    );
    assert!(
        state.identity_alarms().is_empty(),
        "one after the other: no alarm"
    );
}

#[test]
fn two_live_incarnations_or_a_seq_going_back_raise_identity_alarms() {
    let mut state = AuditState::new([("A".to_string(), Tier::High)]);
    let t0 = H.start_ms();
    // Two hosts configured with the same id: their heartbeats interleave.
    for i in 0..3 {
        state.on_audit(&record_of("twin", 1, t0 + i * 1_000, beat(5 + i as u64, H)));
        state.on_audit(&record_of("twin", 2, t0 + i * 1_000 + 500, beat(2, H)));
    }
    // A spool restored from an old copy: the same incarnation, seq goes back.
    state.on_audit(&record_of("restored", 3, t0, beat(50, H)));
    state.on_audit(&record_of("restored", 3, t0 + 1_000, beat(20, H)));
    // A healthy agent, and an older heartbeat read late (not a regression).
    state.on_audit(&record_of("ok", 4, t0 + 1_000, beat(9, H)));
    state.on_audit(&record_of("ok", 4, t0, beat(3, H)));
    let alarms = state.identity_alarms();
    assert_eq!(
        alarms,
        vec![
            IdentityAlarm {
                agent_id: "restored".into(),
                concurrent_spools: vec![],
                seq_regressions: 1,
            },
            IdentityAlarm {
                agent_id: "twin".into(),
                concurrent_spools: vec![SpoolId(1), SpoolId(2)],
                seq_regressions: 0,
            },
        ]
    );
}
