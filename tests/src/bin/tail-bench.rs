//! Tailer throughput: lines read from log files into the spool (fsync per poll,
//! checkpoint saved per poll), from one file and from 100 files, beside `wc -l`
//! reading the same bytes. Not a test: prints a table.
//!
//! `cargo run --release -p tests --bin tail-bench -- [LINES] [json|text|multiline ...]`
//! (all three kinds of source unless some are named: name one to profile it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use evd_producer::spool::{DirStore, Spool, SpoolLimits};
use evd_producer::tail::multiline::{Boundary, MultilineSpec};
use evd_producer::tail::{
    CheckpointStore, FileCheckpointStore, LineFormat, LineKind, Pattern, ReadFrom, RealFs,
    SourceSpec, TailSettings, Tailer, tail_event,
};
use tests::agent_proc::example_registry_dir;
use tests::oracle::event_line;

/// Writes `lines` event lines spread over `files` files under `dir/logs`.
fn write_logs(dir: &Path, files: u64, lines: u64) -> Result<(PathBuf, u64)> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut bytes = 0;
    for f in 0..files {
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(logs.join(format!("f{f}.log")))?);
        for id in (0..lines).filter(|id| id % files == f) {
            let line = event_line(id);
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
            bytes += line.len() as u64 + 1;
        }
        out.flush()?;
    }
    Ok((logs, bytes))
}

/// How the bench's source reads its lines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Each line is a PageView event object.
    Json,
    /// Each line is the `line` field of a LogLine event.
    Text,
    /// As `Text`, lines joined by a start pattern that every line matches: the cost
    /// of multi-line joining itself (a regex and the grouping per line).
    TextMultiline,
}

/// The process's CPU time so far (user + system), in seconds.
fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Tails everything under `logs` into a fresh spool; returns (seconds, CPU seconds).
fn tail_into_spool(dir: &Path, logs: &Path, lines: u64, mode: Mode) -> Result<(f64, f64)> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(example_registry_dir())? {
        let path = entry?.path();
        sources.push((path.display().to_string(), std::fs::read_to_string(&path)?));
    }
    let registry = evd_schemas::Registry::from_sources(sources)?;
    let spool_dir = dir.join(match mode {
        Mode::Json => "spool-json",
        Mode::Text => "spool-text",
        Mode::TextMultiline => "spool-multiline",
    });
    let limits = SpoolLimits {
        dedup_window_us: 30_000_000,
        max_bytes: 64 << 30,
        segment_bytes: 64 << 20,
    };
    let (mut spool, _) = Spool::open(DirStore::open(&spool_dir)?, "bench", limits)?;
    let mut checkpoints = FileCheckpointStore {
        path: dir.join("tail-checkpoints.json"),
    };
    let spec = SourceSpec {
        include: vec![Pattern::new(&logs.join("*.log")).map_err(|e| anyhow::anyhow!("{e}"))?],
        exclude: vec![],
        max_line_bytes: 1 << 20,
        partial_flush_ms: None,
        read_from: ReadFrom::Beginning,
        ignore_older_ms: None,
        multiline: (mode == Mode::TextMultiline).then(|| MultilineSpec {
            boundary: Boundary::Start(regex::bytes::Regex::new(r#"^\{"type":"#).expect("a regex")),
            max_lines: 500,
            max_bytes: 256 << 10,
            // The files are complete before the bench starts: a group at a file's end
            // is whole, and waiting for the idle time would only add a sleep.
            flush_timeout_ms: 0,
        }),
    };
    let settings = TailSettings {
        rotate_wait_ms: 5_000,
        read_chunk_bytes: 4 << 20,
        max_poll_bytes: 16 << 20,
    };
    let mut tailer = Tailer::new(RealFs, vec![spec], settings, None, []);
    let started = Instant::now();
    let cpu = cpu_seconds();
    let (format, event_type) = match mode {
        Mode::Json => (LineFormat::Json, "PageView"),
        Mode::Text | Mode::TextMultiline => (LineFormat::Text, "LogLine"),
    };
    let mut spooled = 0;
    while spooled < lines {
        let now_ms = started.elapsed().as_millis() as i64;
        let batch = tailer.poll(now_ms);
        let now_us = now_ms * 1000;
        // As the agent's tail shell: each line becomes its event and is checked, and
        // the poll's events go to the spool as one group.
        let mut bodies = Vec::with_capacity(batch.len());
        for line in batch.iter().filter(|l| l.kind != LineKind::Skipped) {
            let event = tail_event(line, event_type, format, now_ms, &registry)
                .map_err(anyhow::Error::msg)?;
            bodies.push(event);
        }
        for result in spool.append_events(
            now_us,
            bodies
                .iter()
                .map(|e| (e.event_type.as_str(), e.body.as_slice())),
        )? {
            result?;
            spooled += 1;
        }
        spool.sync()?;
        tailer.commit(batch.iter().map(|l| (l, true)));
        checkpoints.save(&tailer.checkpoint().encode())?;
    }
    Ok((started.elapsed().as_secs_f64(), cpu_seconds() - cpu))
}

fn wc(logs: &Path) -> Result<f64> {
    let files: Vec<PathBuf> = std::fs::read_dir(logs)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let status = Command::new("wc").arg("-l").args(&files).output()?.status;
    anyhow::ensure!(status.success(), "wc failed");
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let lines: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let only: Vec<String> = std::env::args().skip(2).collect();
    println!("| what | files | lines | MB | seconds | lines/s | MB/s | CPU ms per MB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for files in [1, 100] {
        let dir = tempfile::tempdir()?;
        let (logs, bytes) = write_logs(dir.path(), files, lines)?;
        let mb = bytes as f64 / 1e6;
        let row = |what: &str, secs: f64, cpu: Option<f64>| {
            println!(
                "| {what} | {files} | {lines} | {mb:.0} | {secs:.2} | {:.0} | {:.1} | {} |",
                lines as f64 / secs,
                mb / secs,
                cpu.map_or("–".into(), |c| format!("{:.1}", c * 1000.0 / mb))
            );
        };
        row("wc -l (page cache)", wc(&logs)?, None);
        for (name, what, mode) in [
            ("json", "evd tailer → spool, json", Mode::Json),
            ("text", "evd tailer → spool, text", Mode::Text),
            (
                "multiline",
                "evd tailer → spool, text, multi-line joining",
                Mode::TextMultiline,
            ),
        ] {
            if !only.is_empty() && !only.iter().any(|o| o == name) {
                continue;
            }
            let (secs, cpu) = tail_into_spool(dir.path(), &logs, lines, mode)?;
            row(what, secs, Some(cpu));
        }
    }
    Ok(())
}
