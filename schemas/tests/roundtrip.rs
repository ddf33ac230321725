//! proptest round trips for every format, and "decoders never panic" on mutations.

use evd_schemas::wire::ack::Ack;
use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord, Heartbeat};
use evd_schemas::wire::batch::{self, BatchMeta};
use evd_schemas::wire::record::put_record;
use evd_schemas::{Hour, Key, MasterKeyring, SeqRanges, SpoolId};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-][a-zA-Z0-9_.-]{0,39}"
}

fn ranges(min: usize) -> impl Strategy<Value = SeqRanges> {
    prop::collection::vec((0u64..1_000_000, 0u64..50), min..20)
        .prop_map(|v| SeqRanges::from_ranges(v.into_iter().map(|(a, n)| (a, a + n))))
}

/// A time decoders accept (1970..=9999).
fn time_ms() -> impl Strategy<Value = i64> {
    0..=evd_schemas::MAX_UNIX_MS
}

fn hour() -> impl Strategy<Value = Hour> {
    (0..=Hour::MAX.0).prop_map(Hour)
}

fn ack() -> impl Strategy<Value = Ack> {
    (name(), any::<u64>(), time_ms(), "[ -~]{0,100}", ranges(1)).prop_map(
        |(agent_id, spool, at, obj, r)| Ack {
            agent_id,
            spool_id: SpoolId(spool),
            committed_at_ms: at,
            committed_object: obj,
            batch_seqs: r,
        },
    )
}

fn audit() -> impl Strategy<Value = AuditRecord> {
    let heartbeat = (
        (
            time_ms(),
            any::<u64>(),
            any::<u64>(),
            time_ms(),
            any::<u64>(),
        ),
        hour(),
    )
        .prop_map(|((a, b, c, d, e), h)| {
            AuditBody::Heartbeat(Heartbeat {
                started_at_ms: a,
                spool_bytes: b,
                unacked_batches: c,
                oldest_unacked_ms: d,
                next_batch_seq: e,
                final_before_hour: h,
            })
        });
    let announcement = (name(), hour(), any::<u64>(), any::<u32>()).prop_map(|(t, h, seq, n)| {
        AuditBody::Announcement(Announcement {
            event_type: t,
            bucket_hour: h,
            batch_seq: seq,
            event_count: n,
        })
    });
    (
        name(),
        any::<u64>(),
        time_ms(),
        prop_oneof![heartbeat, announcement],
    )
        .prop_map(|(agent_id, spool, at_ms, body)| AuditRecord {
            agent_id,
            spool_id: SpoolId(spool),
            at_ms,
            body,
        })
}

fn master() -> MasterKeyring {
    MasterKeyring::new([(1, Key([3; 32])), (4, Key([5; 32]))])
}

/// Versions 1 and 2 carried no tag; they are refused, never read.
#[test]
fn unauthenticated_control_versions_are_refused() {
    let ack = Ack {
        agent_id: "host-a".into(),
        spool_id: SpoolId(7),
        committed_at_ms: 5,
        committed_object: "m".into(),
        batch_seqs: SeqRanges::from_ranges([(1, 3)]),
    };
    let hb = AuditRecord {
        agent_id: "host-a".into(),
        spool_id: SpoolId(7),
        at_ms: 9,
        body: AuditBody::Heartbeat(Heartbeat::default()),
    };
    let keys = master();
    for version in [1u8, 2, 4] {
        let mut bytes = ack.encode(&keys).unwrap();
        bytes[4] = version;
        let err = Ack::decode(&bytes, &keys).unwrap_err().to_string();
        assert!(err.contains(&format!("version {version}")), "{err}");
        let mut bytes = hb.encode(&keys).unwrap();
        bytes[4] = version;
        let err = AuditRecord::decode(&bytes, &keys).unwrap_err().to_string();
        assert!(err.contains(&format!("version {version}")), "{err}");
    }
}

