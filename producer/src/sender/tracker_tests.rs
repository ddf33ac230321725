use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const H: Hour = Hour(493_127);
const RETRANSMIT_MS: i64 = 30_000;

fn at(hour: Hour, plus_ms: i64) -> i64 {
    hour.start_ms() + plus_ms
}

fn batch(seq: u64, hour: Hour, bytes: Option<usize>) -> Outgoing {
    Outgoing {
        batch_seq: seq,
        event_type: "PageView".into(),
        bucket_hour: hour,
        event_count: 3,
        sealed_at_ms: at(hour, 1_000),
        bytes: bytes.map(|n| Arc::new(vec![0; n])),
    }
}

fn tracker() -> SendTracker {
    SendTracker::new(RETRANSMIT_MS, at(H, 0), 100)
}

/// Takes the oldest waiting batch and starts its send.
fn send_next(t: &mut SendTracker) -> (u64, Option<Arc<Vec<u8>>>, SendStart) {
    let seq = t.next_waiting().expect("a batch waits");
    let bytes = t.take_waiting(seq);
    let start = t.start(seq).expect("tracked");
    (seq, bytes, start)
}

fn seqs(list: &[u64]) -> SeqRanges {
    let mut s = SeqRanges::new();
    list.iter().for_each(|&x| {
        s.insert(x);
    });
    s
}

#[test]
fn a_batch_is_announced_once_and_retransmitted_when_its_ack_is_overdue() {
    let mut t = tracker();
    let now = at(H, 2_000);
    t.sealed(batch(1, H, Some(10)), now);
    assert_eq!(t.waiting(), 1);
    let (seq, bytes, start) = send_next(&mut t);
    assert_eq!((seq, bytes.map(|b| b.len())), (1, Some(10)));
    assert!(start.announce && !start.retransmit);
    t.announced(1);
    t.sent(1, now);
    let wait = retransmit_wait_ms(RETRANSMIT_MS, 1, 1);
    assert_eq!(t.queue_due_retransmits(now + wait - 1), 0, "not due yet");
    assert_eq!(t.queue_due_retransmits(now + wait), 1);
    assert_eq!(t.queue_due_retransmits(now + wait), 0, "queued once");
    let (_, bytes, again) = send_next(&mut t);
    assert!(bytes.is_none(), "read again from the spool");
    assert!(!again.announce && again.retransmit);
}

#[test]
fn a_batch_sealed_again_while_waiting_or_in_flight_is_queued_once() {
    let mut t = tracker();
    t.sealed(batch(1, H, None), 0);
    t.sealed(batch(1, H, None), 0);
    assert_eq!(t.waiting(), 1);
    send_next(&mut t);
    t.sealed(batch(1, H, None), 0);
    assert_eq!(t.waiting(), 0, "in flight: not queued again");
}

#[test]
fn acks_end_tracking_and_report_seal_to_ack_time() {
    let mut t = tracker();
    for seq in 1..=3 {
        t.sealed(batch(seq, H, Some(10)), 0);
    }
    assert_eq!(t.held_bytes(), 30);
    let latencies = t.acked(&seqs(&[1, 2, 9]), at(H, 4_000));
    assert_eq!(latencies, vec![3_000, 3_000], "9 was never tracked");
    assert_eq!((t.waiting(), t.held_bytes()), (1, 10));
    assert_eq!(t.next_waiting(), Some(3));
    assert!(t.start(1).is_none(), "an acked batch is not sent");
}

#[test]
fn bytes_are_held_only_within_the_budget_and_batches_found_at_start_are_retransmits() {
    let mut t = tracker();
    t.sealed(batch(1, H, Some(60)), 0);
    t.sealed(batch(2, H, Some(60)), 0);
    let mut found = batch(3, Hour(H.0 - 1), None);
    found.sealed_at_ms = at(H, -5_000);
    t.sealed(found, 0);
    assert_eq!(
        t.held_bytes(),
        60,
        "the second batch is over the 100-byte budget"
    );
    assert!(send_next(&mut t).1.is_some());
    assert!(send_next(&mut t).1.is_none());
    let (_, _, start) = send_next(&mut t);
    assert!(start.retransmit, "sealed before this agent started");
    t.forget(2);
    assert!(t.start(2).is_none());
}

#[test]
fn retransmits_back_off_only_while_no_ack_arrives() {
    let mut t = tracker();
    let sent_at = at(H, 0);
    t.sealed(batch(1, H, None), sent_at);
    for n in 1..=3 {
        send_next(&mut t);
        t.sent(1, sent_at);
        let wait = retransmit_wait_ms(RETRANSMIT_MS, n, 1);
        assert_eq!(t.queue_due_retransmits(sent_at + wait - 1), 0, "send {n}");
        assert_eq!(t.queue_due_retransmits(sent_at + wait), 1, "send {n}");
    }
    // Acks flow again (for other batches): the next wait is the base one.
    send_next(&mut t);
    t.sent(1, sent_at);
    t.acked(&seqs(&[7]), sent_at);
    assert_eq!(
        t.queue_due_retransmits(sent_at + retransmit_wait_ms(RETRANSMIT_MS, 1, 1)),
        1
    );
}

