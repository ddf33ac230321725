//! Sealed batches (`EVDB` v2, v1 still read): header, nonce,
//! zstd-then-XChaCha20-Poly1305 payload. Byte layout and decoding rules:
//! `docs/wire-format.md` §1; the batch identity (agent, spool incarnation, seq): §0.

use chacha20poly1305::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use super::codec::{self, CodecError, Reader};
use super::record::{Record, split_records};
use crate::error::{Error, Reason, Result};
use crate::hour::Hour;
use crate::keys::{AgentKeyring, Key, KeySource};
use crate::origin::{Origin, SpoolId};

pub const MAGIC: &[u8; 4] = b"EVDB";
/// The version this build writes.
pub const VERSION: u8 = 2;
/// Versions this build reads: v1 has no spool id (the legacy incarnation).
const READS: &[u8] = &[1, 2];
/// Bytes of the header before the two names (v2).
pub const FIXED_HEADER_LEN: usize = 58;
/// Bytes of a v1 header before the two names.
const FIXED_HEADER_LEN_V1: usize = 50;
pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Hard limit on a batch's plaintext, whatever its header says.
pub const MAX_UNCOMPRESSED_BYTES: usize = 64 << 20;

/// `batch_seq` and every `event_seq` are below 2^63, so that they fit the signed
/// 64-bit columns SQL engines read (Parquet `INT64`).
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// The largest a sealed batch of `plaintext` payload bytes can be, with the longest
/// names: header, nonce, zstd's worst case for incompressible input, tag. What a
/// Kafka message limit must hold.
pub fn max_sealed_len(plaintext: usize) -> usize {
    FIXED_HEADER_LEN + 255 + 255 + NONCE_LEN + zstd::zstd_safe::compress_bound(plaintext) + TAG_LEN
}

/// What the agent knows about a batch before sealing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMeta {
    pub agent_id: String,
    /// The incarnation of the agent's spool; seqs are unique within it.
    pub spool_id: SpoolId,
    pub batch_seq: u64,
    pub event_type: String,
    pub bucket_hour: Hour,
    pub created_at_ms: i64,
    pub event_count: u32,
}

impl BatchMeta {
    /// The scope in which `batch_seq` is unique.
    pub fn origin(&self) -> Origin {
        Origin::new(self.agent_id.clone(), self.spool_id)
    }
}

/// A decoded header. Authenticated only when it comes from [`open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    pub meta: BatchMeta,
    pub key_id: u32,
    pub uncompressed_size: u32,
    pub compressed_size: u32,
    pub payload_crc32c: u32,
    pub header_len: usize,
}

/// An authenticated, decompressed batch.
#[derive(Debug, Clone)]
pub struct OpenedBatch {
    pub header: BatchHeader,
    payload: Vec<u8>,
}

impl OpenedBatch {
    /// The records, checked when the batch was opened.
    pub fn records(&self) -> Vec<Record<'_>> {
        split_records(&self.payload, self.header.meta.event_count)
            .expect("records were checked in open()")
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

#[derive(Debug, thiserror::Error)]
enum SealError {
    #[error("event_count is {count} but the payload holds {found} records")]
    CountMismatch { count: u32, found: String },
    #[error("payload is {0} bytes, the limit is {MAX_UNCOMPRESSED_BYTES}")]
    TooLarge(usize),
    #[error("zstd failed: {0}")]
    Compress(std::io::Error),
    #[error("batch_seq {0} is not below 2^63")]
    SeqRange(u64),
}

#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(
        "batch {agent_id}/{batch_seq}: authentication failed (tampered, wrong agent key or swapped header)"
    )]
    BadTag { agent_id: String, batch_seq: u64 },
    #[error("zstd frame does not expand to the authenticated {expected} bytes: {why}")]
    Decompress { expected: u32, why: String },
    #[error("plaintext checksum {found:08x} does not match header {expected:08x}")]
    Checksum { expected: u32, found: u32 },
    #[error("records: {0}")]
    Records(CodecError),
    #[error("record {index}: {why}")]
    RecordOrder { index: usize, why: String },
}

/// Seals a payload of records with the agent's newest key and a random nonce.
pub fn seal(
    keys: &AgentKeyring,
    meta: &BatchMeta,
    payload: &[u8],
    zstd_level: i32,
) -> Result<Vec<u8>> {
    let (key_id, key) = keys.sealing_key();
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    seal_with(key_id, key, nonce.into(), meta, payload, zstd_level)
}