/// A record verifies under the keys of its own agent only: not under another
/// agent's keyring, not after any byte changed, not under a stranger's master key.
#[test]
fn control_records_verify_only_under_their_agents_keys() {
    let keys = master();
    let ack = Ack {
        agent_id: "host-a".into(),
        spool_id: SpoolId(7),
        committed_at_ms: 5,
        committed_object: "m".into(),
        batch_seqs: SeqRanges::from_ranges([(1, 1 << 62)]),
    };
    let bytes = ack.encode(&keys).unwrap();
    assert_eq!(Ack::decode(&bytes, &keys).unwrap(), ack);
    // The agent verifies with its own derived keyring ...
    let own = keys.derive_agent_keyring("host-a");
    assert_eq!(Ack::decode(&bytes, &own).unwrap(), ack);
    // ... and signs audit records the auditor (master) accepts.
    let hb = AuditRecord {
        agent_id: "host-a".into(),
        spool_id: SpoolId(7),
        at_ms: 9,
        body: AuditBody::Heartbeat(Heartbeat::default()),
    };
    assert_eq!(
        AuditRecord::decode(&hb.encode(&own).unwrap(), &keys).unwrap(),
        hb
    );
    // Another agent's keyring can neither verify nor sign for host-a.
    let other = keys.derive_agent_keyring("host-b");
    assert_eq!(
        Ack::decode(&bytes, &other).unwrap_err().reason_code(),
        "unknown_key"
    );
    assert!(hb.encode(&other).is_err());
    // host-b signing a record that claims to be host-a's: its tag does not verify.
    let mut claimed = AuditRecord {
        agent_id: "host-b".into(),
        ..hb.clone()
    }
    .encode(&other)
    .unwrap();
    claimed[7..13].copy_from_slice(b"host-a");
    assert_eq!(
        AuditRecord::decode(&claimed, &keys)
            .unwrap_err()
            .reason_code(),
        "bad_tag"
    );
    // A stranger's master key, and any flipped byte, fail the tag.
    let stranger = MasterKeyring::new([(4, Key([9; 32]))]);
    let forged = ack.encode(&stranger).unwrap();
    assert_eq!(
        Ack::decode(&forged, &keys).unwrap_err().reason_code(),
        "bad_tag"
    );
    for at in 0..bytes.len() {
        let mut edited = bytes.clone();
        edited[at] ^= 1;
        assert!(Ack::decode(&edited, &keys).is_err(), "byte {at}");
    }
}

/// Hours past 9999 and times outside 1970..=9999 are refused by every decoder, so
/// nothing downstream (closing, the dashboard, partition paths) ever sees one.
#[test]
fn out_of_range_hours_and_times_are_refused() {
    let announce = |hour: u32, at_ms: i64| AuditRecord {
        agent_id: "host-a".into(),
        spool_id: SpoolId(7),
        at_ms,
        body: AuditBody::Announcement(Announcement {
            event_type: "PageView".into(),
            bucket_hour: Hour(hour),
            batch_seq: 1,
            event_count: 1,
        }),
    };
    let keys = master();
    assert!(AuditRecord::decode(&announce(Hour::MAX.0, 5).encode(&keys).unwrap(), &keys).is_ok());
    for (hour, at_ms) in [(u32::MAX, 5), (Hour::MAX.0 + 1, 5), (1, -1), (1, i64::MAX)] {
        let bytes = announce(hour, at_ms).encode(&keys).unwrap();
        let err = AuditRecord::decode(&bytes, &keys).unwrap_err().to_string();
        assert!(err.contains("hour") || err.contains("time"), "{err}");
    }
    let heartbeat = AuditRecord {
        body: AuditBody::Heartbeat(Heartbeat {
            final_before_hour: Hour(u32::MAX),
            ..Heartbeat::default()
        }),
        ..announce(1, 5)
    };
    assert!(AuditRecord::decode(&heartbeat.encode(&keys).unwrap(), &keys).is_err());
    let ack = Ack {
        agent_id: "host-a".into(),
        spool_id: SpoolId(7),
        committed_at_ms: i64::MIN,
        committed_object: "m".into(),
        batch_seqs: SeqRanges::from_ranges([(1, 3)]),
    };
    assert!(Ack::decode(&ack.encode(&keys).unwrap(), &keys).is_err());

    // Agent ids outside the documented charset (they become label values and object
    // names) are refused even when signed.
    for bad in ["a\"b", "a\nb", ".hidden", "a/b"] {
        let bytes = AuditRecord {
            agent_id: bad.into(),
            ..announce(1, 5)
        }
        .encode(&keys)
        .unwrap();
        let err = AuditRecord::decode(&bytes, &keys).unwrap_err().to_string();
        assert!(err.contains("agent_id"), "{err}");
    }

    let master = MasterKeyring::new([(1, Key([3; 32]))]);
    let keys = master.derive_agent_keyring("host-a");
    let hour = Hour(Hour::MAX.0 + 1);
    let mut payload = Vec::new();
    put_record(&mut payload, 1, hour.start_ms() * 1000, b"{}");
    let meta = BatchMeta {
        agent_id: "host-a".into(),
        spool_id: SpoolId(7),
        batch_seq: 1,
        event_type: "PageView".into(),
        bucket_hour: hour,
        created_at_ms: 1,
        event_count: 1,
    };
    let sealed = batch::seal(&keys, &meta, &payload, 1).unwrap();
    let err = batch::peek_header(&sealed).unwrap_err().to_string();
    assert!(err.contains("bucket_hour"), "{err}");
    assert!(batch::open(&master, &sealed).is_err());
}

