//! Acceptance: a batch sealed for agent A opens with the keyring and fails clearly for
//! every flipped bit, for agent B's key, for an unknown key id and for a swapped header.

use evd_schemas::keys::KeySource;
use evd_schemas::wire::batch::{self, BatchMeta, FIXED_HEADER_LEN, NONCE_LEN};
use evd_schemas::wire::record::put_record;
use evd_schemas::{Error, Hour, Key, MasterKeyring, Reason, SpoolId};

const HOUR: Hour = Hour(493_127);

fn master() -> MasterKeyring {
    MasterKeyring::new([(3, Key([0x42; 32]))])
}

fn payload(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let body = format!(r#"{{"type":"PageView","ts":{i},"user_id":"u{i}"}}"#);
        put_record(
            &mut out,
            100 + i,
            HOUR.start_ms() * 1000 + i as i64,
            body.as_bytes(),
        );
    }
    out
}

fn meta(agent: &str, seq: u64, count: u32) -> BatchMeta {
    BatchMeta {
        agent_id: agent.into(),
        spool_id: SpoolId(0x5eed),
        batch_seq: seq,
        event_type: "PageView".into(),
        bucket_hour: HOUR,
        created_at_ms: HOUR.start_ms() + 5,
        event_count: count,
    }
}

fn sealed(agent: &str, seq: u64) -> Vec<u8> {
    let keys = master().derive_agent_keyring(agent);
    batch::seal(&keys, &meta(agent, seq, 20), &payload(20), 3).unwrap()
}

