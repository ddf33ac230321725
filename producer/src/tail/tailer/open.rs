//! Opening a file a scan found: where its reading starts (a resume point, the
//! beginning, or with `read_from = "end"` past its last complete line), and holding
//! back files older than `ignore_older_ms`.

use std::path::Path;
use std::sync::Arc;

use evd_schemas::tail::{FINGERPRINT_BYTES, Fingerprint};

use super::{FileKey, ReadFrom, TailFs, Tailer, Watched};

/// A file seen but too old to read yet, and where it will start once it is not.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    fp: Fingerprint,
    start: u64,
}

impl<F: TailFs> Tailer<F> {
    /// Whether a file is held back and still too old (then it is not even opened).
    pub(super) fn still_held(
        &mut self,
        path: &Path,
        key: &FileKey,
        source: usize,
        now_ms: i64,
    ) -> bool {
        self.held.contains_key(key) && self.too_old(path, source, now_ms)
    }

    fn too_old(&mut self, path: &Path, source: usize, now_ms: i64) -> bool {
        let Some(max_age_ms) = self.sources[source].ignore_older_ms else {
            return false;
        };
        // A file whose age cannot be read is read: skipping it could lose lines.
        self.fs
            .modified_ms(path)
            .is_ok_and(|modified| now_ms - modified > max_age_ms)
    }

    pub(super) fn open(&mut self, path: &Path, source: usize, matched: bool, now_ms: i64) {
        let (handle, key) = match self.fs.open(path) {
            Ok(h) => h,
            Err(_) => {
                self.stats.open_errors += 1;
                return;
            }
        };
        if self.files.contains_key(&key) {
            return; // renamed between listing and opening: already watched
        }
        let (len, prefix) = match self.len_and_prefix(&handle) {
            Some(x) => x,
            None => return,
        };
        let resume = self
            .known
            .get(&key)
            .into_iter()
            .flatten()
            // A short fingerprint matches too much to pick out a file no pattern names
            // (log lines share prefixes): a copy would be read twice.
            .filter(|k| k.fp.matches(&prefix) && (matched || k.fp.is_recognisable()))
            .map(|k| k.offset)
            .max();
        let start = match resume {
            Some(offset) if offset <= len => offset,
            Some(_) => {
                self.stats.truncations += 1;
                0
            }
            None if matched => {
                let Some(start) = self.new_file_start(&handle, key, source, len, &prefix) else {
                    return;
                };
                if self.too_old(path, source, now_ms) {
                    let fp = Fingerprint::of(&prefix);
                    self.held.insert(key, Held { fp, start });
                    return;
                }
                self.held.remove(&key);
                start
            }
            None => 0,
        };
        // A file no pattern names is only finished, never started: without a resume
        // point it is a copy or an old file, and reading it would duplicate lines.
        // Its resume point stays for a later scan that names it (a rotation may have hid
        // it from this one's pattern listing): only a watched file consumes it.
        if !matched && (resume.is_none() || start >= len) {
            return;
        }
        self.known.remove(&key);
        self.stats.files_opened += 1;
        self.discovered = true;
        self.files.insert(
            key,
            Watched {
                handle,
                source,
                path: Arc::new(path.to_path_buf()),
                fp: Fingerprint::of(&prefix),
                durable: start,
                durable_skipping: false,
                read: start,
                read_skipping: false,
                matched,
                len,
                last_change_ms: now_ms,
            },
        );
    }

    /// Where a file no resume point knows starts: where it was first seen to start
    /// if it was held back, past its last complete line if `read_from = "end"`
    /// applies, else its beginning. `None` if it cannot be read now.
    fn new_file_start(
        &mut self,
        handle: &F::Handle,
        key: FileKey,
        source: usize,
        len: u64,
        prefix: &[u8],
    ) -> Option<u64> {
        if let Some(held) = self.held.get(&key)
            && held.fp.matches(prefix)
            && held.start <= len
        {
            return Some(held.start);
        }
        let spec = &self.sources[source];
        if !(self.first_deploy_scan && spec.read_from == ReadFrom::End) {
            return Some(0);
        }
        let back = len.min(spec.max_line_bytes as u64 + 1);
        let tail = self.fs.read_at(handle, len - back, back as usize).ok()?;
        Some(match memchr::memrchr(b'\n', &tail) {
            Some(i) => len - back + i as u64 + 1,
            // No newline in reach: one line being written (from 0), or the rest of
            // a line too long to take anyway.
            None if back == len => 0,
            None => len,
        })
    }

    pub(super) fn len_and_prefix(&mut self, handle: &F::Handle) -> Option<(u64, Vec<u8>)> {
        let len = self.fs.len(handle).ok()?;
        let prefix = self.fs.read_at(handle, 0, FINGERPRINT_BYTES).ok()?;
        Some((len, prefix))
    }
}
