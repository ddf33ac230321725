//! The tailer in the agent: a thread that polls files, hands lines to the writer
//! (the same group commit and fsync as the socket), waits for the writer's answer,
//! then commits positions and saves the checkpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use evd_schemas::Registry;

use super::fs::RealFs;
use evd_schemas::tail::{Checkpoint, Position};

use super::pattern::Pattern;
use super::position::{CheckpointStore, FileCheckpointStore};
use super::tailer::{LineKind, SourceSpec, TailLine, TailSettings, Tailer};
use super::wake::Wake;
use super::{LineFormat, tail_event};
use crate::clock::Clock;
use crate::config::{FileSourceConfig, TailerConfig};
use crate::metrics::{Metrics, SourceFigures, TailFigures};
use crate::refusal::{LINE_REASONS, LineRefusal};
use crate::socket::count_refusal;
use crate::spool::RecoveredId;
use crate::writer::{Incoming, Refusal, WriterMsg};

pub struct TailShell {
    pub sources: Vec<FileSourceConfig>,
    pub settings: TailerConfig,
    pub checkpoint_path: std::path::PathBuf,
    pub registry: Arc<RwLock<Arc<Registry>>>,
    pub to_writer: Sender<WriterMsg>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub stop: Arc<AtomicBool>,
}

/// Per-source counters for the labelled metrics.
#[derive(Default, Clone, Copy)]
struct SourceCounts {
    bytes: u64,
    lines: u64,
    refused: [u64; LINE_REASONS.len()],
}

/// Checks that every source's type exists (and fits `text`) before the agent starts.
pub fn check_sources(sources: &[FileSourceConfig], registry: &Registry) -> Result<(), String> {
    for s in sources {
        let Some(ty) = registry.get(&s.event_type) else {
            return Err(format!(
                "source {}: event type {:?} is not in the registry",
                s.display_name(),
                s.event_type
            ));
        };
        if s.format == LineFormat::Text {
            for field in ["line", "file"] {
                if ty.field(field).is_none() {
                    return Err(format!(
                        "source {}: text lines need a `{field}` field in type {:?}",
                        s.display_name(),
                        s.event_type
                    ));
                }
            }
            if s.partial_flush_ms.is_some() && ty.field("partial").is_none() {
                return Err(format!(
                    "source {}: partial_flush_ms needs a `partial` field in type {:?}",
                    s.display_name(),
                    s.event_type
                ));
            }
        }
    }
    Ok(())
}

