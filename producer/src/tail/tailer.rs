//! The tailer's core: which files to read, from where, and which lines they hold.
//! Sans-IO: the file system is a [`TailFs`], time is a parameter, and nothing is
//! written. The shell spools the lines `poll` returns, then calls `commit` and saves
//! `checkpoint()`; a crash anywhere in between is covered by the positions the spool
//! hands back (see the module docs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fs::{FileKey, TailFs};
use super::pattern::Pattern;
use evd_schemas::tail::{CHECKPOINT_VERSION, Checkpoint, CheckpointEntry, Fingerprint, Position};

/// One file source as the core needs it.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Glob patterns (see `pattern`), absolute or relative to the working directory.
    pub include: Vec<Pattern>,
    /// Patterns of files never read, though `include` matches them.
    pub exclude: Vec<Pattern>,
    /// Where a file no resume point knows is read from (see [`ReadFrom`]).
    pub read_from: ReadFrom,
    /// A file no resume point knows is not read while its last modification is
    /// older than this; where it starts is fixed when it is first seen.
    pub ignore_older_ms: Option<i64>,
    /// Longest line taken; a longer one becomes one `TooLong` line and the rest of it
    /// up to its newline is skipped.
    pub max_line_bytes: usize,
    /// A last line without newline is emitted as `Partial` once the file has not
    /// grown for this long. `None`: held until its newline comes.
    pub partial_flush_ms: Option<i64>,
    /// Consecutive lines joined into one event (see `multiline`).
    pub multiline: Option<super::multiline::MultilineSpec>,
}

/// Where a file is read from when no checkpoint or spooled line knows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// From its first byte: every line the file holds.
    #[default]
    Beginning,
    /// From just past its last complete line, for the files the first scan finds
    /// when the agent starts with no checkpoint at all (a first deploy skips old
    /// logs). Files found later, and every file once a checkpoint exists (created
    /// while the agent was down, say), are read from the beginning: they are new.
    End,
}

#[derive(Debug, Clone, Copy)]
pub struct TailSettings {
    /// A file that no pattern matches any more (rotated away or deleted) is read to
    /// its end and closed once it has not grown for this long.
    pub rotate_wait_ms: i64,
    /// Bytes read from one file per poll (raised to `max_line_bytes + 1`).
    pub read_chunk_bytes: usize,
    /// Bytes read from all files together per poll: a poll stops once it has read
    /// this much (the file it stops in may add up to its `max_line_bytes`), and the
    /// next poll goes on with the files after the last one read. So a poll's memory
    /// does not grow with the number of files that have a backlog.
    pub max_poll_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// A complete line (newline excluded).
    Line,
    /// A last line without newline, flushed after `partial_flush_ms`.
    Partial,
    /// The first `max_line_bytes` of a longer line: refused, not spooled.
    TooLong,
    /// The rest of a too-long line: dropped silently (it was counted once).
    Skipped,
}

/// A line read from a file. `end` is the position just past it (and its newline).
#[derive(Debug, Clone)]
pub struct TailLine {
    pub source: usize,
    pub path: Arc<PathBuf>,
    pub end: Position,
    pub kind: LineKind,
    pub bytes: Vec<u8>,
    /// Whether the reader is inside a too-long line after this one.
    skipping_after: bool,
}

/// Counters the shell turns into metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TailStats {
    pub files_opened: u64,
    pub files_closed: u64,
    /// Watched files that no pattern matches any more (rename rotation or delete).
    pub rotations: u64,
    /// Files found shorter than what was read, or with a different beginning.
    pub truncations: u64,
    pub open_errors: u64,
    pub read_errors: u64,
}

/// A watched file's progress, for the bytes-behind gauge.
#[derive(Debug, Clone)]
pub struct FileStatus {
    pub source: usize,
    pub path: Arc<PathBuf>,
    pub len: u64,
    pub durable: u64,
}

struct Watched<H> {
    handle: H,
    source: usize,
    path: Arc<PathBuf>,
    fp: Fingerprint,
    /// Lines ending at or before this are in the spool.
    durable: u64,
    durable_skipping: bool,
    /// Lines ending at or before this were handed out by `poll`.
    read: u64,
    read_skipping: bool,
    /// Some pattern names this file now.
    matched: bool,
    len: u64,
    last_change_ms: i64,
}

/// A resume point not claimed by a watched file: from the checkpoint or the spool at
/// start, or left by a file closed because no pattern named it (a rename may hide a
/// file from one scan's listing). Kept until `until_ms` (set at the first scan for
/// those from start), so finding the file again resumes where it was.
#[derive(Debug, Clone)]
struct Known {
    fp: Fingerprint,
    offset: u64,
    until_ms: Option<i64>,
    /// Where the file was last seen (empty for a point the spool handed back).
    path: Arc<PathBuf>,
}

