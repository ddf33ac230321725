//! Spool frames: the unit of the segment log (layout in the module doc of `spool`).

use evd_schemas::{Hour, SeqRanges, SpoolId};

/// `len` + `crc` before each frame's kind and body.
pub const FRAME_PREFIX: usize = 8;
/// A frame larger than this is corruption (the largest sealed batch is 64 MiB).
pub const MAX_FRAME_BYTES: usize = 80 << 20;
pub const SEGMENT_MAGIC: &[u8; 4] = b"EVDS";
/// Version 2 added the spool id to the header frame; version 1 headers are read as the
/// legacy incarnation.
pub const FORMAT_VERSION: u8 = 2;

const KIND_HEADER: u8 = 1;
const KIND_EVENT: u8 = 2;
const KIND_SEALED: u8 = 3;
const KIND_ACKED: u8 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame of every segment.
    Header {
        segment_id: u64,
        /// The spool's incarnation, the same in every segment of one spool.
        spool_id: SpoolId,
        agent_id: String,
        next_event_seq: u64,
        next_batch_seq: u64,
    },
    /// An accepted event.
    Event {
        event_seq: u64,
        received_at_us: i64,
        event_type: String,
        body: Vec<u8>,
    },
    /// A sealed batch: which events it covers and its exact wire bytes.
    Sealed {
        batch_seq: u64,
        bucket_hour: Hour,
        sealed_at_ms: i64,
        event_type: String,
        event_count: u32,
        events: SeqRanges,
        bytes: Vec<u8>,
    },
    /// Batches end-to-end acked (and announced to the auditor).
    Acked { batch_seqs: SeqRanges },
}

/// Appends a frame to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    match frame {
        Frame::Header {
            segment_id,
            spool_id,
            agent_id,
            next_event_seq,
            next_batch_seq,
        } => framed(out, KIND_HEADER, |out| {
            out.extend_from_slice(SEGMENT_MAGIC);
            out.push(FORMAT_VERSION);
            out.extend_from_slice(&segment_id.to_le_bytes());
            out.extend_from_slice(&spool_id.0.to_le_bytes());
            put_name(out, agent_id);
            out.extend_from_slice(&next_event_seq.to_le_bytes());
            out.extend_from_slice(&next_batch_seq.to_le_bytes());
        }),
        Frame::Event {
            event_seq,
            received_at_us,
            event_type,
            body,
        } => encode_event(*event_seq, *received_at_us, event_type, body, out),
        Frame::Sealed {
            batch_seq,
            bucket_hour,
            sealed_at_ms,
            event_type,
            event_count,
            events,
            bytes,
        } => encode_sealed(
            &SealedFields {
                batch_seq: *batch_seq,
                bucket_hour: *bucket_hour,
                sealed_at_ms: *sealed_at_ms,
                event_type,
                event_count: *event_count,
                events,
            },
            bytes,
            out,
        ),
        Frame::Acked { batch_seqs } => framed(out, KIND_ACKED, |out| put_ranges(out, batch_seqs)),
    }
}

/// Appends an event frame from borrowed parts (the agent's hot path: no copy of the
/// body besides the one into `out`).
pub fn encode_event(
    event_seq: u64,
    received_at_us: i64,
    event_type: &str,
    body: &[u8],
    out: &mut Vec<u8>,
) {
    framed(out, KIND_EVENT, |out| {
        out.extend_from_slice(&event_seq.to_le_bytes());
        out.extend_from_slice(&received_at_us.to_le_bytes());
        put_name(out, event_type);
        out.extend_from_slice(body);
    })
}

/// A sealed frame's fields before its batch bytes.
pub struct SealedFields<'a> {
    pub batch_seq: u64,
    pub bucket_hour: Hour,
    pub sealed_at_ms: i64,
    pub event_type: &'a str,
    pub event_count: u32,
    pub events: &'a SeqRanges,
}

/// Appends a sealed frame from borrowed parts.
pub fn encode_sealed(fields: &SealedFields<'_>, bytes: &[u8], out: &mut Vec<u8>) {
    framed(out, KIND_SEALED, |out| {
        out.extend_from_slice(&fields.batch_seq.to_le_bytes());
        out.extend_from_slice(&fields.bucket_hour.0.to_le_bytes());
        out.extend_from_slice(&fields.sealed_at_ms.to_le_bytes());
        put_name(out, fields.event_type);
        out.extend_from_slice(&fields.event_count.to_le_bytes());
        put_ranges(out, fields.events);
        out.extend_from_slice(bytes);
    })
}

