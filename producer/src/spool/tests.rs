//! Spool tests: a proptest model with crashes, and damage with exact loss counts.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const LIMITS: SpoolLimits = SpoolLimits {
    dedup_window_us: 0,
    max_bytes: 1 << 30,
    segment_bytes: 600,
};
const TYPES: [&str; 3] = ["A", "Bee", "Cat"];

fn open(store: MemStore) -> (Spool<MemStore>, Recovered) {
    Spool::open(store, "agent-1", LIMITS).expect("open")
}

fn body(seq_hint: u64) -> Vec<u8> {
    format!("{{\"n\":{seq_hint}}}").into_bytes()
}

/// Appends events of type "A" (bodies from `hints`) and keeps them as pending.
fn append_a(
    spool: &mut Spool<MemStore>,
    pending: &mut BTreeMap<u64, PendingEvent>,
    hints: std::ops::Range<u64>,
) {
    for i in hints {
        let seq = spool.append_event(1, "A", &body(i)).unwrap();
        pending.insert(
            seq,
            PendingEvent {
                event_seq: seq,
                received_at_us: 1,
                event_type: "A".into(),
                body: body(i),
            },
        );
    }
}

/// Seals every pending event of `ty` as one batch, like the agent does.
fn seal(
    spool: &mut Spool<MemStore>,
    pending: &mut BTreeMap<u64, PendingEvent>,
    ty: &str,
) -> Option<u64> {
    let seqs: Vec<u64> = pending
        .values()
        .filter(|e| e.event_type == ty)
        .map(|e| e.event_seq)
        .collect();
    if seqs.is_empty() {
        return None;
    }
    let events = SeqRanges::from_ranges(seqs.iter().map(|&s| (s, s)));
    let batch_seq = spool.allocate_batch_seq();
    let bytes = format!("sealed-{batch_seq}").into_bytes();
    spool
        .append_sealed(SealedBatch {
            batch_seq,
            event_type: ty,
            bucket_hour: Hour(1),
            sealed_at_ms: 5,
            event_count: seqs.len() as u32,
            events: &events,
            bytes: &bytes,
        })
        .unwrap();
    for s in seqs {
        pending.remove(&s);
    }
    Some(batch_seq)
}