#[test]
fn opens_with_the_master_keyring() {
    let bytes = sealed("host-a", 7);
    let opened = batch::open(&master(), &bytes).unwrap();
    assert_eq!(opened.header.meta, meta("host-a", 7, 20));
    assert_eq!(opened.header.key_id, 3);
    let records = opened.records();
    assert_eq!(records.len(), 20);
    assert_eq!(records[0].event_seq, 100);
    assert!(records[19].body.ends_with(br#""user_id":"u19"}"#));
    // The agent's own keyring opens its own batches too.
    let own = master().derive_agent_keyring("host-a");
    batch::open(&own, &bytes).unwrap();
}

#[test]
fn every_flipped_bit_is_refused_with_a_clear_error() {
    let bytes = sealed("host-a", 7);
    let header_len = FIXED_HEADER_LEN + "host-a".len() + "PageView".len();
    for byte in 0..bytes.len() {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[byte] ^= 1 << bit;
            let err = batch::open(&master(), &bad).expect_err("tampering must fail");
            let region = match byte {
                b if b < header_len => "header",
                b if b < header_len + NONCE_LEN => "nonce",
                b if b < bytes.len() - 16 => "ciphertext",
                _ => "tag",
            };
            match &err {
                Error::Rejected { reason, .. } => assert!(
                    matches!(reason, Reason::BadTag | Reason::Malformed),
                    "{region} byte {byte} bit {bit}: unexpected reason {reason}: {err}"
                ),
                // Flipping a key-id bit names a key id the keyring lacks.
                Error::UnknownKey { .. } => assert!((8..12).contains(&byte), "{err}"),
                other => panic!("{region} byte {byte}: {other}"),
            }
            // Outside the header's framing fields, tampering fails authentication.
            if region != "header" {
                assert_eq!(err.reason_code(), "bad_tag", "{region} byte {byte}: {err}");
                assert!(err.to_string().contains("authentication failed"), "{err}");
            }
        }
    }
}

#[test]
fn another_agents_key_does_not_open_it() {
    // Host B seals a batch that claims to be from host A, with B's own agent key.
    let keys_b = master().derive_agent_keyring("host-b");
    let (key_id, key_b) = keys_b.sealing_key();
    let forged = batch::seal_with(
        key_id,
        key_b,
        [9; 24],
        &meta("host-a", 1, 20),
        &payload(20),
        1,
    )
    .unwrap();
    let err = batch::open(&master(), &forged).unwrap_err();
    assert_eq!(err.reason_code(), "bad_tag", "{err}");
    // And B's keyring cannot open A's batches at all.
    assert!(keys_b.agent_key(3, "host-a").is_none());
    assert!(matches!(
        batch::open(&keys_b, &sealed("host-a", 1)),
        Err(Error::UnknownKey { key_id: 3 })
    ));
}

#[test]
fn unknown_key_id_is_named() {
    let other = MasterKeyring::new([(4, Key([1; 32]))]);
    let err = batch::open(&other, &sealed("host-a", 1)).unwrap_err();
    assert!(matches!(err, Error::UnknownKey { key_id: 3 }));
    assert_eq!(
        err.to_string(),
        "unknown key id 3: the keyring does not hold it"
    );
}

#[test]
fn a_header_swapped_from_another_batch_fails() {
    let a = sealed("host-a", 1);
    let b = sealed("host-a", 2);
    let header_len = FIXED_HEADER_LEN + "host-a".len() + "PageView".len();
    // Same lengths, so the frame stays well-formed: only authentication can catch it.
    let mut swapped = b[..header_len].to_vec();
    swapped.extend_from_slice(&a[header_len..]);
    assert_eq!(a.len(), swapped.len(), "payloads compress to the same size");
    let err = batch::open(&master(), &swapped).unwrap_err();
    assert_eq!(err.reason_code(), "bad_tag", "{err}");
}

#[test]
fn a_zstd_bomb_is_rejected() {
    // 64 MiB of zeros is a tiny frame; claim a small size in an authentic header.
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
    assert!(bomb.len() < 64 << 10);
    let keys = master().derive_agent_keyring("host-a");
    let (key_id, key) = keys.sealing_key();
    // Build the batch by hand: a real small payload sealed, then the frame replaced.
    let small = payload(1);
    let honest = batch::seal_with(key_id, key, [1; 24], &meta("host-a", 1, 1), &small, 1).unwrap();
    let header = batch::peek_header(&honest).unwrap();
    assert_eq!(header.uncompressed_size as usize, small.len());
    let err = evd_schemas::wire::batch::open(&master(), &forge_frame(&honest, &bomb)).unwrap_err();
    // Without the key nobody can re-authenticate a larger size: tag fails first.
    assert_eq!(err.reason_code(), "malformed", "{err}");
    // With the key (an insider), the cap still stops it.
    let capped = seal_raw_frame(
        key_id,
        key,
        &meta("host-a", 1, 1),
        small.len() as u32,
        &bomb,
    );
    let err = batch::open(&master(), &capped).unwrap_err();
    assert_eq!(err.reason_code(), "decompress", "{err}");
}

/// Replaces the ciphertext with `frame` without fixing lengths (a naive attacker).
fn forge_frame(honest: &[u8], frame: &[u8]) -> Vec<u8> {
    let header = batch::peek_header(honest).unwrap();
    let mut out = honest[..header.header_len + NONCE_LEN].to_vec();
    out.extend_from_slice(frame);
    out.extend_from_slice(&[0; 16]);
    out
}

/// Encrypts an arbitrary zstd frame under an authentic **version 1** header (no spool
/// id) claiming `claimed` bytes.
fn seal_raw_frame(key_id: u32, key: &Key, meta: &BatchMeta, claimed: u32, frame: &[u8]) -> Vec<u8> {
    seal_v1(key_id, key, meta, claimed, 0, frame)
}

fn seal_v1(
    key_id: u32,
    key: &Key,
    meta: &BatchMeta,
    claimed: u32,
    crc: u32,
    frame: &[u8],
) -> Vec<u8> {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    let mut h = Vec::new();
    let header_len = (50 + meta.agent_id.len() + meta.event_type.len()) as u16;
    h.extend_from_slice(b"EVDB\x01\x00");
    h.extend_from_slice(&header_len.to_le_bytes());
    h.extend_from_slice(&key_id.to_le_bytes());
    h.extend_from_slice(&meta.batch_seq.to_le_bytes());
    h.extend_from_slice(&meta.bucket_hour.0.to_le_bytes());
    h.extend_from_slice(&meta.created_at_ms.to_le_bytes());
    h.extend_from_slice(&meta.event_count.to_le_bytes());
    h.extend_from_slice(&claimed.to_le_bytes());
    h.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    h.extend_from_slice(&crc.to_le_bytes());
    h.push(meta.agent_id.len() as u8);
    h.push(meta.event_type.len() as u8);
    h.extend_from_slice(meta.agent_id.as_bytes());
    h.extend_from_slice(meta.event_type.as_bytes());
    let mut body = frame.to_vec();
    let nonce = [5u8; 24];
    let tag = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key.0))
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), &h, &mut body)
        .unwrap();
    let mut out = h;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    out
}