/// Appends `len`, `crc`, `kind` and what `body` writes.
fn framed(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_PREFIX]);
    out.push(kind);
    body(out);
    let len = (out.len() - start - FRAME_PREFIX) as u32;
    let crc = crc32c::crc32c(&out[start + FRAME_PREFIX..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    debug_assert!(!name.is_empty() && name.len() <= 255);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

fn put_ranges(out: &mut Vec<u8>, ranges: &SeqRanges) {
    out.extend_from_slice(&(ranges.range_count() as u32).to_le_bytes());
    for (a, b) in ranges.iter() {
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
    }
}

/// What reading at an offset found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// A valid frame and the total bytes it occupies.
    Frame(Frame, usize),
    /// The buffer ends inside the frame (a torn tail if nothing valid follows).
    Short,
    /// Length out of range, checksum mismatch or a body that does not parse.
    Bad,
}

/// Reads the frame starting at `buf[0]`. Never panics.
pub fn decode(buf: &[u8]) -> Read {
    if buf.len() < FRAME_PREFIX {
        return Read::Short;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_FRAME_BYTES {
        return Read::Bad;
    }
    let Some(body) = buf.get(FRAME_PREFIX..FRAME_PREFIX + len) else {
        return Read::Short;
    };
    if crc32c::crc32c(body) != crc {
        return Read::Bad;
    }
    match parse_body(body) {
        Some(frame) => Read::Frame(frame, FRAME_PREFIX + len),
        None => Read::Bad,
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn name(&mut self) -> Option<String> {
        let n = self.u8()? as usize;
        if n == 0 {
            return None;
        }
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn ranges(&mut self) -> Option<SeqRanges> {
        let n = self.u32()? as usize;
        if n > self.0.len() / 16 {
            return None;
        }
        let mut set = SeqRanges::new();
        for _ in 0..n {
            let (a, b) = (self.u64()?, self.u64()?);
            if a > b {
                return None;
            }
            set.insert_range(a, b);
        }
        Some(set)
    }
    fn rest(self) -> Vec<u8> {
        self.0.to_vec()
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_body(body: &[u8]) -> Option<Frame> {
    let mut c = Cursor(body);
    let frame = match c.u8()? {
        KIND_HEADER => {
            if c.take(4)? != SEGMENT_MAGIC {
                return None;
            }
            let version = c.u8()?;
            if version != 1 && version != FORMAT_VERSION {
                return None;
            }
            let segment_id = c.u64()?;
            let spool_id = match version {
                1 => SpoolId::LEGACY,
                _ => SpoolId(c.u64()?),
            };
            let frame = Frame::Header {
                segment_id,
                spool_id,
                agent_id: c.name()?,
                next_event_seq: c.u64()?,
                next_batch_seq: c.u64()?,
            };
            c.done().then_some(frame)?
        }
        KIND_EVENT => Frame::Event {
            event_seq: c.u64()?,
            received_at_us: c.i64()?,
            event_type: c.name()?,
            body: c.rest(),
        },
        KIND_SEALED => Frame::Sealed {
            batch_seq: c.u64()?,
            bucket_hour: Hour(c.u32()?),
            sealed_at_ms: c.i64()?,
            event_type: c.name()?,
            event_count: c.u32()?,
            events: c.ranges()?,
            bytes: c.rest(),
        },
        KIND_ACKED => {
            let frame = Frame::Acked {
                batch_seqs: c.ranges()?,
            };
            c.done().then_some(frame)?
        }
        _ => return None,
    };
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Header {
                segment_id: 3,
                spool_id: SpoolId(0xabc),
                agent_id: "host-a".into(),
                next_event_seq: 10,
                next_batch_seq: 2,
            },
            Frame::Event {
                event_seq: 11,
                received_at_us: 5,
                event_type: "T".into(),
                body: b"{}".to_vec(),
            },
            Frame::Sealed {
                batch_seq: 2,
                bucket_hour: Hour(9),
                sealed_at_ms: 7,
                event_type: "T".into(),
                event_count: 1,
                events: SeqRanges::from_ranges([(11, 11)]),
                bytes: vec![1, 2, 3],
            },
            Frame::Acked {
                batch_seqs: SeqRanges::from_ranges([(1, 2)]),
            },
        ];
        let mut buf = Vec::new();
        for f in &frames {
            encode(f, &mut buf);
        }
        let mut at = 0;
        for f in &frames {
            match decode(&buf[at..]) {
                Read::Frame(got, n) => {
                    assert_eq!(&got, f);
                    at += n;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(at, buf.len());
        assert_eq!(decode(&buf[..3]), Read::Short);
        let mut bad = buf.clone();
        bad[10] ^= 1;
        assert_eq!(decode(&bad), Read::Bad);
    }

    #[test]
    fn version_1_headers_are_read_as_the_legacy_incarnation() {
        let mut body = vec![KIND_HEADER];
        body.extend_from_slice(SEGMENT_MAGIC);
        body.push(1);
        body.extend_from_slice(&3u64.to_le_bytes());
        body.push(6);
        body.extend_from_slice(b"host-a");
        body.extend_from_slice(&10u64.to_le_bytes());
        body.extend_from_slice(&2u64.to_le_bytes());
        let mut buf = (body.len() as u32).to_le_bytes().to_vec();
        buf.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        buf.extend_from_slice(&body);
        let want = Frame::Header {
            segment_id: 3,
            spool_id: SpoolId::LEGACY,
            agent_id: "host-a".into(),
            next_event_seq: 10,
            next_batch_seq: 2,
        };
        assert_eq!(decode(&buf), Read::Frame(want, buf.len()));
    }
}
