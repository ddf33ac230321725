//! Settling batches changes nothing a report says: the auditor's cells, fed announcements
//! and file scans in any order, against a model that keeps every batch.

use std::collections::{BTreeMap, BTreeSet};

use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord};
use evd_schemas::{Hour, Origin, SpoolId, Tier};
use proptest::prelude::*;

use super::tests::POLICY;
use super::*;

const H: Hour = Hour(493_500);
const TYPES: [&str; 2] = ["A", "B"];
const AGENTS: [&str; 2] = ["h1", "h2"];

#[derive(Debug, Clone)]
struct Batch {
    agent: usize,
    seq: u64,
    ty: usize,
    hour: Hour,
    events: u32,
}

/// One input to the state.
#[derive(Debug, Clone)]
enum Input {
    Announce(usize),
    /// `rows` of batch `i` in a file of its type in `folder`.
    Land {
        i: usize,
        folder: Hour,
        rows: u64,
    },
}

fn origin(agent: usize) -> Origin {
    Origin::new(AGENTS[agent], SpoolId(1))
}

/// Batches with their announcements (some twice) and landings: whole, short or long,
/// in their hour's folder or the next, and some landed again in the same folder.
fn scenario() -> impl Strategy<Value = (Vec<Batch>, Vec<Input>)> {
    let batch = (0..2usize, 0..2usize, 0..2u32, 1..5u32);
    let landing = (0..2u32, 0..4u8, prop::option::of(0..2u8), any::<bool>());
    prop::collection::vec((batch, landing), 1..14).prop_flat_map(|specs| {
        let mut next_seq = [0u64; 2];
        let mut batches = Vec::new();
        let mut inputs = Vec::new();
        for (i, ((agent, ty, h, events), (skew, size, again, twice))) in
            specs.into_iter().enumerate()
        {
            next_seq[agent] += 1;
            let hour = Hour(H.0 + h);
            batches.push(Batch {
                agent,
                seq: next_seq[agent],
                ty,
                hour,
                events,
            });
            inputs.push(Input::Announce(i));
            if twice {
                inputs.push(Input::Announce(i));
            }
            let folder = Hour(hour.0 + skew);
            let rows = match size {
                0 => continue, // never landed
                1 => u64::from(events) - 1,
                2 => u64::from(events),
                _ => u64::from(events) + 1,
            };
            if rows > 0 {
                inputs.push(Input::Land { i, folder, rows });
            }
            if let Some(r) = again {
                let rows = if r == 0 { 1 } else { u64::from(events) };
                inputs.push(Input::Land { i, folder, rows });
            }
        }
        (Just(batches), Just(inputs).prop_shuffle())
    })
}

/// Per (type, hour, agent): (published, delivered, duplicates, skew, seqs short).
type Cells = BTreeMap<(usize, Hour, usize), (u64, u64, u64, u64, Vec<u64>)>;

/// What the reports must say: every batch kept, rows summed per batch and folder.
fn model(batches: &[Batch], inputs: &[Input]) -> Cells {
    let announced: BTreeSet<usize> = inputs
        .iter()
        .filter_map(|i| match i {
            Input::Announce(b) => Some(*b),
            Input::Land { .. } => None,
        })
        .collect();
    let mut cells = Cells::new();
    for &i in &announced {
        let b = &batches[i];
        let landings = inputs.iter().filter_map(|x| match x {
            Input::Land { i: j, folder, rows } if *j == i => Some((*folder, *rows)),
            _ => None,
        });
        let (mut rows, mut later) = (0, 0);
        for (folder, n) in landings {
            rows += n;
            if folder > b.hour {
                later += n;
            }
        }
        let events = u64::from(b.events);
        let cell = cells.entry((b.ty, b.hour, b.agent)).or_default();
        cell.0 += events;
        cell.1 += rows.min(events);
        cell.2 += rows.saturating_sub(events);
        cell.3 += later;
        if rows < events {
            cell.4.push(b.seq);
        }
    }
    cells
}

fn fed(batches: &[Batch], inputs: &[Input]) -> AuditState {
    let mut state = AuditState::new(TYPES.map(|t| (t.to_string(), Tier::Normal)));
    for input in inputs {
        match input {
            Input::Announce(i) => {
                let b = &batches[*i];
                state.on_audit(&AuditRecord {
                    agent_id: AGENTS[b.agent].into(),
                    spool_id: SpoolId(1),
                    at_ms: b.hour.start_ms() + 1,
                    body: AuditBody::Announcement(Announcement {
                        event_type: TYPES[b.ty].into(),
                        bucket_hour: b.hour,
                        batch_seq: b.seq,
                        event_count: b.events,
                    }),
                });
            }
            Input::Land { i, folder, rows } => {
                let b = &batches[*i];
                let mut scan = FileScan {
                    event_type: TYPES[b.ty].into(),
                    folder_hour: *folder,
                    ..FileScan::default()
                };
                scan.rows.insert((origin(b.agent), b.seq), *rows);
                state.on_file(&scan);
            }
        }
    }
    state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn reports_are_those_of_a_state_that_keeps_every_batch((batches, inputs) in scenario()) {
        let state = fed(&batches, &inputs);
        let want = model(&batches, &inputs);
        for (t, ty) in TYPES.iter().enumerate() {
            for h in 0..3 {
                let hour = Hour(H.0 + h);
                let report = state.report(ty, hour, hour.end_ms(), &POLICY);
                let mut totals = (0, 0, 0, 0);
                for (a, agent) in AGENTS.iter().enumerate() {
                    let (published, delivered, duplicates, skew, short) =
                        want.get(&(t, hour, a)).cloned().unwrap_or_default();
                    totals.0 += published;
                    totals.1 += delivered;
                    totals.2 += duplicates;
                    totals.3 += skew;
                    let row = report.agents.iter().find(|r| r.agent_id == *agent);
                    let got = row.map_or((0, 0, vec![]), |r| {
                        let seqs = r.missing_batch_seqs.iter().flat_map(|&(a, z)| a..=z).collect();
                        (r.published, r.delivered, seqs)
                    });
                    prop_assert_eq!(got, (published, delivered, short), "{} {} {}", ty, h, agent);
                }
                let got = (report.published, report.delivered, report.duplicates, report.skew);
                prop_assert_eq!(got, totals, "{} hour +{}", ty, h);
            }
        }
    }
}
