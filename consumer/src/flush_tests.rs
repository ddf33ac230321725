use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use evd_schemas::Origin;
use evd_schemas::wire::batch::OpenedBatch;
use proptest::prelude::*;

use super::*;
use crate::test_batches::{HOUR, opened, page_view, registry};

fn builder() -> FlushBuilder {
    FlushBuilder::new("c1", 1_000, DeliveryFaults::default())
}

/// Stands in for Parquet: the bytes only need a length here.
fn encode(batch: &RecordBatch) -> Result<Bytes, Infallible> {
    Ok(Bytes::from(vec![0; batch.num_rows()]))
}

fn seal(b: &mut FlushBuilder) -> Sealed {
    b.seal(5_000, encode).unwrap().expect("something to seal")
}

fn at(partition: i32) -> Partition {
    ("evd.events.PageView".into(), partition)
}

#[test]
fn a_batch_offered_twice_in_one_flush_is_written_once() {
    let (mut b, now) = (builder(), Instant::now());
    let pv = opened(
        "a",
        1,
        "PageView",
        HOUR,
        &[&page_view("u1"), &page_view("u2")],
    );
    b.note_message(at(0), 10, now);
    assert_eq!(
        b.offer(&Ledger::default(), &registry(), &pv),
        Offered::Added {
            rows: 2,
            rejected: 0
        }
    );
    b.note_message(at(0), 11, now);
    assert_eq!(
        b.offer(&Ledger::default(), &registry(), &pv),
        Offered::InFlush
    );
    let sealed = seal(&mut b);
    assert_eq!(sealed.rows, 2);
    assert_eq!(sealed.manifest.batches.len(), 1);
    assert_eq!(sealed.manifest.batches[0].ranges, vec![(1, 1)]);
    assert_eq!(sealed.manifest.delivered[0].events, 2);
    assert_eq!(sealed.manifest.offsets[0].next_offset, 12);
    assert_eq!(sealed.offsets, BTreeMap::from([(at(0), 12)]));
    assert_eq!(sealed.first_offsets[&at(0)], 10);
    assert!(b.is_empty());
}

#[test]
fn a_committed_batch_is_not_written_again_but_acked_again() {
    let (mut b, now) = (builder(), Instant::now());
    let pv = opened("a", 1, "PageView", HOUR, &[&page_view("u1")]);
    b.note_message(at(0), 0, now);
    b.offer(&Ledger::default(), &registry(), &pv);
    let sealed = seal(&mut b);
    let mut ledger = Ledger::default();
    ledger.apply(&sealed.manifest);
    b.note_message(at(0), 1, now);
    assert_eq!(b.offer(&ledger, &registry(), &pv), Offered::Committed);
    let reacks = b.take_reacks();
    assert!(reacks[&Origin::new("a", pv.header.meta.spool_id)].contains(1));
    assert!(b.take_reacks().is_empty(), "taken once");
    let second = seal(&mut b);
    assert!(second.manifest.batches.is_empty() && second.manifest.files.is_empty());
    assert_ne!(second.manifest.flush_id, sealed.manifest.flush_id);
}

#[test]
fn files_are_per_type_and_hour_and_rejected_events_are_one_document() {
    let (mut b, now) = (builder(), Instant::now());
    let bad = r#"{"type":"PageView","ts":1700000000000}"#;
    b.note_message(at(0), 0, now);
    b.offer(
        &Ledger::default(),
        &registry(),
        &opened("a", 1, "PageView", HOUR, &[&page_view("u"), bad]),
    );
    b.note_message(at(0), 1, now);
    b.offer(
        &Ledger::default(),
        &registry(),
        &opened("a", 2, "PageView", HOUR.next(), &[&page_view("v")]),
    );
    let sealed = seal(&mut b);
    let id = &sealed.manifest.flush_id;
    assert_eq!(id, "c1-1000-000001");
    let finals: Vec<_> = sealed
        .manifest
        .files
        .iter()
        .map(|f| f.final_path.clone())
        .collect();
    assert_eq!(finals.len(), 2);
    assert!(finals[0].starts_with(&format!("PageView/{}/", HOUR.partition_path())));
    assert!(finals[1].starts_with(&format!("PageView/{}/", HOUR.next().partition_path())));
    assert_eq!(sealed.staged.len(), 2);
    assert_eq!(sealed.staged[0].0, sealed.manifest.files[0].staging);
    let (name, doc) = sealed.rejected.expect("one rejected event");
    assert_eq!(name, format!("_quarantine/schema/{id}.jsonl"));
    assert_eq!(sealed.manifest.quarantine, vec![name]);
    let line: serde_json::Value = serde_json::from_slice(doc.trim_ascii_end()).unwrap();
    assert_eq!(line["batch_seq"], 1);
    assert_eq!(line["event_seq"], 2);
    let first_hour = &sealed.manifest.delivered[0];
    assert_eq!((first_hour.events, first_hour.quarantined), (1, 1));
}