#[test]
fn version_1_batches_open_as_the_legacy_incarnation() {
    let master = master();
    let agent_keys = master.derive_agent_keyring("host-a");
    let (key_id, key) = agent_keys.sealing_key();
    let payload = payload(3);
    let frame = zstd::bulk::compress(&payload, 1).unwrap();
    let mut meta = meta("host-a", 4, 3);
    let crc = crc32c::crc32c(&payload);
    let bytes = seal_v1(key_id, key, &meta, payload.len() as u32, crc, &frame);
    let opened = batch::open(&master, &bytes).unwrap();
    meta.spool_id = SpoolId::LEGACY;
    assert_eq!(opened.header.meta, meta);
    assert_eq!(opened.header.header_len, 50 + 6 + 8);
    // A version 2 batch carries its incarnation, authenticated: changing it fails.
    let mut v2 = sealed("host-a", 4);
    assert_eq!(
        batch::open(&master, &v2).unwrap().header.meta.spool_id,
        SpoolId(0x5eed)
    );
    v2[50] ^= 1;
    assert!(batch::open(&master, &v2).is_err());
}

#[test]
fn seal_refuses_what_open_would_refuse() {
    // Found by the batch_open fuzz target: a record outside the bucket hour sealed
    // fine and then failed to open.
    let keys = master().derive_agent_keyring("host-a");
    let mut outside = Vec::new();
    put_record(&mut outside, 1, HOUR.end_ms() * 1000, b"{}");
    let err = batch::seal(&keys, &meta("host-a", 1, 1), &outside, 1).unwrap_err();
    assert!(err.to_string().contains("outside bucket hour"), "{err}");
    let mut backwards = Vec::new();
    put_record(&mut backwards, 2, HOUR.start_ms() * 1000, b"{}");
    put_record(&mut backwards, 1, HOUR.start_ms() * 1000, b"{}");
    let err = batch::seal(&keys, &meta("host-a", 1, 2), &backwards, 1).unwrap_err();
    assert!(err.to_string().contains("does not increase"), "{err}");
    assert!(batch::seal(&keys, &meta("host-a", 1, 0), &[], 1).is_err());
    let mut huge = Vec::new();
    put_record(&mut huge, 1 << 63, HOUR.start_ms() * 1000, b"{}");
    let err = batch::seal(&keys, &meta("host-a", 1, 1), &huge, 1).unwrap_err();
    assert!(err.to_string().contains("not below 2^63"), "{err}");
    let err = batch::seal(&keys, &meta("host-a", 1 << 63, 1), &payload(1), 1).unwrap_err();
    assert!(err.to_string().contains("not below 2^63"), "{err}");
}

/// Seqs are below 2^63 so that the Parquet columns can be signed: a header claiming
/// more is refused before anything else is looked at.
#[test]
fn a_batch_seq_of_2_pow_63_or_more_is_refused() {
    let master = master();
    let seq = 0x0123_4567_89ab_cdef_u64;
    let mut bytes = sealed("host-a", seq);
    let at = bytes
        .windows(8)
        .position(|w| w == seq.to_le_bytes())
        .expect("batch_seq in the header");
    bytes[at..at + 8].copy_from_slice(&(1u64 << 63).to_le_bytes());
    let err = batch::open(&master, &bytes).unwrap_err();
    assert!(err.to_string().contains("not below 2^63"), "{err}");
}