#[test]
fn the_watermark_waits_for_announcements_and_unsealed_hours() {
    let mut t = tracker();
    let now = at(Hour(H.0 + 2), 0);
    assert_eq!(
        t.final_before_hour(now, None),
        Hour(H.0 + 2),
        "nothing held back"
    );
    assert_eq!(t.final_before_hour(now, Some(Hour(H.0 + 1))), Hour(H.0 + 1));
    t.sealed(batch(1, H, None), now);
    assert_eq!(t.final_before_hour(now, None), H, "sealed, not announced");
    send_next(&mut t);
    assert_eq!(
        t.final_before_hour(now, None),
        H,
        "in flight, not announced"
    );
    t.announced(1);
    assert_eq!(t.final_before_hour(now, None), Hour(H.0 + 2));
    // Retransmits of an announced batch do not hold it back again.
    t.sent(1, now);
    t.queue_due_retransmits(now + 10 * RETRANSMIT_MS);
    assert_eq!(t.final_before_hour(now, None), Hour(H.0 + 2));
    // A batch acked before its announcement was confirmed no longer holds it back.
    t.sealed(batch(2, Hour(H.0 + 1), None), now);
    assert_eq!(t.final_before_hour(now, None), Hour(H.0 + 1));
    t.acked(&seqs(&[2]), now);
    assert_eq!(t.final_before_hour(now, None), Hour(H.0 + 2));
}

// ---- the watermark property the auditor relies on ----

#[derive(Debug, Clone)]
enum Op {
    /// The writer seals the next batch, of `hour_back` hours before now.
    Seal { hour_back: u32 },
    /// A free send slot takes the oldest waiting batch.
    Dispatch,
    /// The oldest in-flight send's announcement is confirmed.
    Announce,
    /// The oldest in-flight send is confirmed by Kafka.
    Send,
    /// The consumer acks the batch at this index among those tracked.
    Ack { pick: usize },
    /// Time passes; overdue batches are queued again.
    Tick { ms: i64 },
    /// The agent restarts: every unacked batch is found in the spool again.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3u32).prop_map(|hour_back| Op::Seal { hour_back }),
        3 => Just(Op::Dispatch),
        2 => Just(Op::Announce),
        2 => Just(Op::Send),
        2 => (0..8usize).prop_map(|pick| Op::Ack { pick }),
        2 => (0..3_600_000i64).prop_map(|ms| Op::Tick { ms }),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    /// Whatever happens, a heartbeat's watermark never passes a batch whose
    /// announcement was not confirmed yet (unless it was acked): the auditor may close
    /// every hour before it.
    #[test]
    fn no_unannounced_batch_lies_before_the_watermark(ops in prop::collection::vec(op(), 0..80)) {
        let mut now = at(H, 0);
        let mut t = SendTracker::new(RETRANSMIT_MS, now, 1 << 20);
        let mut next_seq = 1u64;
        // The model: every unacked batch's hour, and whether it was announced.
        let mut unacked: BTreeMap<u64, (Hour, bool)> = BTreeMap::new();
        let mut in_flight: BTreeSet<u64> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Seal { hour_back } => {
                    let hour = Hour(Hour::from_unix_ms(now).0 - hour_back);
                    let mut b = batch(next_seq, hour, Some(8));
                    b.sealed_at_ms = now;
                    t.sealed(b, now);
                    unacked.insert(next_seq, (hour, false));
                    next_seq += 1;
                }
                Op::Dispatch => {
                    if let Some(seq) = t.next_waiting() {
                        t.take_waiting(seq);
                        if t.start(seq).is_some() {
                            in_flight.insert(seq);
                        }
                    }
                }
                Op::Announce => {
                    if let Some(&seq) = in_flight.first() {
                        t.announced(seq);
                        if let Some(u) = unacked.get_mut(&seq) {
                            u.1 = true;
                        }
                    }
                }
                Op::Send => {
                    if let Some(seq) = in_flight.pop_first() {
                        t.sent(seq, now);
                    }
                }
                Op::Ack { pick } => {
                    if let Some(&seq) = unacked.keys().nth(pick) {
                        t.acked(&seqs(&[seq]), now);
                        unacked.remove(&seq);
                        in_flight.remove(&seq);
                    }
                }
                Op::Tick { ms } => {
                    now += ms;
                    t.queue_due_retransmits(now);
                }
                Op::Restart => {
                    // A new agent process: the spool's unacked batches come back
                    // without bytes, announced or not (announcing again is harmless).
                    t = SendTracker::new(RETRANSMIT_MS, now, 1 << 20);
                    in_flight.clear();
                    for (&seq, u) in &mut unacked {
                        let mut b = batch(seq, u.0, None);
                        b.sealed_at_ms = now - 1;
                        t.sealed(b, now);
                        u.1 = false;
                    }
                }
            }
            let watermark = t.final_before_hour(now, None);
            for (seq, (hour, announced)) in &unacked {
                prop_assert!(
                    *announced || *hour >= watermark,
                    "batch {seq} of hour {hour:?} unannounced, watermark {watermark:?}"
                );
            }
            prop_assert!(watermark <= Hour::from_unix_ms(now));
        }
    }
}

#[test]
fn retransmits_back_off_to_eight_times_and_spread() {
    for seq in 0..1_000u64 {
        let waits: Vec<i64> = (1..=6)
            .map(|n| retransmit_wait_ms(30_000, n, seq))
            .collect();
        assert!((24_000..=36_000).contains(&waits[0]), "{waits:?}");
        assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
        assert_eq!(waits[3], waits[5], "capped at 8x: {waits:?}");
        assert!((192_000..=288_000).contains(&waits[3]), "{waits:?}");
    }
    let first: std::collections::BTreeSet<i64> = (0..100)
        .map(|seq| retransmit_wait_ms(30_000, 1, seq))
        .collect();
    assert!(first.len() > 50, "spread over batches: {}", first.len());
}