/// Seals with an explicit key and nonce. The nonce must never repeat for a key: use
/// [`seal`] outside tests.
pub fn seal_with(
    key_id: u32,
    agent_key: &Key,
    nonce: [u8; NONCE_LEN],
    meta: &BatchMeta,
    payload: &[u8],
    zstd_level: i32,
) -> Result<Vec<u8>> {
    codec::check_short_name("agent_id", &meta.agent_id)?;
    codec::check_short_name("event_type", &meta.event_type)?;
    if payload.len() > MAX_UNCOMPRESSED_BYTES {
        return Err(Error::rejected(
            Reason::Malformed,
            SealError::TooLarge(payload.len()),
        ));
    }
    // Refuse whatever open() would refuse, so a sealed batch always opens.
    if meta.batch_seq > MAX_SEQ {
        return Err(Error::rejected(
            Reason::Malformed,
            SealError::SeqRange(meta.batch_seq),
        ));
    }
    if meta.event_count == 0 {
        return Err(Error::rejected(
            Reason::Malformed,
            SealError::CountMismatch {
                count: 0,
                found: "a batch needs at least one".into(),
            },
        ));
    }
    check_records(payload, meta)?;
    let mut body = zstd::bulk::compress(payload, zstd_level)
        .map_err(|e| Error::rejected(Reason::Malformed, SealError::Compress(e)))?;
    let header = encode_header(
        meta,
        key_id,
        payload.len() as u32,
        body.len() as u32,
        crc32c::crc32c(payload),
    );
    let tag = cipher(agent_key)
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), &header, &mut body)
        .expect("XChaCha20-Poly1305 encrypts any length we allow");
    let mut out = header;
    out.reserve(NONCE_LEN + body.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    Ok(out)
}

fn cipher(key: &Key) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key.0))
}

fn encode_header(
    meta: &BatchMeta,
    key_id: u32,
    uncompressed: u32,
    compressed: u32,
    crc: u32,
) -> Vec<u8> {
    let header_len = FIXED_HEADER_LEN + meta.agent_id.len() + meta.event_type.len();
    let mut h = Vec::with_capacity(header_len);
    h.extend_from_slice(MAGIC);
    h.push(VERSION);
    h.push(0); // flags
    h.extend_from_slice(&(header_len as u16).to_le_bytes());
    h.extend_from_slice(&key_id.to_le_bytes());
    h.extend_from_slice(&meta.batch_seq.to_le_bytes());
    h.extend_from_slice(&meta.bucket_hour.0.to_le_bytes());
    h.extend_from_slice(&meta.created_at_ms.to_le_bytes());
    h.extend_from_slice(&meta.event_count.to_le_bytes());
    h.extend_from_slice(&uncompressed.to_le_bytes());
    h.extend_from_slice(&compressed.to_le_bytes());
    h.extend_from_slice(&crc.to_le_bytes());
    h.push(meta.agent_id.len() as u8);
    h.push(meta.event_type.len() as u8);
    h.extend_from_slice(&meta.spool_id.0.to_le_bytes());
    h.extend_from_slice(meta.agent_id.as_bytes());
    h.extend_from_slice(meta.event_type.as_bytes());
    debug_assert_eq!(h.len(), header_len);
    h
}

/// Parses and checks the header and total length **without authenticating**. Good for
/// routing and metrics (the bridge holds no keys); never for trusting the contents.
pub fn peek_header(bytes: &[u8]) -> Result<BatchHeader> {
    Ok(parse_header(bytes)?)
}

