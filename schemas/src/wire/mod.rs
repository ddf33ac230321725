//! Binary formats, specified byte for byte in `docs/wire-format.md`.
//!
//! Encoders check their inputs and return [`crate::Error`]; decoders never panic on
//! any input (fuzzed) and refuse unknown versions.

pub mod ack;
pub mod ack_partition;
pub mod audit;
pub mod batch;
pub(crate) mod codec;
pub mod control_tag;
pub mod record;

use crate::error::{Error, Reason};
use crate::ranges::SeqRanges;
use codec::{CodecError, Reader};

/// Most ranges one ack or audit record carries (16 bytes each, so at most 1 MiB).
pub const MAX_RANGES: usize = 65_536;

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Self {
        Error::rejected(Reason::Malformed, e)
    }
}

/// Writes `count u32` then `count × (first u64, last u64)`.
pub(crate) fn put_ranges(out: &mut Vec<u8>, ranges: &SeqRanges) {
    out.extend_from_slice(&(ranges.range_count() as u32).to_le_bytes());
    for (first, last) in ranges.iter() {
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&last.to_le_bytes());
    }
}

/// Reads ranges written by [`put_ranges`]: sorted, disjoint, non-adjacent, `first <= last`, and at
/// least `min_count` of them.
pub(crate) fn read_ranges(r: &mut Reader<'_>, min_count: usize) -> Result<SeqRanges, CodecError> {
    let count = r.u32("range_count")? as usize;
    if count < min_count || count > MAX_RANGES {
        return Err(r.invalid(
            "range_count",
            format!("{count} is outside {min_count}..={MAX_RANGES}"),
        ));
    }
    let mut set = SeqRanges::new();
    let mut prev_last: Option<u64> = None;
    for _ in 0..count {
        let first = r.u64("range first")?;
        let last = r.u64("range last")?;
        // Canonical form only (what SeqRanges writes), so every set has one encoding.
        if first > last || prev_last.is_some_and(|p| p.saturating_add(1) >= first) {
            return Err(r.invalid(
                "ranges",
                "must be sorted, disjoint, non-adjacent and first <= last",
            ));
        }
        prev_last = Some(last);
        set.insert_range(first, last);
    }
    Ok(set)
}

/// Checks the count of ranges an encoder is about to write.
pub(crate) fn check_range_count(ranges: &SeqRanges, min_count: usize) -> Result<(), CodecError> {
    let n = ranges.range_count();
    if n < min_count || n > MAX_RANGES {
        return Err(CodecError::Invalid {
            field: "ranges",
            at: 0,
            why: format!("{n} ranges is outside {min_count}..={MAX_RANGES}; split the set"),
        });
    }
    Ok(())
}
