//! Audit records (`EVDU` v3, authenticated): agent heartbeats and batch announcements.
//! Layout and semantics: `docs/wire-format.md` §3.

use super::codec;
use super::control_tag;
use crate::error::Result;
use crate::hour::Hour;
use crate::keys::KeySource;
use crate::origin::{Origin, SpoolId};

pub const MAGIC: &[u8; 4] = b"EVDU";
/// The version this build writes and the only one it reads: versions 1 and 2 carried
/// no tag, and a forged announcement could hide a loss.
pub const VERSION: u8 = 3;
const READS: &[u8] = &[VERSION];
const KIND_HEARTBEAT: u8 = 1;
const KIND_ANNOUNCEMENT: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub agent_id: String,
    /// The incarnation of the sending agent's spool.
    pub spool_id: SpoolId,
    /// Agent clock when the record was made, ms since the epoch.
    pub at_ms: i64,
    pub body: AuditBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditBody {
    Heartbeat(Heartbeat),
    Announcement(Announcement),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heartbeat {
    pub started_at_ms: i64,
    pub spool_bytes: u64,
    pub unacked_batches: u64,
    /// Seal time of the oldest unacked batch; 0 when there is none.
    pub oldest_unacked_ms: i64,
    pub next_batch_seq: u64,
    /// Every batch of every hour before this one has been announced already.
    pub final_before_hour: Hour,
}

/// One sealed batch, announced before it may be freed. Idempotent per `batch_seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub event_type: String,
    pub bucket_hour: Hour,
    pub batch_seq: u64,
    pub event_count: u32,
}

impl AuditRecord {
    pub fn origin(&self) -> Origin {
        Origin::new(self.agent_id.clone(), self.spool_id)
    }

    /// Encodes and signs with `agent_id`'s control key under the newest key `keys` hold.
    pub fn encode(&self, keys: &dyn KeySource) -> Result<Vec<u8>> {
        codec::check_short_name("agent_id", &self.agent_id)?;
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(match self.body {
            AuditBody::Heartbeat(_) => KIND_HEARTBEAT,
            AuditBody::Announcement(_) => KIND_ANNOUNCEMENT,
        });
        codec::put_short_name(&mut out, &self.agent_id);
        out.extend_from_slice(&self.spool_id.0.to_le_bytes());
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        match &self.body {
            AuditBody::Heartbeat(h) => {
                out.extend_from_slice(&h.started_at_ms.to_le_bytes());
                out.extend_from_slice(&h.spool_bytes.to_le_bytes());
                out.extend_from_slice(&h.unacked_batches.to_le_bytes());
                out.extend_from_slice(&h.oldest_unacked_ms.to_le_bytes());
                out.extend_from_slice(&h.next_batch_seq.to_le_bytes());
                out.extend_from_slice(&h.final_before_hour.0.to_le_bytes());
            }
            AuditBody::Announcement(a) => {
                codec::check_short_name("event_type", &a.event_type)?;
                codec::put_short_name(&mut out, &a.event_type);
                out.extend_from_slice(&a.bucket_hour.0.to_le_bytes());
                out.extend_from_slice(&a.batch_seq.to_le_bytes());
                out.extend_from_slice(&a.event_count.to_le_bytes());
            }
        }
        control_tag::sign(&mut out, keys, &self.agent_id)?;
        Ok(out)
    }

    /// Decodes a record whose tag verifies under `keys`; nothing of a forged record is
    /// returned.
    pub fn decode(bytes: &[u8], keys: &dyn KeySource) -> Result<AuditRecord> {
        let (mut r, signed, trailer) = control_tag::signed_body(bytes, MAGIC, READS)?;
        let kind = r.u8("kind")?;
        let agent_id = r.agent_id()?.to_string();
        let spool_id = SpoolId(r.u64("spool_id")?);
        let at_ms = r.unix_ms("at_ms")?;
        let body = match kind {
            KIND_HEARTBEAT => AuditBody::Heartbeat(Heartbeat {
                started_at_ms: r.unix_ms("started_at_ms")?,
                spool_bytes: r.u64("spool_bytes")?,
                unacked_batches: r.u64("unacked_batches")?,
                oldest_unacked_ms: r.unix_ms("oldest_unacked_ms")?,
                next_batch_seq: r.u64("next_batch_seq")?,
                final_before_hour: r.hour("final_before_hour")?,
            }),
            KIND_ANNOUNCEMENT => AuditBody::Announcement(Announcement {
                event_type: r.short_name("event_type")?.to_string(),
                bucket_hour: r.hour("bucket_hour")?,
                batch_seq: r.u64("batch_seq")?,
                event_count: r.u32("event_count")?,
            }),
            other => {
                return Err(r
                    .invalid("kind", format!("unknown audit record kind {other}"))
                    .into());
            }
        };
        r.finish()?;
        control_tag::verify(signed, trailer, keys, &agent_id)?;
        Ok(AuditRecord {
            agent_id,
            spool_id,
            at_ms,
            body,
        })
    }
}
