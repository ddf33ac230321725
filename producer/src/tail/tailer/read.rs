//! Reading one watched file: noticing truncation and rewrites, then cutting what was
//! appended into lines (complete, partial, too long, skipped).

use evd_schemas::tail::{FINGERPRINT_BYTES, Fingerprint, Position};

use super::super::multiline::join;
use super::{FileKey, LineKind, TailFs, TailLine, Tailer, Watched};

impl<F: TailFs> Tailer<F> {
    /// Reads up to one chunk of `key` past what was handed out (at most `budget`
    /// bytes, but always enough for one line), appending its lines. Returns the bytes
    /// read.
    pub(super) fn read_file(
        &mut self,
        key: FileKey,
        now_ms: i64,
        budget: usize,
        out: &mut Vec<TailLine>,
    ) -> usize {
        let Some(w) = self.files.get_mut(&key) else {
            return 0;
        };
        let Ok(len) = self.fs.len(&w.handle) else {
            self.stats.read_errors += 1;
            return 0;
        };
        if len != w.len || !w.fp.is_full() {
            if len != w.len {
                w.last_change_ms = now_ms;
            }
            let Ok(prefix) = self.fs.read_at(&w.handle, 0, FINGERPRINT_BYTES) else {
                self.stats.read_errors += 1;
                return 0;
            };
            if len < w.read || !w.fp.matches(&prefix) {
                // Truncated (copytruncate) or rewritten: start over from the beginning.
                self.stats.truncations += 1;
                w.read = 0;
                w.durable = 0;
                w.read_skipping = false;
                w.durable_skipping = false;
            }
            w.fp = Fingerprint::of(&prefix);
            w.len = len;
        }
        if len <= w.read {
            return 0;
        }
        let spec = &self.sources[w.source];
        // Always room for one line, and for a whole multi-line group and the line after.
        let group = spec.multiline.as_ref().map_or(0, |m| m.max_bytes + 1);
        let chunk = self
            .settings
            .read_chunk_bytes
            .min(budget)
            .max(spec.max_line_bytes + 1 + group);
        let want = ((len - w.read) as usize).min(chunk);
        let read_from = w.read;
        let Ok(buf) = self.fs.read_at(&w.handle, w.read, want) else {
            self.stats.read_errors += 1;
            return 0;
        };
        let reached_end = w.read + buf.len() as u64 >= len;
        let max = spec.max_line_bytes;
        let first = out.len();
        let idle_ms = now_ms - w.last_change_ms;
        // A file no pattern names any more gets no newline later: finish it.
        let finished = !w.matched && idle_ms >= self.settings.rotate_wait_ms;
        let mut lines = Lines { out, key, at: 0 };
        while let Some(nl) = memchr::memchr(b'\n', &buf[lines.at..]) {
            let start = lines.at;
            let line = &buf[start..start + nl];
            let end = start + nl + 1;
            if w.read_skipping {
                lines.push(w, end, LineKind::Skipped, &[], false);
            } else if line.len() > max {
                lines.push(w, end, LineKind::TooLong, &line[..max], false);
            } else {
                lines.push(w, end, LineKind::Line, line, false);
            }
        }
        let rest = &buf[lines.at..];
        if rest.is_empty() {
        } else if w.read_skipping {
            lines.push(w, buf.len(), LineKind::Skipped, &[], true);
        } else if rest.len() > max {
            lines.push(w, buf.len(), LineKind::TooLong, &rest[..max], true);
        } else if reached_end && (finished || spec.partial_flush_ms.is_some_and(|f| idle_ms >= f)) {
            lines.push(w, buf.len(), LineKind::Partial, rest, false);
        }
        if let Some(multiline) = &spec.multiline {
            let idle = reached_end && (finished || idle_ms >= multiline.flush_timeout_ms);
            if let Some(held) = join(out, first, multiline, idle) {
                // The last group is not complete yet: read it again next time.
                w.read = held.after.unwrap_or(read_from);
                w.read_skipping = false;
            }
        }
        buf.len()
    }
}

/// Appends lines of one file, advancing its read position.
struct Lines<'a> {
    out: &'a mut Vec<TailLine>,
    key: FileKey,
    /// Bytes of the read buffer already handed out.
    at: usize,
}

impl Lines<'_> {
    fn push<H>(
        &mut self,
        w: &mut Watched<H>,
        end: usize,
        kind: LineKind,
        bytes: &[u8],
        skip: bool,
    ) {
        w.read += (end - self.at) as u64;
        w.read_skipping = skip;
        self.at = end;
        self.out.push(TailLine {
            source: w.source,
            path: w.path.clone(),
            end: Position {
                key: self.key,
                fp: w.fp,
                offset: w.read,
            },
            kind,
            bytes: bytes.to_vec(),
            skipping_after: skip,
        });
    }
}