/// How long an unclaimed resume point is kept: at least this, and 4 × `rotate_wait_ms`.
const KNOWN_RETENTION_MS: i64 = 60_000;

mod open;
mod read;

use open::Held;

pub struct Tailer<F: TailFs> {
    fs: F,
    sources: Vec<SourceSpec>,
    settings: TailSettings,
    files: BTreeMap<FileKey, Watched<F::Handle>>,
    known: HashMap<FileKey, Vec<Known>>,
    stats: TailStats,
    discovered: bool,
    /// The last file the previous poll read from: the next poll starts after it.
    read_last: Option<FileKey>,
    /// No checkpoint existed at start and no scan has run yet: `ReadFrom::End`
    /// applies to what the next scan finds.
    first_deploy_scan: bool,
    /// Files seen but not opened because they are older than `ignore_older_ms`,
    /// with where each will start; only while a pattern names them.
    held: HashMap<FileKey, Held>,
}

impl<F: TailFs> Tailer<F> {
    /// A tailer resuming from a checkpoint and from the positions of tailed lines the
    /// spool still holds (whichever is further wins, per file).
    pub fn new(
        fs: F,
        sources: Vec<SourceSpec>,
        settings: TailSettings,
        checkpoint: Option<&Checkpoint>,
        spooled: impl IntoIterator<Item = Position>,
    ) -> Tailer<F> {
        let mut known: HashMap<FileKey, Vec<Known>> = HashMap::new();
        let from_checkpoint = checkpoint
            .into_iter()
            .flat_map(|c| c.files.iter())
            .filter_map(|e| Some((e.position()?, Arc::new(e.path.clone()))));
        let from_spool = spooled
            .into_iter()
            .map(|pos| (pos, Arc::new(PathBuf::new())));
        for (pos, path) in from_checkpoint.chain(from_spool) {
            known.entry(pos.key).or_default().push(Known {
                fp: pos.fp,
                offset: pos.offset,
                until_ms: None,
                path,
            });
        }
        Tailer {
            fs,
            sources,
            settings,
            files: BTreeMap::new(),
            known,
            stats: TailStats::default(),
            discovered: false,
            read_last: None,
            first_deploy_scan: checkpoint.is_none(),
            held: HashMap::new(),
        }
    }

    pub fn stats(&self) -> TailStats {
        self.stats
    }

