//! The agent's file tailer's persisted formats: the fingerprint that identifies a
//! file, the `tail:` event id that carries a read position into the spool
//! (`docs/wire-format.md` §4), and the checkpoint file (version 1). Pure: the tailer
//! in `producer/src/tail` does the I/O.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a file lives on disk: device and inode. Only unique among files that exist
/// (or are held open) at the same time; see [`Fingerprint`] for inode reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

/// Bytes at the start of a file that its fingerprint covers once the file is that
/// long; a shorter file's fingerprint covers all of it and grows with it.
pub const FINGERPRINT_BYTES: usize = 256;

/// A fingerprint over fewer bytes than this does not pick out a rotated file.
pub const RECOGNISABLE_BYTES: usize = 64;

/// A hash of a file's first `len` bytes: tells a file from another that got the same
/// inode after the first was deleted, and a rewritten file from an appended one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub len: u16,
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of a file that starts with `prefix` (at most
    /// `FINGERPRINT_BYTES` of it count).
    pub fn of(prefix: &[u8]) -> Fingerprint {
        let covered = &prefix[..prefix.len().min(FINGERPRINT_BYTES)];
        let digest = Sha256::digest(covered);
        Fingerprint {
            len: covered.len() as u16,
            hash: u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")),
        }
    }

    /// Whether a file starting with `prefix` (its first `FINGERPRINT_BYTES` or all of
    /// it) is the file this fingerprint was taken of.
    pub fn matches(&self, prefix: &[u8]) -> bool {
        prefix.len() >= self.len as usize && Fingerprint::of(&prefix[..self.len as usize]) == *self
    }

    /// Whether it covers enough bytes to find its file among others by content
    /// (`RECOGNISABLE_BYTES`).
    pub fn is_recognisable(&self) -> bool {
        self.len as usize >= RECOGNISABLE_BYTES
    }

    /// True once the fingerprint covers all the bytes it ever will.
    pub fn is_full(&self) -> bool {
        self.len as usize >= FINGERPRINT_BYTES
    }
}

/// A position in one file: every line ending at or before `offset` is in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub key: FileKey,
    pub fp: Fingerprint,
    pub offset: u64,
}

const ID_PREFIX: &str = "tail:";

/// Whether an `event_id` is one the tailer gave a line (a read position), not a
/// client's idempotency key.
pub fn is_tail_id(id: &str) -> bool {
    id.starts_with(ID_PREFIX)
}

/// Appends `n` in `radix` (10 or 16, lower-case), zero-padded to `width` digits.
fn push_digits(out: &mut String, mut n: u64, radix: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    while n > 0 || digits.len() - start < width {
        start -= 1;
        digits[start] = b"0123456789abcdef"[(n % radix) as usize];
        n /= radix;
    }
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

impl Position {
    /// The `event_id` a tailed line carries: the position just past the line. Spool
    /// recovery hands these back, so a line made durable just before a crash is
    /// never read twice even if the checkpoint did not catch up.
    /// Format: `tail:<dev hex>.<ino hex>.<fingerprint len>.<fingerprint hex>:<offset>`.
    /// (Written digit by digit: every tailed line gets one, and `format!` was a
    /// tenth of the tailer's time.)
    pub fn event_id(&self) -> String {
        let mut id = String::with_capacity(ID_PREFIX.len() + 16 * 4 + 8);
        id.push_str(ID_PREFIX);
        push_digits(&mut id, self.key.dev, 16, 1);
        id.push('.');
        push_digits(&mut id, self.key.ino, 16, 1);
        id.push('.');
        push_digits(&mut id, u64::from(self.fp.len), 10, 1);
        id.push('.');
        push_digits(&mut id, self.fp.hash, 16, 16);
        id.push(':');
        push_digits(&mut id, self.offset, 10, 1);
        id
    }

    /// The position an `event_id` carries, if it is a tailer's.
    pub fn from_event_id(id: &str) -> Option<Position> {
        let rest = id.strip_prefix(ID_PREFIX)?;
        let (file, offset) = rest.split_once(':')?;
        let mut parts = file.split('.');
        let dev = u64::from_str_radix(parts.next()?, 16).ok()?;
        let ino = u64::from_str_radix(parts.next()?, 16).ok()?;
        let len = parts.next()?.parse().ok()?;
        let hash = u64::from_str_radix(parts.next()?, 16).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Position {
            key: FileKey { dev, ino },
            fp: Fingerprint { len, hash },
            offset: offset.parse().ok()?,
        })
    }
}