proptest! {
    #[test]
    fn acks_round_trip(a in ack()) {
        let keys = master();
        prop_assert_eq!(Ack::decode(&a.encode(&keys).unwrap(), &keys).unwrap(), a);
    }

    #[test]
    fn audit_records_round_trip(a in audit()) {
        let keys = master();
        prop_assert_eq!(AuditRecord::decode(&a.encode(&keys).unwrap(), &keys).unwrap(), a);
    }

    #[test]
    fn batches_round_trip(
        agent in name(),
        spool in any::<u64>(),
        event_type in name(),
        seq in 0..=batch::MAX_SEQ,
        hour in 0u32..1_000_000,
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..40),
        level in 1i32..5,
    ) {
        let master = MasterKeyring::new([(1, Key([3; 32])), (9, Key([4; 32]))]);
        let hour = Hour(hour);
        let mut payload = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            put_record(&mut payload, 10 + i as u64, hour.start_ms() * 1000 + i as i64, body);
        }
        let meta = BatchMeta {
            agent_id: agent.clone(),
            spool_id: SpoolId(spool),
            batch_seq: seq,
            event_type,
            bucket_hour: hour,
            created_at_ms: 1,
            event_count: bodies.len() as u32,
        };
        let keys = master.derive_agent_keyring(&agent);
        let sealed = batch::seal(&keys, &meta, &payload, level).unwrap();
        let opened = batch::open(&master, &sealed).unwrap();
        prop_assert_eq!(&opened.header.meta, &meta);
        prop_assert_eq!(opened.header.key_id, 9);
        let got: Vec<&[u8]> = opened.records().iter().map(|r| r.body).collect();
        let want: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(got, want);
    }

    /// Truncations and byte edits of valid messages never panic a decoder.
    #[test]
    fn decoders_survive_mutations(a in ack(), r in audit(), cut in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let keys = master();
        for bytes in [a.encode(&keys).unwrap(), r.encode(&keys).unwrap()] {
            let truncated = &bytes[..cut.index(bytes.len())];
            let _ = Ack::decode(truncated, &keys);
            let _ = AuditRecord::decode(truncated, &keys);
            let mut edited = bytes.clone();
            edited[at.index(bytes.len())] = byte;
            let _ = Ack::decode(&edited, &keys);
            let _ = AuditRecord::decode(&edited, &keys);
            let _ = batch::peek_header(&edited);
        }
    }
}