fn parse_header(bytes: &[u8]) -> Result<BatchHeader, CodecError> {
    let mut r = Reader::new(bytes);
    let version = codec::expect_header(&mut r, MAGIC, READS)?;
    if r.u8("flags")? != 0 {
        return Err(r.invalid("flags", "reserved flags must be 0"));
    }
    let header_len = r.u16("header_len")? as usize;
    let key_id = r.u32("key_id")?;
    let batch_seq = r.u64("batch_seq")?;
    if batch_seq > MAX_SEQ {
        return Err(r.invalid("batch_seq", format!("{batch_seq} is not below 2^63")));
    }
    let bucket_hour = r.hour("bucket_hour")?;
    let created_at_ms = r.unix_ms("created_at_ms")?;
    let event_count = r.u32("event_count")?;
    let uncompressed_size = r.u32("uncompressed_size")?;
    let compressed_size = r.u32("compressed_size")?;
    let payload_crc32c = r.u32("payload_crc32c")?;
    let agent_len = r.u8("agent_id_len")? as usize;
    let type_len = r.u8("event_type_len")? as usize;
    let (fixed, spool_id) = match version {
        1 => (FIXED_HEADER_LEN_V1, SpoolId::LEGACY),
        _ => (FIXED_HEADER_LEN, SpoolId(r.u64("spool_id")?)),
    };
    if header_len != fixed + agent_len + type_len {
        return Err(r.invalid(
            "header_len",
            format!("{header_len} does not match the name lengths"),
        ));
    }
    if event_count == 0 {
        return Err(r.invalid("event_count", "a batch holds at least one event"));
    }
    if uncompressed_size as usize > MAX_UNCOMPRESSED_BYTES {
        return Err(r.invalid(
            "uncompressed_size",
            format!("{uncompressed_size} exceeds {MAX_UNCOMPRESSED_BYTES}"),
        ));
    }
    let agent_id = r.nonempty_str(agent_len, "agent_id")?.to_string();
    let event_type = r.nonempty_str(type_len, "event_type")?.to_string();
    let expected =
        header_len as u64 + NONCE_LEN as u64 + u64::from(compressed_size) + TAG_LEN as u64;
    if bytes.len() as u64 != expected {
        return Err(CodecError::Invalid {
            field: "compressed_size",
            at: 40,
            why: format!("message is {} bytes, header says {expected}", bytes.len()),
        });
    }
    Ok(BatchHeader {
        meta: BatchMeta {
            agent_id,
            spool_id,
            batch_seq,
            event_type,
            bucket_hour,
            created_at_ms,
            event_count,
        },
        key_id,
        uncompressed_size,
        compressed_size,
        payload_crc32c,
        header_len,
    })
}

/// Authenticates, decompresses and checks a sealed batch (rules in the wire format doc).
pub fn open(keys: &impl KeySource, bytes: &[u8]) -> Result<OpenedBatch> {
    let header = parse_header(bytes)?;
    let meta = &header.meta;
    let key = keys
        .agent_key(header.key_id, &meta.agent_id)
        .ok_or(Error::UnknownKey {
            key_id: header.key_id,
        })?;
    let (aad, rest) = bytes.split_at(header.header_len);
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut body = ciphertext.to_vec();
    cipher(&key)
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            aad,
            &mut body,
            Tag::from_slice(tag),
        )
        .map_err(|_| {
            Error::rejected(
                Reason::BadTag,
                OpenError::BadTag {
                    agent_id: meta.agent_id.clone(),
                    batch_seq: meta.batch_seq,
                },
            )
        })?;
    let payload = decompress_capped(&body, header.uncompressed_size)?;
    let found = crc32c::crc32c(&payload);
    if found != header.payload_crc32c {
        return Err(Error::rejected(
            Reason::Payload,
            OpenError::Checksum {
                expected: header.payload_crc32c,
                found,
            },
        ));
    }
    check_records(&payload, meta)?;
    Ok(OpenedBatch { header, payload })
}

/// Decompresses into at most `expected` bytes and requires exactly that many.
fn decompress_capped(frame: &[u8], expected: u32) -> Result<Vec<u8>> {
    let fail =
        |why: String| Error::rejected(Reason::Decompress, OpenError::Decompress { expected, why });
    let payload =
        zstd::bulk::decompress(frame, expected as usize).map_err(|e| fail(e.to_string()))?;
    if payload.len() != expected as usize {
        return Err(fail(format!("got {} bytes", payload.len())));
    }
    Ok(payload)
}

/// Records must parse to exactly `event_count`, with rising seqs inside the bucket hour.
fn check_records(payload: &[u8], meta: &BatchMeta) -> Result<()> {
    let payload_err = |e: OpenError| Error::rejected(Reason::Payload, e);
    let records =
        split_records(payload, meta.event_count).map_err(|e| payload_err(OpenError::Records(e)))?;
    let mut prev = None;
    for (index, rec) in records.iter().enumerate() {
        if prev.is_some_and(|p| p >= rec.event_seq) {
            return Err(payload_err(OpenError::RecordOrder {
                index,
                why: "event_seq does not increase".into(),
            }));
        }
        prev = Some(rec.event_seq);
        if rec.event_seq > MAX_SEQ {
            return Err(payload_err(OpenError::RecordOrder {
                index,
                why: format!("event_seq {} is not below 2^63", rec.event_seq),
            }));
        }
        if Hour::from_unix_us(rec.received_at_us) != meta.bucket_hour {
            return Err(payload_err(OpenError::RecordOrder {
                index,
                why: format!("received_at is outside bucket hour {}", meta.bucket_hour),
            }));
        }
    }
    Ok(())
}