/// The core's view of a source; a pattern that does not compile is an error
/// (`evd validate` reports it before start).
fn source_spec(s: &FileSourceConfig) -> Result<SourceSpec, String> {
    let compile = |patterns: &[std::path::PathBuf]| {
        patterns
            .iter()
            .map(|p| Pattern::new(p).map_err(|e| format!("source {}: {e}", s.display_name())))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(SourceSpec {
        include: compile(&s.include)?,
        exclude: compile(&s.exclude)?,
        max_line_bytes: s.max_line_bytes,
        partial_flush_ms: s.partial_flush_ms.map(|ms| ms as i64),
        read_from: s.read_from,
        ignore_older_ms: s
            .ignore_older_secs
            .map(|secs| secs.saturating_mul(1000).min(i64::MAX as u64) as i64),
        multiline: s
            .multiline
            .as_ref()
            .map(|m| m.spec())
            .transpose()
            .map_err(|e| format!("source {}: multiline: {e}", s.display_name()))?,
    })
}

impl TailShell {
    /// Runs until `stop` is set or the writer is gone. An error (the checkpoint
    /// could not be saved) is fatal for the agent, like a spool error.
    pub fn run(self, spooled: &[RecoveredId]) -> Result<(), String> {
        let mut store = FileCheckpointStore {
            path: self.checkpoint_path.clone(),
        };
        let checkpoint =
            match store.load() {
                Ok(Some(bytes)) => Some(Checkpoint::decode(&bytes).map_err(|e| {
                    format!("tail checkpoint {}: {e}", self.checkpoint_path.display())
                })?),
                Ok(None) => None,
                Err(e) => {
                    return Err(format!(
                        "tail checkpoint {}: {e}",
                        self.checkpoint_path.display()
                    ));
                }
            };
        let specs = self
            .sources
            .iter()
            .map(source_spec)
            .collect::<Result<Vec<_>, _>>()?;
        let positions = spooled
            .iter()
            .filter_map(|r| Position::from_event_id(&r.event_id));
        let mut tailer = Tailer::new(
            RealFs,
            specs,
            TailSettings {
                rotate_wait_ms: self.settings.rotate_wait_ms as i64,
                read_chunk_bytes: self.settings.read_chunk_bytes,
                max_poll_bytes: self.settings.max_poll_bytes,
            },
            checkpoint.as_ref(),
            positions,
        );
        let mut counts = vec![SourceCounts::default(); self.sources.len()];
        let save = |store: &mut FileCheckpointStore, tailer: &Tailer<RealFs>| {
            store
                .save(&tailer.checkpoint().encode())
                .map_err(|e| format!("tail checkpoint {}: {e}", self.checkpoint_path.display()))
        };
        let mut wake = Wake::new();
        let mut watched_at = None;
        while !self.stop.load(Ordering::Relaxed) {
            let now_ms = self.clock.now_ms();
            // The directories to watch change with `**` and new folders: looked up
            // again every 10 s.
            if watched_at.is_none_or(|at| now_ms - at >= 10_000) {
                wake.watch(tailer.watch_dirs());
                watched_at = Some(now_ms);
            }
            let lines = tailer.poll(now_ms);
            if tailer.take_discovered() {
                save(&mut store, &tailer)?;
            }
            if lines.is_empty() {
                self.publish(&tailer, &counts);
                // Until the next poll, or until a watched directory changes.
                wake.wait(Duration::from_millis(self.settings.poll_interval_ms));
                continue;
            }
            let Some(durable) = self.spool_lines(&lines, now_ms, &mut counts) else {
                return Ok(()); // the writer is gone: nothing more becomes durable
            };
            let full = durable.iter().any(|d| !d);
            tailer.commit(lines.iter().zip(durable));
            save(&mut store, &tailer)?;
            self.publish(&tailer, &counts);
            if full {
                // Spool full: wait before reading the refused lines again.
                std::thread::sleep(Duration::from_millis(self.settings.poll_interval_ms));
            }
        }
        Ok(())
    }

    /// Sends the lines' events to the writer and waits for the fsync. Returns, per
    /// line, whether its position may advance; `None` if the writer is gone.
    fn spool_lines(
        &self,
        lines: &[TailLine],
        now_ms: i64,
        counts: &mut [SourceCounts],
    ) -> Option<Vec<bool>> {
        let registry = self.registry.read().expect("registry lock").clone();
        let mut events = Vec::new();
        // Per line: index into `events`, or None if refused for good.
        let mut slots = Vec::with_capacity(lines.len());
        for line in lines {
            let source = &self.sources[line.source];
            let c = &mut counts[line.source];
            c.bytes += line.bytes.len() as u64 + u64::from(line.kind != LineKind::Partial);
            let checked = match line.kind {
                LineKind::Skipped => {
                    slots.push(None);
                    continue;
                }
                LineKind::TooLong => Err(LineRefusal::new(
                    evd_schemas::error::Reason::TooLarge,
                    format!("line is over {} bytes", source.max_line_bytes),
                )),
                LineKind::Line | LineKind::Partial => {
                    c.lines += 1;
                    tail_event(line, &source.event_type, source.format, now_ms, &registry)
                }
            };
            match checked {
                Ok(incoming) => {
                    slots.push(Some(events.len()));
                    events.push(incoming);
                }
                Err(error) => {
                    count_refusal(&self.metrics, &error);
                    let reason = LINE_REASONS
                        .iter()
                        .position(|r| *r == error.reason)
                        .unwrap_or(0);
                    c.refused[reason] += 1;
                    tracing::warn!(
                        "tail source {}: {} line ending at byte {} refused: {error}",
                        source.display_name(),
                        line.path.display(),
                        line.end.offset
                    );
                    slots.push(None);
                }
            }
        }
        let results = if events.is_empty() {
            Vec::new()
        } else {
            self.write(events)?
        };
        Some(
            slots
                .into_iter()
                .map(|slot| match slot {
                    None => true,
                    Some(i) => results.get(i).is_some_and(|r| r.is_ok()),
                })
                .collect(),
        )
    }

    fn write(&self, events: Vec<Incoming>) -> Option<Vec<Result<u64, Refusal>>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.to_writer
            .send(WriterMsg::Events { events, reply })
            .ok()?;
        rx.blocking_recv().ok()
    }

    fn publish(&self, tailer: &Tailer<RealFs>, counts: &[SourceCounts]) {
        let stats = tailer.stats();
        let figures = TailFigures {
            files_watched: tailer.files().count() as u64,
            rotations: stats.rotations,
            truncations: stats.truncations,
            open_errors: stats.open_errors,
            sources: self
                .sources
                .iter()
                .zip(counts)
                .map(|(s, c)| SourceFigures {
                    source: s.display_name(),
                    event_type: s.event_type.clone(),
                    bytes: c.bytes,
                    lines: c.lines,
                    refused: LINE_REASONS
                        .iter()
                        .map(|r| r.as_str())
                        .zip(c.refused)
                        .collect(),
                })
                .collect(),
            files: tailer
                .files()
                .map(|f| {
                    (
                        f.path.display().to_string(),
                        f.len.saturating_sub(f.durable),
                    )
                })
                .collect(),
        };
        *self.metrics.tail.lock().unwrap_or_else(|p| p.into_inner()) = Some(figures);
    }
}
