//! Pruning keeps the state bounded without changing what the window shows.

use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord, Heartbeat};
use evd_schemas::{Hour, Origin, SpoolId, Tier};

use super::tests::POLICY;
use super::*;

const FIRST: Hour = Hour(493_000);
const HOURS: u32 = 100;

fn record(agent: &str, at_ms: i64, body: AuditBody) -> AuditRecord {
    AuditRecord {
        agent_id: agent.into(),
        spool_id: SpoolId(1),
        at_ms,
        body,
    }
}

/// `HOURS` hours of two agents and two types, every batch landed, every hour closed
/// except `open`. Agent h1's batches land in their own hour (settled: no per-batch
/// state), h2's in the next hour's folder (kept per batch).
fn state_with_open(open: Option<Hour>) -> AuditState {
    let mut state = AuditState::new([("A".to_string(), Tier::High), ("B".to_string(), Tier::Low)]);
    let mut seq = 0;
    for h in 0..HOURS {
        let hour = Hour(FIRST.0 + h);
        for agent in ["h1", "h2"] {
            for ty in ["A", "B"] {
                seq += 1;
                state.on_audit(&record(
                    agent,
                    hour.start_ms() + 1,
                    AuditBody::Announcement(Announcement {
                        event_type: ty.into(),
                        bucket_hour: hour,
                        batch_seq: seq,
                        event_count: 5,
                    }),
                ));
                let mut f = FileScan {
                    event_type: ty.into(),
                    folder_hour: if agent == "h1" { hour } else { hour.next() },
                    ..FileScan::default()
                };
                f.rows.insert((Origin::new(agent, SpoolId(1)), seq), 5);
                state.on_file(&f);
            }
            state.on_audit(&record(
                agent,
                hour.end_ms() + 1,
                AuditBody::Heartbeat(Heartbeat {
                    final_before_hour: hour.next(),
                    ..Heartbeat::default()
                }),
            ));
        }
    }
    let now = Hour(FIRST.0 + HOURS).end_ms();
    for (ty, hour, closing) in state.due(now, &POLICY, HOURS as usize + 1) {
        if Some(hour) == open {
            continue;
        }
        let report = state.report(&ty, hour, now, &POLICY);
        state.on_closed(AuditState::marker(&report, closing, vec![], "t", now));
    }
    state
}

fn state() -> AuditState {
    state_with_open(None)
}

#[test]
fn pruning_forgets_closed_hours_before_the_floor_and_keeps_the_window_as_it_was() {
    let mut state = state();
    let before = state.size();
    assert_eq!(before.batches, 2 * HOURS as usize, "h2's, not settled");
    assert_eq!(before.cells, 2 * HOURS as usize);
    let floor = Hour(FIRST.0 + HOURS - 48);
    let now = Hour(FIRST.0 + HOURS).end_ms();
    let window: Vec<HourReport> = (floor.0..FIRST.0 + HOURS)
        .flat_map(|h| ["A", "B"].map(|t| state.report(t, Hour(h), now, &POLICY)))
        .collect();
    state.prune(floor);
    let after = state.size();
    assert_eq!(after.batches, 2 * 48, "{before:?} -> {after:?}");
    assert_eq!(after.landed, 2 * 48);
    assert_eq!(after.cells, 2 * 48);
    assert_eq!(after.closed, 2 * 48);
    let kept: Vec<HourReport> = (floor.0..FIRST.0 + HOURS)
        .flat_map(|h| ["A", "B"].map(|t| state.report(t, Hour(h), now, &POLICY)))
        .collect();
    assert_eq!(kept, window, "the window reads the same after pruning");
    // A retransmitted announcement of a pruned hour is ignored, not re-counted.
    state.on_audit(&record(
        "h1",
        now,
        AuditBody::Announcement(Announcement {
            event_type: "A".into(),
            bucket_hour: FIRST,
            batch_seq: 1,
            event_count: 5,
        }),
    ));
    assert_eq!(state.size(), after);
    assert!(state.active_hours(1_000).iter().all(|h| *h >= floor));
}

#[test]
fn hours_before_the_floor_that_are_not_closed_stay_until_they_close() {
    let open = Hour(FIRST.0 + 3);
    let mut state = state_with_open(Some(open));
    state.prune(Hour(FIRST.0 + 50));
    let now = Hour(FIRST.0 + HOURS).end_ms();
    assert_eq!(state.report("A", open, now, &POLICY).published, 10);
    assert!(!state.is_closed("A", open));
    assert_eq!(
        state.report("A", Hour(FIRST.0 + 4), now, &POLICY).published,
        0,
        "a closed old hour is forgotten"
    );
}