#[test]
fn an_unknown_type_is_quarantined_and_not_listed() {
    let (mut b, now) = (builder(), Instant::now());
    b.note_message(at(0), 0, now);
    let other = opened("a", 1, "Signup", HOUR, &[r#"{"type":"Signup","ts":1}"#]);
    let offered = b.offer(&Ledger::default(), &registry(), &other);
    assert!(matches!(
        offered,
        Offered::Quarantine {
            reason: "unknown_type",
            ..
        }
    ));
    b.note_quarantined("_quarantine/unknown_type/x".into());
    let sealed = seal(&mut b);
    assert!(sealed.manifest.batches.is_empty());
    assert_eq!(
        sealed.manifest.quarantine,
        vec!["_quarantine/unknown_type/x".to_string()]
    );
    assert_eq!(
        sealed.manifest.offsets[0].next_offset, 1,
        "its offset still advances"
    );
}

#[test]
fn a_flush_is_due_by_rows_bytes_or_age() {
    let (mut b, now) = (builder(), Instant::now());
    let limits = FlushLimits {
        max_rows: 3,
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(5),
    };
    assert!(
        !b.due(&limits, now + Duration::from_secs(60)),
        "nothing held"
    );
    b.note_message(at(0), 0, now);
    b.offer(
        &Ledger::default(),
        &registry(),
        &opened("a", 1, "PageView", HOUR, &[&page_view("u")]),
    );
    assert!(!b.due(&limits, now + Duration::from_secs(4)));
    assert!(b.due(&limits, now + Duration::from_secs(5)));
    b.offer(
        &Ledger::default(),
        &registry(),
        &opened(
            "a",
            2,
            "PageView",
            HOUR,
            &[&page_view("u"), &page_view("v")],
        ),
    );
    assert!(b.due(&limits, now));
    let by_bytes = FlushLimits {
        max_rows: 100,
        max_bytes: 10,
        ..limits
    };
    assert!(b.due(&by_bytes, now));
}

#[test]
fn abandoning_returns_where_each_partition_began_and_holds_nothing() {
    let (mut b, now) = (builder(), Instant::now());
    b.note_message(at(0), 7, now);
    b.note_message(at(1), 3, now);
    b.note_message(at(0), 8, now);
    b.offer(
        &Ledger::default(),
        &registry(),
        &opened("a", 1, "PageView", HOUR, &[&page_view("u")]),
    );
    let rewind = b.abandon();
    assert_eq!(rewind, BTreeMap::from([(at(0), 7), (at(1), 3)]));
    assert!(b.is_empty());
    assert!(b.seal(0, encode).unwrap().is_none());
    // The batch is offered afresh afterwards.
    b.note_message(at(0), 7, now);
    let again = b.offer(
        &Ledger::default(),
        &registry(),
        &opened("a", 1, "PageView", HOUR, &[&page_view("u")]),
    );
    assert_eq!(
        again,
        Offered::Added {
            rows: 1,
            rejected: 0
        }
    );
}

#[test]
fn a_deliberately_lost_batch_is_listed_without_rows() {
    let faults = DeliveryFaults {
        skip_dedup: false,
        lose_batch_seq: Some(2),
    };
    let (mut b, now) = (FlushBuilder::new("c1", 0, faults), Instant::now());
    b.note_message(at(0), 0, now);
    b.offer(
        &Ledger::default(),
        &registry(),
        &opened("a", 2, "PageView", HOUR, &[&page_view("u")]),
    );
    let sealed = seal(&mut b);
    assert_eq!(sealed.manifest.batches[0].ranges, vec![(2, 2)]);
    assert_eq!(sealed.rows, 0);
}

// ---- the exactly-once property ----

/// The batches of the model: agents a and b, seqs 1..=4, 1–3 events each; a/3 holds
/// a rejected event; b/4 is of a type the registry does not know.
fn universe() -> &'static Vec<OpenedBatch> {
    static BATCHES: OnceLock<Vec<OpenedBatch>> = OnceLock::new();
    BATCHES.get_or_init(|| {
        let mut out = Vec::new();
        for agent in ["a", "b"] {
            for seq in 1..=4u64 {
                let mut bodies: Vec<String> = (0..seq % 3 + 1)
                    .map(|i| page_view(&format!("u{i}")))
                    .collect();
                let ty = if (agent, seq) == ("b", 4) {
                    "Signup"
                } else {
                    "PageView"
                };
                if (agent, seq) == ("a", 3) {
                    bodies.push(r#"{"type":"PageView","ts":1}"#.into());
                }
                let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
                out.push(opened(agent, seq, ty, HOUR, &refs));
            }
        }
        out
    })
}

#[derive(Debug, Clone)]
enum Step {
    /// Consumer `c` reads batch `i` (a first read, a retransmit or a re-read).
    Read { c: usize, i: usize },
    /// Consumer `c` seals and tries to commit.
    Flush { c: usize },
    /// Consumer `c` loses its assignment: drops its flush and rebuilds its ledger.
    Rebalance { c: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..2usize, 0..8usize).prop_map(|(c, i)| Step::Read { c, i }),
        2 => (0..2usize).prop_map(|c| Step::Flush { c }),
        1 => (0..2usize).prop_map(|c| Step::Rebalance { c }),
    ]
}

/// One group member: its flush and its (possibly stale) ledger.
struct Member {
    flush: FlushBuilder,
    ledger: Ledger,
}

/// The committed manifests, as the object store holds them.
#[derive(Default)]
struct Store {
    manifests: Vec<Manifest>,
}

impl Store {
    fn ledger(&self) -> Ledger {
        let mut l = Ledger::default();
        self.manifests.iter().for_each(|m| l.apply(m));
        l
    }

    /// The shell's commit: the fence applies what the member has not seen and refuses
    /// a flush holding a batch committed meanwhile; otherwise the manifest is added.
    fn commit(&mut self, m: &mut Member) {
        let Some(sealed) = m.flush.seal(0, encode).unwrap() else {
            return;
        };
        for other in &self.manifests {
            if !m.ledger.has_applied(&other.flush_id) {
                m.ledger.apply(other);
            }
        }
        if m.ledger.first_committed(&sealed.manifest).is_some() {
            // Fenced: nothing of it is visible; the partitions are re-read (the model
            // re-reads everything at the end).
            return;
        }
        m.ledger.apply(&sealed.manifest);
        self.manifests.push(sealed.manifest);
    }
}

fn events_in(b: &OpenedBatch) -> u64 {
    b.records().len() as u64
}

proptest! {
    #[test]
    fn every_batch_lands_in_exactly_one_manifest(steps in prop::collection::vec(step(), 0..60)) {
        let now = Instant::now();
        let reg = registry();
        let mut members: Vec<Member> = (0..2)
            .map(|c| Member { flush: FlushBuilder::new(&format!("c{c}"), 0, DeliveryFaults::default()), ledger: Ledger::default() })
            .collect();
        let mut store = Store::default();
        let mut offset = 0;
        for s in steps {
            match s {
                Step::Read { c, i } => {
                    offset += 1;
                    let m = &mut members[c];
                    m.flush.note_message(at(c as i32), offset, now);
                    m.flush.offer(&m.ledger, &reg, &universe()[i]);
                }
                Step::Flush { c } => store.commit(&mut members[c]),
                Step::Rebalance { c } => {
                    members[c].flush.abandon();
                    members[c].ledger = store.ledger();
                }
            }
        }
        // Whatever was dropped is read again until every batch is committed.
        for m in &mut members {
            store.commit(m);
        }
        // A fenced flush is re-read with the ledger its fence brought up to date, so a
        // second round always commits.
        for _round in 0..2 {
            for b in universe() {
                offset += 1;
                let m = &mut members[0];
                m.flush.note_message(at(0), offset, now);
                m.flush.offer(&m.ledger, &reg, b);
            }
            store.commit(&mut members[0]);
        }

        let mut listed: BTreeMap<(String, u64), usize> = BTreeMap::new();
        for m in &store.manifests {
            for ab in &m.batches {
                for &(first, last) in &ab.ranges {
                    for seq in first..=last {
                        *listed.entry((ab.agent_id.clone(), seq)).or_default() += 1;
                    }
                }
            }
        }
        let mut rows_expected = 0;
        let mut deliverable = BTreeSet::new();
        for b in universe() {
            let meta = &b.header.meta;
            if meta.event_type == "PageView" {
                deliverable.insert((meta.agent_id.clone(), meta.batch_seq));
                rows_expected += events_in(b) - u64::from((meta.agent_id.as_str(), meta.batch_seq) == ("a", 3));
            }
        }
        prop_assert_eq!(listed.keys().cloned().collect::<BTreeSet<_>>(), deliverable);
        prop_assert!(listed.values().all(|&n| n == 1), "a batch in two manifests: {:?}", listed);
        let rows: u64 = store.manifests.iter().flat_map(|m| &m.files).map(|f| f.rows).sum();
        prop_assert_eq!(rows, rows_expected);
    }
}
