//! # Tailer: log files into the spool, every line once
//!
//! The agent follows the files its `[[sources]]` name and turns each line into
//! an event that goes through the same writer (and fsync) as the socket's.
//!
//! ## File identity
//!
//! A file is **device + inode + fingerprint**. The fingerprint is a hash of the first
//! 256 bytes (of the whole file while it is shorter; it grows with the file). Inode
//! numbers are reused once a file is deleted and closed, so a checkpoint for
//! (dev, ino) applies to a file only if that file still starts with the fingerprinted
//! bytes. A file that was truncated and rewritten with the same first 256 bytes
//! looks appended-to: that one case cannot be told apart.
//!
//! ## Where a file is read from
//!
//! Every tailed line's event carries its position as `event_id`:
//! `tail:<dev>.<ino>.<fingerprint>:<offset just past the line>`. The checkpoint file
//! (`tail.checkpoint_path`, JSON, version 1) holds each open file's identity, its
//! path and the offset up to which every line is in the spool, and every resume point
//! no open file has claimed yet (a file a rotation hid from the last scan). It is replaced
//! atomically (write temp, fsync, rename, fsync directory) after the spool's fsync
//! covered the lines, never before. On start, a file resumes at the furthest of the
//! checkpoint's offset and the offsets in the `event_id`s the spool still holds, so a
//! crash between the spool's fsync and the checkpoint does not read lines twice, and
//! a crash before the fsync reads them again (they were never acked to anyone).
//! Without any position a file is read from its beginning, except under
//! `read_from = "end"` in the first scan of an agent that has no checkpoint at all
//! (a first deploy): there it starts past its last complete line, and the checkpoint
//! saved after that scan fixes the position. A file with no position that was last
//! modified over `ignore_older_secs` ago is not opened until it is written to; where it
//! starts was fixed when it was first seen.
//!
//! ## Rules
//!
//! 1. Positions only advance over lines the spool made durable (or refused for good:
//!    invalid lines are counted and logged, not retried). "Spool full" stops the file
//!    at that line; it is read again later.
//! 2. Files are read through open handles, so a renamed or deleted file is read to
//!    its end. **Rename + create** rotation: the old file is finished, the new one
//!    read from its start. A file no pattern names any more is closed once it has been
//!    read to its end and has not grown for `rotate_wait_ms`; its last line, if it has
//!    no newline, is taken then.
//! 3. After a restart, the directories of the patterns are searched for files the
//!    checkpoint or spool knows that no pattern names any more (rotated while the agent
//!    was down) and those are finished. Resume points are kept for `rotate_wait_ms`
//!    after the first scan, so a file a rotation moved while that scan listed and
//!    stat'ed its directory resumes where it was when a later scan finds it. A file created *and* rotated away while the
//!    agent was down is unknown: only a pattern that also names rotated files
//!    (`app.log*`) finds it, which is why that is the advice for rename rotation. A file that had fewer than 64 bytes when last
//!    seen cannot be told from another file that got its inode (a copy, say: log
//!    lines share prefixes), so it is not searched for. Rotated files must stay in the same directory
//!    (and uncompressed, e.g. logrotate's `delaycompress`) until they are finished.
//! 4. A file shorter than its read position, or whose first bytes changed, was
//!    truncated (**copytruncate**) or rewritten: it is read again from offset 0. Lines
//!    appended after the tailer's last read and before the truncation are lost with
//!    copytruncate: they are only in the copy, which no pattern should name (or it is
//!    read as a new file, twice). That window is the method's, and rename rotation
//!    has none. A poll reads at most `read_chunk_bytes` from a file and
//!    `max_poll_bytes` in all (the next poll goes on with the next files), so a file
//!    that is behind waits for its turn, and the window lasts until then.
//! 5. A line longer than `max_line_bytes` is refused once (counted) and skipped up to
//!    its newline. A last line without newline waits for it, or is taken as a partial
//!    line after `partial_flush_ms` without growth (its continuation, if one comes, is
//!    then a line of its own).
//!
//! 6. With `multiline`, consecutive lines are joined into one event ([`multiline`]):
//!    its position is its last line's end, so rules 1–5 hold for whole events; the
//!    last event of a read is handed out only once its file is idle
//!    `flush_timeout_ms` (or finished), and is read again until then.
//!
//! Polling is the source of truth: every `poll_interval_ms` the patterns are listed
//! and the files read. Between polls the shell waits on inotify ([`wake`]) for the
//! patterns' directories, so a written line is read at once; a missed notification
//! only costs the rest of the interval.
//!
//! The formats (fingerprint, `tail:` id, checkpoint) are `evd_schemas::tail`. The
//! core ([`tailer`]) is sans-IO over [`fs::TailFs`]; the shell ([`shell`]) runs it
//! in the agent. `model_tests` checks the rules against random file histories with
//! crashes.

pub mod event;
pub mod fs;
pub mod multiline;
pub mod pattern;
pub mod position;
pub mod shell;
pub mod tailer;
pub mod wake;

#[cfg(test)]
mod memfs;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod multiline_tests;
#[cfg(test)]
mod start_tests;

pub use evd_schemas::tail::{Checkpoint, Position};
pub use event::{LineFormat, event_body, tail_event};
pub use fs::{FileKey, RealFs, TailFs};
pub use pattern::{BadPattern, Pattern};
pub use position::{CheckpointStore, FileCheckpointStore, MemCheckpointStore};
pub use tailer::{LineKind, ReadFrom, SourceSpec, TailLine, TailSettings, TailStats, Tailer};