    pub fn files(&self) -> impl Iterator<Item = FileStatus> + '_ {
        self.files.values().map(|w| FileStatus {
            source: w.source,
            path: w.path.clone(),
            len: w.len,
            durable: w.durable,
        })
    }

    /// True once if files were opened since the last call: the shell saves a
    /// checkpoint so a file rotated away while the agent is down is still found.
    pub fn take_discovered(&mut self) -> bool {
        std::mem::take(&mut self.discovered)
    }

    /// Every open file at its durable position, and every resume point no open file
    /// claimed yet. The latter matter as much: a file a rotation hid from the last
    /// scan is known only by its resume point, and a checkpoint without it would lose
    /// the file's unread lines at the next restart.
    pub fn checkpoint(&self) -> Checkpoint {
        let open = self.files.iter().map(|(key, w)| {
            let pos = Position {
                key: *key,
                fp: w.fp,
                offset: w.durable,
            };
            CheckpointEntry::new(pos, &w.path)
        });
        let unclaimed = self.known.iter().flat_map(|(key, points)| {
            points.iter().map(|k| {
                let pos = Position {
                    key: *key,
                    fp: k.fp,
                    offset: k.offset,
                };
                CheckpointEntry::new(pos, &k.path)
            })
        });
        Checkpoint {
            version: CHECKPOINT_VERSION,
            files: open.chain(unclaimed).collect(),
        }
    }

    /// Finds files, reads what is new in them and returns their lines, in file order
    /// per file. Every line returned must be passed to `commit` before the next poll.
    pub fn poll(&mut self, now_ms: i64) -> Vec<TailLine> {
        self.scan(now_ms);
        let mut out = Vec::new();
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        let start = self
            .read_last
            .map_or(0, |last| keys.partition_point(|k| *k <= last));
        let mut budget = self.settings.max_poll_bytes;
        for &key in keys[start..].iter().chain(&keys[..start]) {
            if budget == 0 {
                break;
            }
            let read = self.read_file(key, now_ms, budget, &mut out);
            if read > 0 {
                budget = budget.saturating_sub(read);
                self.read_last = Some(key);
            }
        }
        self.close_finished(now_ms);
        out
    }

    /// Records which lines are durable (`true`: spooled, or refused for good) and
    /// which must be read again (`false`: spool full). A file stops at its first
    /// `false`: its later lines are read again too, so order is kept.
    pub fn commit<'a>(&mut self, outcomes: impl IntoIterator<Item = (&'a TailLine, bool)>) {
        let mut blocked = BTreeSet::new();
        for (line, durable) in outcomes {
            let key = line.end.key;
            if blocked.contains(&key) {
                continue;
            }
            let Some(w) = self.files.get_mut(&key) else {
                continue;
            };
            if durable {
                w.durable = line.end.offset;
                w.durable_skipping = line.skipping_after;
            } else {
                blocked.insert(key);
            }
        }
        for w in self.files.values_mut() {
            w.read = w.durable;
            w.read_skipping = w.durable_skipping;
        }
    }

    fn scan(&mut self, now_ms: i64) {
        let mut named: BTreeMap<FileKey, (usize, PathBuf)> = BTreeMap::new();
        let mut dirs = BTreeSet::new();
        for (source, spec) in self.sources.iter().enumerate() {
            for pattern in &spec.include {
                for path in pattern.expand(&mut self.fs, false) {
                    if spec.exclude.iter().any(|x| x.is_match(&path)) {
                        continue;
                    }
                    if let Ok(key) = self.fs.key_of(&path) {
                        named.entry(key).or_insert((source, path));
                    }
                }
                if !self.known.is_empty() {
                    dirs.extend(pattern.dirs(&mut self.fs));
                }
            }
        }
        for (key, w) in self.files.iter_mut() {
            let matched = named.contains_key(key);
            if w.matched && !matched {
                self.stats.rotations += 1;
            }
            w.matched = matched;
            if let Some((_, path)) = named.get(key)
                && path != w.path.as_ref()
            {
                w.path = Arc::new(path.clone());
            }
        }
        self.held.retain(|key, _| named.contains_key(key));
        for (key, (source, path)) in named {
            if !self.files.contains_key(&key) && !self.still_held(&path, &key, source, now_ms) {
                self.open(&path, source, true, now_ms);
            }
        }
        self.first_deploy_scan = false;
        // After a restart: files that were rotated away while the agent was down
        // still have lines to finish. Only files the checkpoint or spool knows count.
        if !self.known.is_empty() {
            for dir in dirs {
                for entry in self.fs.list_dir(&dir) {
                    let path = dir.join(&entry.name);
                    if entry.is_dir {
                        continue;
                    }
                    let Ok(key) = self.fs.key_of(&path) else {
                        continue;
                    };
                    if !self.files.contains_key(&key) && self.known.contains_key(&key) {
                        let source = self.source_for_dir(&dir);
                        self.open(&path, source, false, now_ms);
                    }
                }
            }
            // Resume points no file claimed belong to files that are gone — or to
            // files a rotation hid from this scan (renamed between the listing and the
            // stat, as a logrotate cascade does). Dropping them at once made the next
            // scan read such a file again from its start: they are kept a while.
            let until = now_ms + self.retention_ms();
            self.known.retain(|_, points| {
                points.retain_mut(|k| *k.until_ms.get_or_insert(until) > now_ms);
                !points.is_empty()
            });
        }
    }

    /// The directories the patterns name now: where a change means lines to read.
    pub fn watch_dirs(&mut self) -> BTreeSet<PathBuf> {
        let mut dirs = BTreeSet::new();
        for spec in &self.sources {
            for pattern in &spec.include {
                dirs.extend(pattern.dirs(&mut self.fs));
            }
        }
        dirs
    }

    /// The first source with a pattern in `dir` (rotated files carry on as its).
    fn source_for_dir(&mut self, dir: &Path) -> usize {
        for (source, spec) in self.sources.iter().enumerate() {
            for pattern in &spec.include {
                if pattern.dirs(&mut self.fs).iter().any(|d| d == dir) {
                    return source;
                }
            }
        }
        0
    }

    /// Closes files no pattern matches that are read to their end and idle. Each leaves
    /// its position as a resume point: a rename may have hid it from just this scan.
    fn close_finished(&mut self, now_ms: i64) {
        let wait = self.settings.rotate_wait_ms;
        let until = now_ms + self.retention_ms();
        let done: Vec<FileKey> = self
            .files
            .iter()
            .filter(|(_, w)| {
                !w.matched
                    && w.read >= w.len
                    && w.durable >= w.read
                    && now_ms - w.last_change_ms >= wait
            })
            .map(|(key, _)| *key)
            .collect();
        for key in done {
            let w = self.files.remove(&key).expect("listed above");
            self.known.entry(key).or_default().push(Known {
                fp: w.fp,
                offset: w.durable,
                until_ms: Some(until),
                path: w.path,
            });
            self.stats.files_closed += 1;
        }
    }

    fn retention_ms(&self) -> i64 {
        KNOWN_RETENTION_MS.max(4 * self.settings.rotate_wait_ms)
    }
}