#[derive(Debug, Clone)]
enum Op {
    Append { ty: usize, n: usize },
    Sync,
    Seal { ty: usize },
    Ack { pick: usize },
    Crash { keep: usize },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 1..16usize).prop_map(|(ty, n)| Op::Append { ty, n }),
        3 => Just(Op::Sync),
        2 => (0..3usize).prop_map(|ty| Op::Seal { ty }),
        2 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        1 => any::<usize>().prop_map(|keep| Op::Crash { keep }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Every event acked to a client (synced) survives any crash: it is pending, in an
    /// unacked batch, or in a batch that was acked. No event is in two places.
    #[test]
    fn acked_events_survive_crashes(ops in prop::collection::vec(op(), 1..80)) {
        let (mut spool, rec) = open(MemStore::default());
        prop_assert!(rec.pending.is_empty());
        let mut pending: BTreeMap<u64, PendingEvent> = BTreeMap::new();
        let mut written: Vec<u64> = Vec::new();      // since the last sync
        let mut client_acked: BTreeSet<u64> = BTreeSet::new();
        let mut batch_events: BTreeMap<u64, SeqRanges> = BTreeMap::new(); // synced batches
        let mut unsynced_batches: BTreeMap<u64, SeqRanges> = BTreeMap::new();
        let mut acked_batches: BTreeSet<u64> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Append { ty, n } => {
                    // One group: a single write, split where a segment fills.
                    let b = body(0);
                    let results = spool.append_events(7, (0..n).map(|_| (TYPES[ty], b.as_slice()))).unwrap();
                    for result in results {
                        let seq = result.unwrap();
                        pending.insert(seq, PendingEvent { event_seq: seq, received_at_us: 7, event_type: TYPES[ty].into(), body: body(0) });
                        written.push(seq);
                    }
                }
                Op::Sync => {
                    spool.sync().unwrap();
                    client_acked.extend(written.drain(..));
                    batch_events.append(&mut unsynced_batches);
                }
                Op::Seal { ty } => {
                    let before: BTreeSet<u64> = pending.keys().copied().collect();
                    if let Some(b) = seal(&mut spool, &mut pending, TYPES[ty]) {
                        let after: BTreeSet<u64> = pending.keys().copied().collect();
                        let covered = SeqRanges::from_ranges(before.difference(&after).map(|&s| (s, s)));
                        unsynced_batches.insert(b, covered);
                    }
                }
                Op::Ack { pick } => {
                    // Only produced (synced) batches can be acked by a consumer.
                    let live: Vec<u64> = batch_events.keys().copied().filter(|b| !acked_batches.contains(b)).collect();
                    if !live.is_empty() {
                        let b = live[pick % live.len()];
                        spool.ack(&SeqRanges::from_ranges([(b, b)])).unwrap();
                        acked_batches.insert(b);
                    }
                }
                Op::Crash { .. } | Op::Reopen => {
                    let mut store = spool.into_store();
                    let clean = matches!(op, Op::Reopen);
                    if let Op::Crash { keep } = op {
                        store.crash(|unsynced| if unsynced == 0 { 0 } else { keep % (unsynced + 1) });
                    }
                    let (s, rec) = open(store);
                    spool = s;
                    prop_assert_eq!(rec.report.lost_event_count(), 0, "{:?}", rec.report);
                    prop_assert_eq!(rec.report.corrupt_regions, 0);
                    if clean {
                        client_acked.extend(written.drain(..));
                        batch_events.append(&mut unsynced_batches);
                    }
                    written.clear();
                    unsynced_batches.clear();
                    // Where is every client-acked event now?
                    let recovered_pending: BTreeSet<u64> = rec.pending.iter().map(|e| e.event_seq).collect();
                    let mut in_batches: BTreeMap<u64, u64> = BTreeMap::new();
                    let unacked: Vec<UnackedBatch> = spool.unacked().cloned().collect();
                    for b in &unacked {
                        prop_assert!(!acked_batches.contains(&b.batch_seq) || batch_events.contains_key(&b.batch_seq));
                        for (x, y) in b.events.iter() {
                            for e in x..=y {
                                prop_assert!(in_batches.insert(e, b.batch_seq).is_none(), "event {} in two batches", e);
                                prop_assert!(!recovered_pending.contains(&e), "event {} pending and batched", e);
                            }
                        }
                        prop_assert_eq!(spool.read_sealed(b.batch_seq).unwrap(), format!("sealed-{}", b.batch_seq).into_bytes());
                    }
                    for e in &client_acked {
                        let in_acked = acked_batches.iter().any(|b| batch_events[b].contains(*e));
                        prop_assert!(
                            recovered_pending.contains(e) || in_batches.contains_key(e) || in_acked,
                            "client-acked event {} lost", e
                        );
                    }
                    // Batches that were synced and not acked must all be back.
                    for b in batch_events.keys().filter(|b| !acked_batches.contains(b)) {
                        prop_assert!(unacked.iter().any(|u| u.batch_seq == *b), "batch {} lost", b);
                    }
                    // Only synced batches can have been produced (rule 3), so only their
                    // seqs must never come back.
                    let max_synced = batch_events.keys().max().copied().unwrap_or(0);
                    prop_assert!(spool.stats().next_batch_seq > max_synced, "batch seq {} would be reused", max_synced);
                    // Resume: the test's view of pending is what recovery says.
                    pending = rec.pending.into_iter().map(|e| (e.event_seq, e)).collect();
                    // Events in lost unsynced batches are pending again (their seal was lost).
                    batch_events.retain(|b, _| acked_batches.contains(b) || unacked.iter().any(|u| u.batch_seq == *b));
                }
            }
        }
    }
}

