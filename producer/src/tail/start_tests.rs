//! Where files no resume point knows start: `read_from`, `ignore_older_ms`, and
//! sources whose patterns reach through directories (`**`).

use std::path::{Path, PathBuf};

use evd_schemas::tail::{CHECKPOINT_VERSION, Checkpoint};

use super::memfs::MemFs;
use super::pattern::Pattern;
use super::tailer::{ReadFrom, SourceSpec, TailSettings, Tailer};

fn spec(pattern: &str, read_from: ReadFrom, ignore_older_ms: Option<i64>) -> SourceSpec {
    SourceSpec {
        include: vec![Pattern::new(Path::new(pattern)).unwrap()],
        exclude: vec![],
        max_line_bytes: 64,
        partial_flush_ms: None,
        read_from,
        ignore_older_ms,
        multiline: None,
    }
}

fn settings() -> TailSettings {
    TailSettings {
        rotate_wait_ms: 1_000,
        read_chunk_bytes: 1 << 16,
        max_poll_bytes: 1 << 20,
    }
}

fn file(fs: &MemFs, path: &str, bytes: &[u8]) -> PathBuf {
    let path = PathBuf::from(path);
    fs.mkdir(path.parent().unwrap());
    if !fs.exists(&path) {
        fs.create(&path);
    }
    fs.append(&path, bytes);
    path
}

/// Polls and commits everything; the lines' texts, sorted (files take turns).
fn poll(t: &mut Tailer<MemFs>, now_ms: i64) -> Vec<String> {
    let lines = t.poll(now_ms);
    t.commit(lines.iter().map(|l| (l, true)));
    let mut texts: Vec<String> = lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect();
    texts.sort();
    texts
}

#[test]
fn read_from_end_skips_what_the_first_deploy_finds_but_not_later_files() {
    let fs = MemFs::default();
    file(&fs, "/l/a.log", b"old 1\nold 2\nhalf");
    let specs = vec![spec("/l/*.log", ReadFrom::End, None)];
    let mut t = Tailer::new(fs.clone(), specs.clone(), settings(), None, []);
    assert!(poll(&mut t, 0).is_empty());
    file(&fs, "/l/a.log", b" done\nnew\n");
    file(&fs, "/l/b.log", b"b 1\n");
    assert_eq!(poll(&mut t, 10), ["b 1", "half done", "new"]);

    // After a restart with the checkpoint, a file created while the agent was down
    // is new: it is read whole.
    let checkpoint = t.checkpoint();
    file(&fs, "/l/a.log", b"while down\n");
    file(&fs, "/l/c.log", b"c 1\n");
    let mut t = Tailer::new(fs.clone(), specs, settings(), Some(&checkpoint), []);
    assert_eq!(poll(&mut t, 20), ["c 1", "while down"]);
}

#[test]
fn read_from_end_does_not_apply_once_a_checkpoint_exists() {
    let fs = MemFs::default();
    file(&fs, "/l/a.log", b"line 1\n");
    let empty = Checkpoint {
        version: CHECKPOINT_VERSION,
        files: vec![],
    };
    let specs = vec![spec("/l/*.log", ReadFrom::End, None)];
    let mut t = Tailer::new(fs.clone(), specs, settings(), Some(&empty), []);
    assert_eq!(poll(&mut t, 0), ["line 1"]);
}

#[test]
fn old_files_wait_until_written_and_start_where_they_stood_when_first_seen() {
    let fs = MemFs::default();
    fs.set_now(0);
    file(&fs, "/l/old.log", b"ancient\n");
    file(&fs, "/m/old.log", b"ancient\n");
    fs.set_now(50_000);
    file(&fs, "/l/fresh.log", b"fresh\n");
    let specs = vec![
        spec("/l/*.log", ReadFrom::Beginning, Some(10_000)),
        spec("/m/*.log", ReadFrom::End, Some(10_000)),
    ];
    let mut t = Tailer::new(fs.clone(), specs, settings(), None, []);
    assert_eq!(poll(&mut t, 50_000), ["fresh"]);
    assert!(poll(&mut t, 60_000).is_empty());
    fs.set_now(70_000);
    file(&fs, "/l/old.log", b"revived\n");
    file(&fs, "/m/old.log", b"revived\n");
    // `beginning`: all of it; `end`: from where the first scan saw its end.
    assert_eq!(poll(&mut t, 70_000), ["ancient", "revived", "revived"]);
}

#[test]
fn double_star_sources_find_files_at_any_depth() {
    let fs = MemFs::default();
    file(&fs, "/srv/app.log", b"top\n");
    fs.mkdir(Path::new("/srv/a"));
    file(&fs, "/srv/a/b/app.log", b"deep\n");
    file(&fs, "/srv/a/b/other.txt", b"not named\n");
    let specs = vec![spec("/srv/**/*.log", ReadFrom::Beginning, None)];
    let mut t = Tailer::new(fs.clone(), specs, settings(), None, []);
    assert_eq!(poll(&mut t, 0), ["deep", "top"]);
}
