//! End-to-end acks (`EVDA` v3, authenticated): a consumer tells an agent which of its
//! batches are durably committed. Layout: `docs/wire-format.md` §2.

use super::codec;
use super::{check_range_count, control_tag, put_ranges, read_ranges};
use crate::error::Result;
use crate::keys::KeySource;
use crate::origin::SpoolId;
use crate::ranges::SeqRanges;

pub const MAGIC: &[u8; 4] = b"EVDA";
/// The version this build writes and the only one it reads: versions 1 and 2 carried
/// no tag, and accepting them would let anyone free an agent's spool.
pub const VERSION: u8 = 3;
const READS: &[u8] = &[VERSION];
pub const MAX_OBJECT_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub agent_id: String,
    /// The spool incarnation the batches belong to: an agent frees nothing for another.
    pub spool_id: SpoolId,
    pub committed_at_ms: i64,
    /// The manifest or data object whose commit made these batches durable.
    pub committed_object: String,
    /// Batch seqs now durable; never empty.
    pub batch_seqs: SeqRanges,
}

impl Ack {
    /// Encodes and signs with `agent_id`'s control key under the newest key `keys` hold.
    pub fn encode(&self, keys: &dyn KeySource) -> Result<Vec<u8>> {
        codec::check_short_name("agent_id", &self.agent_id)?;
        check_range_count(&self.batch_seqs, 1)?;
        if self.committed_object.len() > MAX_OBJECT_LEN {
            return Err(codec::CodecError::Invalid {
                field: "committed_object",
                at: 0,
                why: format!("longer than {MAX_OBJECT_LEN} bytes"),
            }
            .into());
        }
        let mut out = Vec::with_capacity(
            32 + self.committed_object.len() + 16 * self.batch_seqs.range_count(),
        );
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        codec::put_short_name(&mut out, &self.agent_id);
        out.extend_from_slice(&self.spool_id.0.to_le_bytes());
        out.extend_from_slice(&self.committed_at_ms.to_le_bytes());
        out.extend_from_slice(&(self.committed_object.len() as u16).to_le_bytes());
        out.extend_from_slice(self.committed_object.as_bytes());
        put_ranges(&mut out, &self.batch_seqs);
        control_tag::sign(&mut out, keys, &self.agent_id)?;
        Ok(out)
    }

    /// Decodes an ack whose tag verifies under `keys`; nothing of a forged ack is
    /// returned.
    pub fn decode(bytes: &[u8], keys: &dyn KeySource) -> Result<Ack> {
        let (mut r, body, trailer) = control_tag::signed_body(bytes, MAGIC, READS)?;
        let agent_id = r.agent_id()?.to_string();
        let spool_id = SpoolId(r.u64("spool_id")?);
        let committed_at_ms = r.unix_ms("committed_at_ms")?;
        let object_len = r.u16("object_len")? as usize;
        if object_len > MAX_OBJECT_LEN {
            return Err(r
                .invalid(
                    "object_len",
                    format!("{object_len} exceeds {MAX_OBJECT_LEN}"),
                )
                .into());
        }
        let committed_object = r.str(object_len, "committed_object")?.to_string();
        let batch_seqs = read_ranges(&mut r, 1)?;
        r.finish()?;
        control_tag::verify(body, trailer, keys, &agent_id)?;
        Ok(Ack {
            agent_id,
            spool_id,
            committed_at_ms,
            committed_object,
            batch_seqs,
        })
    }
}