#[test]
fn acked_segments_are_freed_and_counters_survive() {
    let (mut spool, _) = open(MemStore::default());
    let mut pending = BTreeMap::new();
    append_a(&mut spool, &mut pending, 0..200);
    let b = seal(&mut spool, &mut pending, "A").unwrap();
    spool.sync().unwrap();
    assert!(spool.stats().segments > 3);
    spool.ack(&SeqRanges::from_ranges([(b, b)])).unwrap();
    spool.sync().unwrap();
    assert_eq!(
        spool.stats().segments,
        1,
        "everything acked: only the active segment stays"
    );
    let stats = spool.stats();
    let (spool, rec) = open(spool.into_store());
    assert!(rec.pending.is_empty());
    assert_eq!(spool.stats().next_event_seq, stats.next_event_seq);
    assert_eq!(spool.stats().next_batch_seq, stats.next_batch_seq);
}

#[test]
fn spool_full_refuses_events_but_not_sealed_batches() {
    let limits = SpoolLimits {
        dedup_window_us: 0,
        max_bytes: 2_000,
        segment_bytes: 1 << 20,
    };
    let (mut spool, _) = Spool::open(MemStore::default(), "a", limits).unwrap();
    let mut refused = None;
    for i in 0..100 {
        if let Err(e) = spool.append_event(1, "A", &body(i)) {
            refused = Some(e);
            break;
        }
    }
    assert!(
        matches!(refused, Some(SpoolError::Full { .. })),
        "{refused:?}"
    );
    let events = SeqRanges::from_ranges([(1, 3)]);
    let seq = spool.allocate_batch_seq();
    spool
        .append_sealed(SealedBatch {
            batch_seq: seq,
            event_type: "A",
            bucket_hour: Hour(0),
            sealed_at_ms: 0,
            event_count: 3,
            events: &events,
            bytes: &[0; 100],
        })
        .expect("sealing must always make progress");
}

/// Rule 7 on a 6,000-byte disk: events are refused while a segment's worth (600 B)
/// must stay free, sealing and acking still work, every accepted event survives a
/// crash, and events are accepted again once space returns.
#[test]
fn a_full_disk_refuses_events_keeps_the_accepted_and_recovers() {
    let (mut spool, _) = open(MemStore::with_capacity(6_000));
    let mut pending = BTreeMap::new();
    let mut accepted = 0u64;
    let refusal = loop {
        match spool.append_event(1, "A", &body(accepted)) {
            Ok(seq) => {
                accepted += 1;
                pending.insert(
                    seq,
                    PendingEvent {
                        event_seq: seq,
                        received_at_us: 1,
                        event_type: "A".into(),
                        body: body(accepted - 1),
                    },
                );
            }
            Err(e) => break e,
        }
        spool.sync().unwrap();
    };
    assert!(
        matches!(refusal, SpoolError::DiskFull { reserve: 600, .. }),
        "{refusal:?}"
    );
    assert!(refusal.to_string().starts_with("spool full: the disk has"));
    let batch = seal(&mut spool, &mut pending, "A").expect("sealing fits in the reserve");
    spool.sync().unwrap();
    spool
        .ack(&SeqRanges::from_ranges([(batch, batch)]))
        .unwrap();
    spool.sync().unwrap();

    // Crash on the full disk; everything accepted is still there and acked as it was.
    let mut store = spool.into_store();
    store.crash(|_| 0);
    let (mut spool, recovered) = open(store);
    assert_eq!(recovered.report.lost_event_count(), 0);
    assert!(
        recovered.pending.is_empty(),
        "all {accepted} were sealed and acked"
    );
    // Space returns.
    let mut store = spool.into_store();
    store.set_capacity(Some(60_000));
    spool = open(store).0;
    spool.append_event(2, "A", &body(0)).expect("room again");
}

/// A write that runs out of disk half-way is cut back to a whole frame, and the spool
/// refuses rather than failing.
#[test]
fn a_short_write_on_a_full_disk_is_cut_back() {
    let (mut spool, _) = open(MemStore::with_capacity(u64::MAX));
    spool.append_event(1, "A", &body(1)).unwrap();
    spool.sync().unwrap();
    let mut store = spool.into_store();
    let used: u64 = store
        .list()
        .unwrap()
        .iter()
        .map(|&id| store.read_all(id).unwrap().len() as u64)
        .sum();
    // Room for half a frame only, and a spool that believes there is plenty.
    store.set_capacity(None);
    let (mut spool, _) = open(store);
    spool.store.set_capacity(Some(used + 40 + 10));
    let err = spool.append_event(1, "A", &[b'x'; 200]).unwrap_err();
    assert!(matches!(err, SpoolError::DiskFull { .. }), "{err:?}");
    spool.sync().unwrap();
    let mut store = spool.into_store();
    store.set_capacity(None);
    let (_, recovered) = open(store);
    assert_eq!(
        recovered.report.torn_tail_bytes, 0,
        "no partial frame was left"
    );
    assert_eq!(recovered.report.lost_event_count(), 0);
}

