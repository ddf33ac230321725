//! Audit records (`EVDU` v1): agent heartbeats and per (type, hour) published counts.
//! Layout: `docs/wire-format.md` §3.

use super::codec::{self, Reader};
use super::{check_range_count, put_ranges, read_ranges};
use crate::error::Result;
use crate::hour::Hour;
use crate::ranges::SeqRanges;

pub const MAGIC: &[u8; 4] = b"EVDU";
pub const VERSION: u8 = 1;
const KIND_HEARTBEAT: u8 = 1;
const KIND_PUBLISHED: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub agent_id: String,
    /// Agent clock when the record was made, ms since the epoch.
    pub at_ms: i64,
    pub body: AuditBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditBody {
    Heartbeat(Heartbeat),
    Published(Published),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heartbeat {
    pub started_at_ms: i64,
    pub spool_bytes: u64,
    pub unacked_batches: u64,
    /// Seal time of the oldest unacked batch; 0 when there is none.
    pub oldest_unacked_ms: i64,
    pub next_batch_seq: u64,
}

/// Cumulative counts for one (event type, hour): a later record replaces an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub event_type: String,
    pub bucket_hour: Hour,
    pub event_count: u64,
    pub batch_count: u64,
    /// The agent will seal no more batches for this (type, hour).
    pub final_: bool,
    pub batch_seqs: SeqRanges,
}

impl AuditRecord {
    pub fn encode(&self) -> Result<Vec<u8>> {
        codec::check_short_name("agent_id", &self.agent_id)?;
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(match self.body {
            AuditBody::Heartbeat(_) => KIND_HEARTBEAT,
            AuditBody::Published(_) => KIND_PUBLISHED,
        });
        codec::put_short_name(&mut out, &self.agent_id);
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        match &self.body {
            AuditBody::Heartbeat(h) => {
                out.extend_from_slice(&h.started_at_ms.to_le_bytes());
                out.extend_from_slice(&h.spool_bytes.to_le_bytes());
                out.extend_from_slice(&h.unacked_batches.to_le_bytes());
                out.extend_from_slice(&h.oldest_unacked_ms.to_le_bytes());
                out.extend_from_slice(&h.next_batch_seq.to_le_bytes());
            }
            AuditBody::Published(p) => {
                codec::check_short_name("event_type", &p.event_type)?;
                check_range_count(&p.batch_seqs, 0)?;
                codec::put_short_name(&mut out, &p.event_type);
                out.extend_from_slice(&p.bucket_hour.0.to_le_bytes());
                out.extend_from_slice(&p.event_count.to_le_bytes());
                out.extend_from_slice(&p.batch_count.to_le_bytes());
                out.push(u8::from(p.final_));
                put_ranges(&mut out, &p.batch_seqs);
            }
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<AuditRecord> {
        let mut r = Reader::new(bytes);
        codec::expect_header(&mut r, MAGIC, VERSION)?;
        let kind = r.u8("kind")?;
        let agent_id = r.short_name("agent_id")?.to_string();
        let at_ms = r.i64("at_ms")?;
        let body = match kind {
            KIND_HEARTBEAT => AuditBody::Heartbeat(Heartbeat {
                started_at_ms: r.i64("started_at_ms")?,
                spool_bytes: r.u64("spool_bytes")?,
                unacked_batches: r.u64("unacked_batches")?,
                oldest_unacked_ms: r.i64("oldest_unacked_ms")?,
                next_batch_seq: r.u64("next_batch_seq")?,
            }),
            KIND_PUBLISHED => AuditBody::Published(Published {
                event_type: r.short_name("event_type")?.to_string(),
                bucket_hour: Hour(r.u32("bucket_hour")?),
                event_count: r.u64("event_count")?,
                batch_count: r.u64("batch_count")?,
                final_: match r.u8("final")? {
                    0 => false,
                    1 => true,
                    other => {
                        return Err(r.invalid("final", format!("{other} is not 0 or 1")).into());
                    }
                },
                batch_seqs: read_ranges(&mut r, 0)?,
            }),
            other => {
                return Err(r
                    .invalid("kind", format!("unknown audit record kind {other}"))
                    .into());
            }
        };
        r.finish()?;
        Ok(AuditRecord {
            agent_id,
            at_ms,
            body,
        })
    }
}
