//! Event records: the plaintext inside a batch (`docs/wire-format.md` §1, payload).

use super::codec::{CodecError, Reader};

/// Fixed bytes before each record's body.
pub const RECORD_OVERHEAD: usize = 20;
/// Largest body one record may carry.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// One event inside a batch, borrowing its body from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub event_seq: u64,
    /// µs since the Unix epoch when the agent accepted the event.
    pub received_at_us: i64,
    /// The event line exactly as the client sent it.
    pub body: &'a [u8],
}

/// Appends one record. The body must be at most [`MAX_BODY_BYTES`]; the agent enforces
/// a much smaller line limit before it gets here.
pub fn put_record(out: &mut Vec<u8>, event_seq: u64, received_at_us: i64, body: &[u8]) {
    assert!(
        body.len() <= MAX_BODY_BYTES,
        "record body over the format limit"
    );
    out.extend_from_slice(&event_seq.to_le_bytes());
    out.extend_from_slice(&received_at_us.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
}

/// Splits a payload into exactly `count` records; nothing may follow the last one.
pub(crate) fn split_records(payload: &[u8], count: u32) -> Result<Vec<Record<'_>>, CodecError> {
    let mut r = Reader::new(payload);
    // Each record needs at least RECORD_OVERHEAD bytes; do not trust `count` for capacity.
    let mut out = Vec::with_capacity((count as usize).min(payload.len() / RECORD_OVERHEAD));
    for _ in 0..count {
        let event_seq = r.u64("event_seq")?;
        let received_at_us = r.i64("received_at_us")?;
        let len = r.u32("body_len")? as usize;
        if len > MAX_BODY_BYTES {
            return Err(r.invalid("body_len", format!("{len} exceeds {MAX_BODY_BYTES}")));
        }
        let body = r.bytes(len, "body")?;
        out.push(Record {
            event_seq,
            received_at_us,
            body,
        });
    }
    r.finish()?;
    Ok(out)
}