pub const CHECKPOINT_VERSION: u32 = 1;

/// The checkpoint file: JSON, `version` first, unknown fields refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub version: u32,
    pub files: Vec<CheckpointEntry>,
}

/// One file: its identity, where durable lines end, and where it was last seen (its
/// directory is searched for it after a restart, in case it was rotated meanwhile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointEntry {
    pub dev: u64,
    pub ino: u64,
    pub fingerprint_len: u16,
    /// 16 hex digits.
    pub fingerprint: String,
    pub offset: u64,
    pub path: PathBuf,
}

impl CheckpointEntry {
    pub fn new(pos: Position, path: &Path) -> CheckpointEntry {
        CheckpointEntry {
            dev: pos.key.dev,
            ino: pos.key.ino,
            fingerprint_len: pos.fp.len,
            fingerprint: format!("{:016x}", pos.fp.hash),
            offset: pos.offset,
            path: path.to_path_buf(),
        }
    }

    pub fn position(&self) -> Option<Position> {
        Some(Position {
            key: FileKey {
                dev: self.dev,
                ino: self.ino,
            },
            fp: Fingerprint {
                len: self.fingerprint_len,
                hash: u64::from_str_radix(&self.fingerprint, 16).ok()?,
            },
            offset: self.offset,
        })
    }
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a checkpoint always serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let c: Checkpoint = serde_json::from_slice(bytes).map_err(CheckpointError::Json)?;
        if c.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version(c.version));
        }
        Ok(c)
    }
}

/// Why a checkpoint file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Json(serde_json::Error),
    #[error("checkpoint version {0} is not supported (this agent reads {CHECKPOINT_VERSION})")]
    Version(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_through_event_ids() {
        let pos = Position {
            key: FileKey {
                dev: 0x803,
                ino: 123_456,
            },
            fp: Fingerprint::of(b"first line\n"),
            offset: 99,
        };
        let id = pos.event_id();
        assert!(id.len() <= crate::event::MAX_EVENT_ID_BYTES, "{id}");
        assert_eq!(Position::from_event_id(&id), Some(pos));
        assert_eq!(Position::from_event_id("client-id-1"), None);
        assert_eq!(Position::from_event_id("tail:1.2.3:4"), None);
    }

    proptest::proptest! {
        /// The id is the documented format (`docs/wire-format.md` §4), for any position.
        #[test]
        fn event_ids_are_the_documented_format(
            dev: u64, ino: u64, len: u16, hash: u64, offset: u64,
        ) {
            let pos = Position { key: FileKey { dev, ino }, fp: Fingerprint { len, hash }, offset };
            let want = format!("tail:{dev:x}.{ino:x}.{len}.{hash:016x}:{offset}");
            proptest::prop_assert_eq!(pos.event_id(), want);
            proptest::prop_assert_eq!(Position::from_event_id(&pos.event_id()), Some(pos));
        }
    }

    #[test]
    fn fingerprints_grow_with_short_files_and_match_prefixes() {
        let short = Fingerprint::of(b"abc");
        assert_eq!(short.len, 3);
        assert!(short.matches(b"abcdef"));
        assert!(!short.matches(b"ab"));
        assert!(!short.matches(b"xbcdef"));
        let long = vec![7u8; 1000];
        let full = Fingerprint::of(&long);
        assert!(full.is_full() && full.matches(&long[..FINGERPRINT_BYTES]));
    }

    #[test]
    fn checkpoints_refuse_unknown_versions() {
        let c = Checkpoint {
            version: 2,
            files: vec![],
        };
        let err = Checkpoint::decode(&serde_json::to_vec(&c).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 2"), "{err}");
    }
}