/// A group is written at once; when that write runs out of disk, every event of it
/// is refused, nothing of it stays on disk, and its seqs are used by the next events.
#[test]
fn a_group_cut_short_by_a_full_disk_is_refused_whole() {
    let (mut spool, _) = open(MemStore::with_capacity(u64::MAX));
    let first = spool.append_event(1, "A", &body(1)).unwrap();
    spool.sync().unwrap();
    let used: u64 = {
        let store = &mut spool.store;
        let ids = store.list().unwrap();
        ids.iter()
            .map(|&id| store.read_all(id).unwrap().len() as u64)
            .sum()
    };
    // Room for two and a half of the group's five frames, in a spool that believes
    // there is plenty.
    let frame = Spool::<MemStore>::event_frame_bytes("A", 40);
    spool.store.set_capacity(Some(used + frame * 5 / 2));
    let bodies = [[b'x'; 40]; 5];
    let results = spool
        .append_events(2, bodies.iter().map(|b| ("A", b.as_slice())))
        .unwrap();
    assert_eq!(results.len(), 5);
    for r in &results {
        assert!(matches!(r, Err(SpoolError::DiskFull { .. })), "{r:?}");
    }
    spool.store.set_capacity(None);
    let again = spool.append_event(3, "A", &body(3)).unwrap();
    assert_eq!(again, first + 1, "the refused group's seqs are not skipped");
    spool.sync().unwrap();
    let (_, recovered) = open(spool.into_store());
    assert_eq!(
        recovered.report.torn_tail_bytes, 0,
        "no partial frame was left"
    );
    assert_eq!(recovered.report.lost_event_count(), 0);
    let seqs: Vec<u64> = recovered.pending.iter().map(|e| e.event_seq).collect();
    assert_eq!(seqs, vec![first, again]);
}

/// A group larger than a segment continues in new segments, each starting with its
/// header, and every event of it is recovered once, in order.
#[test]
fn a_group_spans_segments() {
    let (mut spool, _) = open(MemStore::default());
    let bodies: Vec<Vec<u8>> = (0..100).map(body).collect();
    let results = spool
        .append_events(1, bodies.iter().map(|b| ("Bee", b.as_slice())))
        .unwrap();
    let seqs: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    assert!(spool.stats().segments > 5, "{:?}", spool.stats());
    spool.sync().unwrap();
    let (_, recovered) = open(spool.into_store());
    let got: Vec<(u64, Vec<u8>)> = recovered
        .pending
        .into_iter()
        .map(|e| (e.event_seq, e.body))
        .collect();
    let want: Vec<(u64, Vec<u8>)> = (1..=100).zip(bodies).collect();
    assert_eq!(got, want);
}

/// Rule 8: the incarnation survives every reopen (also when every older segment was
/// freed); a spool created anew in an empty place gets another one.
#[test]
fn a_spool_keeps_its_incarnation_and_a_new_spool_gets_another() {
    let (mut spool, _) = open(MemStore::default());
    let first = spool.spool_id();
    assert_ne!(first, SpoolId::LEGACY);
    let mut pending = BTreeMap::new();
    append_a(&mut spool, &mut pending, 0..50);
    let b = seal(&mut spool, &mut pending, "A").unwrap();
    spool.sync().unwrap();
    spool.ack(&SeqRanges::from_ranges([(b, b)])).unwrap();
    spool.sync().unwrap();
    let (spool, _) = open(spool.into_store());
    assert_eq!(spool.spool_id(), first, "reopened: same incarnation");
    assert_eq!(spool.stats().next_batch_seq, b + 1);
    // Wiped: the same agent id starts at batch seq 1 again, under a new incarnation.
    let (wiped, _) = open(MemStore::default());
    assert_eq!(wiped.stats().next_batch_seq, 1);
    assert_ne!(wiped.spool_id(), first);
}

