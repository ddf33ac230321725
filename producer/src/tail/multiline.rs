//! Multi-line events: consecutive lines of one file joined into one event (a stack
//! trace after its log line). Pure: the tailer's read cuts lines, then [`join`]
//! groups them.
//!
//! A group starts at a line matching `start` (or, with `continuation`, at a line
//! *not* matching it) and takes the lines after it until the next group starts, it
//! has `max_lines` lines or another line would take it over `max_bytes`. Lines are
//! joined with `\n`; the event's position is the end of its last line, so positions
//! still only advance over whole events the spool made durable, and a crash anywhere
//! reads the whole group again. The last group of a read is held back (not handed
//! out; the file is read again from its first line at the next poll) until the file
//! has been idle `flush_timeout_ms` or was rotated away and finished: a group is only
//! taken once no more lines of it can come.

use regex::bytes::Regex;

use super::tailer::{LineKind, TailLine};

/// How a source's lines are grouped.
#[derive(Debug, Clone)]
pub struct MultilineSpec {
    pub boundary: Boundary,
    pub max_lines: usize,
    pub max_bytes: usize,
    pub flush_timeout_ms: i64,
}

#[derive(Debug, Clone)]
pub enum Boundary {
    /// A line matching this starts a new event.
    Start(Regex),
    /// A line matching this continues the event before it.
    Continuation(Regex),
}

impl MultilineSpec {
    fn starts_group(&self, line: &[u8]) -> bool {
        match &self.boundary {
            Boundary::Start(re) => re.is_match(line),
            Boundary::Continuation(re) => !re.is_match(line),
        }
    }
}

/// Joins `lines[from..]` (one file's lines of one read, in order) into groups in
/// place. `idle`: no more lines can come soon (the file is idle or finished), so the
/// last group is complete. Returns the end offset of the last line handed out when
/// a last group is held back (the read position to go back to), else `None`.
pub fn join(
    lines: &mut Vec<TailLine>,
    from: usize,
    spec: &MultilineSpec,
    idle: bool,
) -> Option<Held> {
    let tail: Vec<TailLine> = lines.drain(from..).collect();
    let mut group: Option<(TailLine, usize)> = None;
    let mut held = None;
    for line in tail {
        match line.kind {
            LineKind::Line | LineKind::Partial => {
                if let Some((g, n)) = &mut group {
                    let fits = *n < spec.max_lines
                        && g.bytes.len() + 1 + line.bytes.len() <= spec.max_bytes;
                    if fits && !spec.starts_group(&line.bytes) {
                        g.bytes.push(b'\n');
                        g.bytes.extend_from_slice(&line.bytes);
                        g.end = line.end;
                        g.kind = line.kind;
                        *n += 1;
                        continue;
                    }
                    lines.push(group.take().expect("a group").0);
                }
                group = Some((line, 1));
            }
            LineKind::TooLong | LineKind::Skipped => {
                if let Some((g, _)) = group.take() {
                    lines.push(g);
                }
                lines.push(line);
            }
        }
    }
    if let Some((g, _)) = group {
        if idle {
            lines.push(g);
        } else {
            held = Some(Held {
                after: lines[from..].last().map(|l| l.end.offset),
            });
        }
    }
    held
}

/// A last group was held back: the file is read again from `after` (the end of the
/// last line handed out by this read), or from where this read began if `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub after: Option<u64>,
}
