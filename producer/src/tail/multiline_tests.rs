//! Multi-line joining: the pure grouping, and a model of random appends (cut at any
//! byte), polls and agent crashes at every step of a poll, against which every
//! multi-line event must reach the spool exactly once and whole.

use std::path::{Path, PathBuf};

use evd_schemas::tail::{Checkpoint, Position};
use proptest::prelude::*;
use regex::bytes::Regex;

use super::memfs::MemFs;
use super::multiline::{Boundary, MultilineSpec};
use super::pattern::Pattern;
use super::tailer::{ReadFrom, SourceSpec, TailSettings, Tailer};

const FLUSH_MS: i64 = 10_000;

fn spec(max_lines: usize) -> SourceSpec {
    SourceSpec {
        include: vec![Pattern::new(Path::new("/l/*.log")).unwrap()],
        exclude: vec![],
        max_line_bytes: 200,
        partial_flush_ms: None,
        read_from: ReadFrom::Beginning,
        ignore_older_ms: None,
        multiline: Some(MultilineSpec {
            boundary: Boundary::Start(Regex::new(r"^E\d+ ").unwrap()),
            max_lines,
            max_bytes: 4_096,
            flush_timeout_ms: FLUSH_MS,
        }),
    }
}

fn settings() -> TailSettings {
    TailSettings {
        rotate_wait_ms: 1_000,
        read_chunk_bytes: 64,
        max_poll_bytes: 1 << 20,
    }
}

fn log() -> PathBuf {
    PathBuf::from("/l/app.log")
}

fn texts(lines: &[super::TailLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect()
}

#[test]
fn a_stack_trace_is_one_event_and_the_last_waits_for_the_idle_time() {
    let fs = MemFs::default();
    fs.mkdir(Path::new("/l"));
    fs.create(&log());
    fs.append(
        &log(),
        b"E1 boom\n  at a()\n  at b()\nE2 fine\nE3 again\n  at c()\n",
    );
    let mut t = Tailer::new(fs.clone(), vec![spec(500)], settings(), None, []);
    let lines = t.poll(0);
    assert_eq!(texts(&lines), ["E1 boom\n  at a()\n  at b()", "E2 fine"]);
    assert_eq!(
        lines[0].end.offset, 26,
        "the event ends where its last line does"
    );
    t.commit(lines.iter().map(|l| (l, true)));
    assert!(t.poll(FLUSH_MS - 1).is_empty(), "E3 may still grow");
    fs.append(&log(), b"  at d()\n");
    assert!(t.poll(FLUSH_MS).is_empty(), "it grew: wait again");
    let lines = t.poll(2 * FLUSH_MS + 1);
    assert_eq!(texts(&lines), ["E3 again\n  at c()\n  at d()"]);
}

#[test]
fn groups_stop_at_max_lines() {
    let fs = MemFs::default();
    fs.mkdir(Path::new("/l"));
    fs.create(&log());
    fs.append(&log(), b"E1 a\n 1\n 2\n 3\n 4\nE2 b\n");
    let mut t = Tailer::new(fs.clone(), vec![spec(3)], settings(), None, []);
    let lines = t.poll(0);
    assert_eq!(texts(&lines), ["E1 a\n 1\n 2", " 3\n 4"]);
    t.commit(lines.iter().map(|l| (l, true)));
    assert_eq!(texts(&t.poll(FLUSH_MS + 1)), ["E2 b"]);
}

#[derive(Debug, Clone)]
enum Op {
    /// The next `n` bytes of the planned text, cut anywhere.
    Append(usize),
    Poll(Crash),
    Tick,
}

#[derive(Debug, Clone, Copy)]
enum Crash {
    No,
    /// Lines read, none spooled.
    BeforeSpool,
    /// Spooled, positions not committed nor checkpointed.
    AfterSpool,
    /// Committed in memory, checkpoint not saved.
    AfterCommit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..60).prop_map(Op::Append),
        4 => prop_oneof![
            3 => Just(Crash::No),
            1 => Just(Crash::BeforeSpool),
            1 => Just(Crash::AfterSpool),
            1 => Just(Crash::AfterCommit),
        ]
        .prop_map(Op::Poll),
        1 => Just(Op::Tick),
    ]
}

/// Events of 1–4 lines: `E<i> …` then continuation lines.
fn events() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec((0usize..4, 0usize..20), 1..25).prop_map(|shapes| {
        shapes
            .into_iter()
            .enumerate()
            .map(|(i, (more, pad))| {
                let mut e = format!("E{i} {}", "x".repeat(pad));
                for k in 0..more {
                    e.push_str(&format!("\n  at frame{k}()"));
                }
                e
            })
            .collect()
    })
}

struct Agent {
    fs: MemFs,
    tailer: Tailer<MemFs>,
    checkpoint: Option<Checkpoint>,
    /// The spool: each event's text and position.
    spool: Vec<(String, Position)>,
}

impl Agent {
    fn restart(&mut self) {
        let positions: Vec<Position> = self.spool.iter().map(|(_, p)| *p).collect();
        self.tailer = Tailer::new(
            self.fs.clone(),
            vec![spec(500)],
            settings(),
            self.checkpoint.as_ref(),
            positions,
        );
    }

    /// As the agent's shell does: a poll without lines commits nothing.
    fn poll(&mut self, now_ms: i64, crash: Crash) {
        let lines = self.tailer.poll(now_ms);
        if lines.is_empty() {
            return;
        }
        if matches!(crash, Crash::BeforeSpool) {
            return self.restart();
        }
        for l in &lines {
            self.spool
                .push((String::from_utf8_lossy(&l.bytes).into_owned(), l.end));
        }
        if matches!(crash, Crash::AfterSpool) {
            return self.restart();
        }
        self.tailer.commit(lines.iter().map(|l| (l, true)));
        if matches!(crash, Crash::AfterCommit) {
            return self.restart();
        }
        self.checkpoint = Some(self.tailer.checkpoint());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn every_multi_line_event_is_spooled_once_and_whole(events in events(), ops in prop::collection::vec(op(), 1..60)) {
        let text: String = events.iter().map(|e| format!("{e}\n")).collect();
        let fs = MemFs::default();
        fs.mkdir(Path::new("/l"));
        fs.create(&log());
        let mut agent = Agent {
            tailer: Tailer::new(fs.clone(), vec![spec(500)], settings(), None, []),
            fs: fs.clone(),
            checkpoint: None,
            spool: Vec::new(),
        };
        let (mut written, mut now) = (0, 0);
        for op in ops {
            match op {
                Op::Append(n) => {
                    let to = (written + n).min(text.len());
                    fs.append(&log(), &text.as_bytes()[written..to]);
                    written = to;
                }
                Op::Poll(crash) => agent.poll(now, crash),
                // Time moves, but never as far as the flush timeout while appending.
                Op::Tick => now += 100,
            }
        }
        fs.append(&log(), &text.as_bytes()[written..]);
        for _ in 0..50 {
            now += FLUSH_MS + 1;
            agent.poll(now, Crash::No);
        }
        let spooled: Vec<&String> = agent.spool.iter().map(|(t, _)| t).collect();
        prop_assert_eq!(spooled, events.iter().collect::<Vec<_>>());
    }
}