#[test]
fn segments_of_two_spools_are_refused() {
    let (a, _) = Spool::open_with(MemStore::default(), "agent-1", LIMITS, SpoolId(1)).unwrap();
    let (b, _) = Spool::open_with(MemStore::default(), "agent-1", LIMITS, SpoolId(2)).unwrap();
    let mut store = a.into_store();
    let mut other = b.into_store();
    // Segment 1 of spool 2 copied in as segment 2 of spool 1.
    let copied = other.read_all(1).unwrap();
    store.create(2).unwrap();
    store.append(2, &copied).unwrap();
    let err = Spool::open(store, "agent-1", LIMITS).err().unwrap();
    assert!(matches!(err, SpoolError::MixedSpools { .. }), "{err}");
}

#[test]
fn another_agents_spool_is_refused() {
    let (spool, _) = open(MemStore::default());
    let err = Spool::open(spool.into_store(), "agent-2", LIMITS)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("belongs to agent \"agent-1\""),
        "{err}"
    );
}

/// A spool of `n` synced events in segment 1..: returns the store and each event's
/// (segment, frame start, frame end).
fn spool_with_events(n: u64) -> (MemStore, Vec<(u64, usize, usize)>) {
    let limits = SpoolLimits {
        dedup_window_us: 0,
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
    };
    let (mut spool, _) = Spool::open(MemStore::default(), "agent-1", limits).unwrap();
    for i in 0..n {
        spool.append_event(1, "A", &body(i)).unwrap();
    }
    spool.sync().unwrap();
    let mut store = spool.into_store();
    let buf = store.read_all(1).unwrap();
    let mut frames = Vec::new();
    let mut at = 0;
    while let Read::Frame(f, len) = frame::decode(&buf[at..]) {
        if matches!(f, Frame::Event { .. }) {
            frames.push((1, at, at + len));
        }
        at += len;
    }
    assert_eq!(frames.len() as u64, n);
    (store, frames)
}

#[test]
fn truncating_the_last_record_at_every_byte_is_a_torn_tail() {
    let (store, frames) = spool_with_events(20);
    let (_, start, end) = *frames.last().unwrap();
    for cut in start..end {
        let mut s = store.clone();
        s.bytes_mut(1).unwrap().truncate(cut);
        let (_, rec) = Spool::open(s, "agent-1", LIMITS).unwrap();
        assert_eq!(rec.pending.len(), 19, "cut at {cut}");
        assert_eq!(rec.report.torn_tail_bytes, (cut - start) as u64);
        assert_eq!(rec.report.lost_event_count(), 0);
    }
}

#[test]
fn a_truncated_older_segment_reports_exactly_the_events_cut() {
    let (store, frames) = spool_with_events(20);
    // Reopening starts segment 2, so segment 1 is no longer the newest.
    let (spool, _) = Spool::open(store, "agent-1", LIMITS).unwrap();
    let store = spool.into_store();
    for (i, &(_, start, end)) in frames.iter().enumerate() {
        for cut in [start, (start + end) / 2, end - 1] {
            let mut s = store.clone();
            s.bytes_mut(1).unwrap().truncate(cut);
            let (_, rec) = Spool::open(s, "agent-1", LIMITS).unwrap();
            let lost = 20 - i as u64;
            assert_eq!(rec.report.lost_event_count(), lost, "cut at {cut}");
            assert_eq!(rec.pending.len() as u64, 20 - lost);
        }
    }
}

#[test]
fn bit_flips_report_exact_losses_and_never_panic() {
    let (store, frames) = spool_with_events(30);
    let (spool, _) = Spool::open(store, "agent-1", LIMITS).unwrap();
    let store = spool.into_store();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for round in 0..300 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let len = store.clone().read_all(1).unwrap().len();
        let at = (rng as usize) % len;
        let bit = (rng >> 40) % 8;
        let mut s = store.clone();
        s.bytes_mut(1).unwrap()[at] ^= 1 << bit;
        let (_, rec) = Spool::open(s, "agent-1", LIMITS)
            .unwrap_or_else(|e| panic!("round {round}: flip at {at}: {e}"));
        let hit = frames.iter().position(|&(_, a, b)| a <= at && at < b);
        let expected_lost = u64::from(hit.is_some());
        assert_eq!(
            rec.report.lost_event_count(),
            expected_lost,
            "round {round}: flip at byte {at} bit {bit} (event frame {hit:?}): {:?}",
            rec.report
        );
        assert_eq!(rec.pending.len() as u64, 30 - expected_lost);
    }
}

#[test]
fn a_corrupt_sealed_frame_never_lets_its_batch_seq_be_reused() {
    let (mut spool, _) = open(MemStore::default());
    let mut pending = BTreeMap::new();
    append_a(&mut spool, &mut pending, 0..5);
    let b = seal(&mut spool, &mut pending, "A").unwrap();
    spool.append_event(1, "A", &body(9)).unwrap(); // a valid frame after the damage
    spool.sync().unwrap();
    let mut store = spool.into_store();
    // Damage the sealed frame (its payload sits just before the last event frame).
    let buf = store.read_all(1).unwrap();
    let at = buf
        .windows(b"sealed-".len())
        .position(|w| w == b"sealed-")
        .unwrap();
    store.bytes_mut(1).unwrap()[at] ^= 0xff;
    let (spool, rec) = Spool::open(store, "agent-1", LIMITS).unwrap();
    assert_eq!(rec.report.corrupt_regions, 1, "{:?}", rec.report);
    assert!(
        spool.stats().next_batch_seq > b,
        "batch {b} may have been produced before its frame was damaged: its seq must not come back"
    );
    // Its events are pending again (they will be re-batched under a new seq).
    assert_eq!(rec.pending.len(), 6);
}

/// A disk that acked an fsync it did not keep: the sealed frame, synced (so its batch
/// may have been produced and committed), is cut short at the tail. Its seq must not
/// come back for other contents, or the consumer drops the new batch as a duplicate.
#[test]
fn a_torn_sealed_frame_at_the_tail_never_lets_its_batch_seq_be_reused() {
    let (mut spool, _) = open(MemStore::default());
    let mut pending = BTreeMap::new();
    append_a(&mut spool, &mut pending, 0..5);
    spool.sync().unwrap();
    let b = seal(&mut spool, &mut pending, "A").unwrap();
    spool.sync().unwrap();
    let mut store = spool.into_store();
    // The disk kept only part of the sealed frame it said was synced.
    let len = store.read_all(1).unwrap().len();
    store.truncate(1, (len - 5) as u64).unwrap();
    let (spool, rec) = Spool::open(store, "agent-1", LIMITS).unwrap();
    assert!(rec.report.torn_tail_bytes > 0, "{:?}", rec.report);
    assert!(
        spool.stats().next_batch_seq > b,
        "batch {b} may have been produced before the disk lost its frame: its seq must not come back"
    );
}

/// A retransmit re-reads the sealed bytes from disk: bytes the disk changed since
/// they were written must not go out (before, they were sent as they were).
#[test]
fn a_sealed_frame_changed_on_disk_is_not_read_for_a_retransmit() {
    let (mut spool, _) = open(MemStore::default());
    let mut pending = BTreeMap::new();
    append_a(&mut spool, &mut pending, 1..2);
    let b = seal(&mut spool, &mut pending, "A").unwrap();
    spool.sync().unwrap();
    assert_eq!(
        spool.read_sealed(b).unwrap(),
        format!("sealed-{b}").into_bytes()
    );
    // The disk flips a bit of the sealed bytes after they were written.
    let buf = spool.store.read_all(1).unwrap();
    let at = buf
        .windows(b"sealed-".len())
        .position(|w| w == b"sealed-")
        .unwrap();
    spool.store.bytes_mut(1).unwrap()[at] ^= 0x01;
    let err = spool.read_sealed(b).unwrap_err();
    assert!(
        matches!(err, SpoolError::CorruptSealed(x) if x == b),
        "{err}"
    );
}

/// Acked segments holding client ids outlive their acks by the dedup window (measured
/// from their newest event and from every open), and recovery hands the ids back.
#[test]
fn acked_segments_keep_client_ids_for_the_dedup_window_across_a_crash() {
    let limits = SpoolLimits {
        dedup_window_us: 1_000,
        max_bytes: 1 << 30,
        segment_bytes: 200,
    };
    let (mut spool, _) = Spool::open(MemStore::default(), "agent-1", limits).unwrap();
    let mut pending = BTreeMap::new();
    for i in 0..6u64 {
        let line = format!(r#"{{"type":"A","ts":1,"event_id":"id-{i}"}}"#);
        let seq = spool
            .append_event(100 + i as i64, "A", line.as_bytes())
            .unwrap();
        pending.insert(
            seq,
            PendingEvent {
                event_seq: seq,
                received_at_us: 100,
                event_type: "A".into(),
                body: line.into_bytes(),
            },
        );
    }
    let batch = seal(&mut spool, &mut pending, "A").unwrap();
    spool.sync().unwrap();
    let segments = spool.stats().segments;
    assert!(segments > 2, "the test needs several segments");
    spool
        .ack(&SeqRanges::from_ranges([(batch, batch)]))
        .unwrap();
    spool.expire(500).unwrap();
    assert_eq!(spool.stats().segments, segments, "kept within the window");
    // A crash now: every id comes back, and the window restarts at the next open.
    let (mut spool, rec) = Spool::open(spool.into_store(), "agent-1", limits).unwrap();
    let ids: Vec<&str> = rec.ids.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids, ["id-0", "id-1", "id-2", "id-3", "id-4", "id-5"]);
    assert!(rec.pending.is_empty() && spool.unacked().next().is_none());
    spool.expire(5_000).unwrap();
    let kept = spool.stats().segments;
    assert!(kept > 1, "kept for a window after the open");
    spool.expire(6_001).unwrap();
    assert_eq!(spool.stats().segments, 1, "freed once the window is over");
}

#[test]
fn new_events_win_over_remembered_ids_when_space_is_short() {
    let limits = SpoolLimits {
        dedup_window_us: 1_000_000_000,
        max_bytes: 2_000,
        segment_bytes: 300,
    };
    let (mut spool, _) = Spool::open(MemStore::default(), "agent-1", limits).unwrap();
    let mut pending = BTreeMap::new();
    let mut now = 0;
    // Fill, seal, ack, again and again: dead segments are dropped for new events.
    for round in 0..20 {
        loop {
            now += 1;
            match spool.append_event(now, "A", &body(round)) {
                Ok(seq) => {
                    pending.insert(
                        seq,
                        PendingEvent {
                            event_seq: seq,
                            received_at_us: now,
                            event_type: "A".into(),
                            body: body(round),
                        },
                    );
                }
                Err(SpoolError::Full { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let batch = seal(&mut spool, &mut pending, "A").unwrap();
        spool.sync().unwrap();
        spool
            .ack(&SeqRanges::from_ranges([(batch, batch)]))
            .unwrap();
        assert!(
            spool.append_event(now, "A", &body(round)).is_ok(),
            "round {round}: acked segments kept for dedup blocked a new event"
        );
        spool.sync().unwrap();
        pending.clear();
        let batch = seal_all_pending(&mut spool);
        spool
            .ack(&SeqRanges::from_ranges([(batch, batch)]))
            .unwrap();
    }
}

/// Seals whatever the spool holds unsealed after a recovery-free run (test helper).
fn seal_all_pending(spool: &mut Spool<MemStore>) -> u64 {
    let batch_seq = spool.allocate_batch_seq();
    let events = SeqRanges::from_ranges([(
        spool.stats().next_event_seq - 1,
        spool.stats().next_event_seq - 1,
    )]);
    spool
        .append_sealed(SealedBatch {
            batch_seq,
            event_type: "A",
            bucket_hour: Hour(1),
            sealed_at_ms: 5,
            event_count: 1,
            events: &events,
            bytes: b"x",
        })
        .unwrap();
    spool.sync().unwrap();
    batch_seq
}
