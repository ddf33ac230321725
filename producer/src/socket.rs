//! The local socket: newline-delimited JSON events in, one response line per event out,
//! in order. `{"ok":SEQ}` is written only after the event is durable in the spool;
//! `{"error":"…","line":N}` refuses that line alone (N counts lines on the connection
//! from 1). A connection is pipelined: its reader keeps reading while earlier chunks
//! wait for their fsync, and a client that stops reading stalls only itself.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLock};

use evd_schemas::Registry;
use evd_schemas::error::Reason;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::refusal::LineRefusal;
use crate::writer::{Incoming, Refusal, WriterMsg};

/// Lines handed to the writer at once from one connection.
const CHUNK_LINES: usize = 1024;
/// Chunks of one connection waiting for their fsync at once.
const CHUNKS_IN_FLIGHT: usize = 4;

pub struct SocketContext {
    pub registry: Arc<RwLock<Arc<Registry>>>,
    pub to_writer: Sender<WriterMsg>,
    pub max_line_bytes: usize,
    pub allowed_uids: Option<Vec<u32>>,
    pub allowed_gids: Option<Vec<u32>>,
    pub metrics: Arc<Metrics>,
}

/// Binds the socket with file mode `mode`. Creates the missing directories on the way
/// (0750) and changes no existing one; replaces a stale socket (one nobody answers
/// on), refuses to steal a live one, and never deletes anything that is not a socket.
pub async fn bind(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("{} is served by a running agent", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; refusing to replace it",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, ctx: Arc<SocketContext>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let _ = handle(stream, ctx).await;
                });
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

fn peer_allowed(stream: &UnixStream, ctx: &SocketContext) -> Result<(), String> {
    if ctx.allowed_uids.is_none() && ctx.allowed_gids.is_none() {
        return Ok(());
    }
    let cred = stream
        .peer_cred()
        .map_err(|e| format!("cannot read peer credentials: {e}"))?;
    if let Some(uids) = &ctx.allowed_uids
        && !uids.contains(&cred.uid())
    {
        return Err(format!("peer uid {} is not allowed", cred.uid()));
    }
    if let Some(gids) = &ctx.allowed_gids
        && !gids.contains(&cred.gid())
    {
        return Err(format!("peer gid {} is not allowed", cred.gid()));
    }
    Ok(())
}

/// What a chunk's lines turned into, in order: a refusal now, or a slot in the
/// writer's reply.
enum Slot {
    Refused { line: u64, error: LineRefusal },
    Spooled { line: u64 },
}

struct Chunk {
    /// When the chunk's first line was read (for the client-ack latency).
    read_at: std::time::Instant,
    slots: Vec<Slot>,
    reply: Option<oneshot::Receiver<Vec<Result<u64, Refusal>>>>,
}

async fn handle(stream: UnixStream, ctx: Arc<SocketContext>) -> std::io::Result<()> {
    if let Err(why) = peer_allowed(&stream, &ctx) {
        Metrics::add(&ctx.metrics.refused_peer, 1);
        let (_, mut wr) = stream.into_split();
        let answer = error_json("not_allowed", false, &format!("not_allowed: {why}"), 0);
        wr.write_all(format!("{answer}\n").as_bytes()).await?;
        return Ok(());
    }
    let (rd, wr) = stream.into_split();
    let (chunks_tx, chunks_rx) = mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let responder = tokio::spawn(respond(
        wr,
        chunks_rx,
        ctx.metrics.client_ack_seconds.clone(),
    ));
    let mut reader = BufReader::with_capacity(256 << 10, rd);
    let mut line_no = 0u64;
    let mut line = Vec::new();
    loop {
        let mut lines: Vec<(u64, Result<Vec<u8>, LineRefusal>)> = Vec::new();
        let mut read_at = std::time::Instant::now();
        // Block for the first line, then take what is already buffered.
        loop {
            line.clear();
            let status = read_line(&mut reader, &mut line, ctx.max_line_bytes).await?;
            if status == LineStatus::Eof {
                break;
            }
            if lines.is_empty() {
                read_at = std::time::Instant::now();
            }
            line_no += 1;
            lines.push(match status {
                LineStatus::TooLong(len) => (
                    line_no,
                    Err(LineRefusal::new(
                        Reason::TooLarge,
                        format!("line is over {} bytes (at least {len})", ctx.max_line_bytes),
                    )),
                ),
                _ => (line_no, Ok(std::mem::take(&mut line))),
            });
            if lines.len() >= CHUNK_LINES || reader.buffer().is_empty() {
                break;
            }
        }
        if lines.is_empty() {
            break;
        }
        let chunk = submit(&ctx, lines, read_at);
        if chunks_tx.send(chunk).await.is_err() {
            break;
        }
    }
    drop(chunks_tx);
    responder.await.map_err(std::io::Error::other)?
}

#[derive(Debug, PartialEq, Eq)]
enum LineStatus {
    Line,
    /// The line was longer than allowed; it was skipped up to its newline.
    TooLong(usize),
    Eof,
}

/// Reads one line without its newline, never buffering more than `max` bytes of it.
async fn read_line(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    out: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineStatus> {
    let mut seen = 0usize;
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            // EOF: a final line without newline still counts.
            return Ok(match (seen, too_long) {
                (0, _) => LineStatus::Eof,
                (n, true) => LineStatus::TooLong(n),
                _ => LineStatus::Line,
            });
        }
        let (part, found) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], Some(i)),
            None => (buf, None),
        };
        seen += part.len();
        if seen > max {
            too_long = true;
            out.clear();
        } else if !too_long {
            out.extend_from_slice(part);
        }
        let consumed = found.map_or(part.len(), |i| i + 1);
        reader.consume(consumed);
        if found.is_some() {
            return Ok(if too_long {
                LineStatus::TooLong(seen)
            } else {
                LineStatus::Line
            });
        }
    }
}

/// Validates a chunk's lines and hands the good ones to the writer.
fn submit(
    ctx: &SocketContext,
    lines: Vec<(u64, Result<Vec<u8>, LineRefusal>)>,
    read_at: std::time::Instant,
) -> Chunk {
    let registry = ctx.registry.read().expect("registry lock").clone();
    let mut slots = Vec::with_capacity(lines.len());
    let mut events = Vec::new();
    for (line_no, line) in lines {
        let checked = line
            .and_then(|bytes| check_line(&registry, bytes, ctx.max_line_bytes))
            .and_then(refuse_reserved_id);
        match checked {
            Ok(incoming) => {
                events.push(incoming);
                slots.push(Slot::Spooled { line: line_no });
            }
            Err(error) => {
                count_refusal(&ctx.metrics, &error);
                slots.push(Slot::Refused {
                    line: line_no,
                    error,
                });
            }
        }
    }
    let reply = if events.is_empty() {
        None
    } else if crate::test_faults::switches().ack_early {
        // Deliberately broken (tests only): "ok" before the writer has the events.
        let n = events.len();
        let (tx, _never_read) = oneshot::channel();
        let _ = ctx.to_writer.send(WriterMsg::Events { events, reply: tx });
        let (early, rx) = oneshot::channel();
        let _ = early.send(vec![Ok(0); n]);
        Some(rx)
    } else {
        let (tx, rx) = oneshot::channel();
        let _ = ctx.to_writer.send(WriterMsg::Events { events, reply: tx });
        Some(rx)
    };
    Chunk {
        read_at,
        slots,
        reply,
    }
}

/// Validates one event line against the registry.
pub(crate) fn check_line(
    registry: &Registry,
    bytes: Vec<u8>,
    max_line_bytes: usize,
) -> Result<Incoming, LineRefusal> {
    if let Err(e) = std::str::from_utf8(&bytes) {
        return Err(LineRefusal::new(
            Reason::Json,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        ));
    }
    let accepted = registry.check_line(&bytes, max_line_bytes)?;
    Ok(Incoming {
        event_type: accepted.ty.name.clone(),
        event_id: accepted.event_id,
        body: bytes,
    })
}

/// Ids starting with `tail:` are the file tailer's read positions (spool recovery hands
/// them back to the tailer as checkpoints); a socket client may not use them.
fn refuse_reserved_id(incoming: Incoming) -> Result<Incoming, LineRefusal> {
    match &incoming.event_id {
        Some(id) if evd_schemas::tail::is_tail_id(id) => Err(LineRefusal::new(
            Reason::Schema,
            format!(
                "event_id {id:?} is reserved: ids starting with \"tail:\" belong to the agent's file tailer"
            ),
        )),
        _ => Ok(incoming),
    }
}

/// Counts a refused line under its reason.
pub(crate) fn count_refusal(m: &Metrics, refusal: &LineRefusal) {
    let counter = match refusal.reason {
        Reason::TooLarge => &m.refused_too_large,
        Reason::UnknownType => &m.refused_unknown_type,
        Reason::Schema => &m.refused_schema,
        _ => &m.refused_json,
    };
    Metrics::add(counter, 1);
}

/// A refusal's answer: `error` is `"<code>: <detail>"` for people, `code` the same
/// code for programs, `retryable` whether sending the same line again later can
/// succeed (docs/wire-format.md §4.1).
fn error_json(code: &str, retryable: bool, error: &str, line: u64) -> String {
    serde_json::json!({ "error": error, "code": code, "retryable": retryable, "line": line })
        .to_string()
}

/// The answer for a line the spool refused for now (full spool or disk).
fn spool_full_json(refusal: &Refusal, line: u64) -> String {
    let text = match refusal {
        Refusal::SpoolFull => "spool_full: spool full, event not accepted; retry later".into(),
        Refusal::DiskFull { free } => format!(
            "spool_full: disk full ({free} bytes left, kept for batching), event not accepted; retry later"
        ),
    };
    error_json("spool_full", true, &text, line)
}

/// Writes one response per line, in order, as each chunk's fsync completes.
async fn respond(
    wr: tokio::net::unix::OwnedWriteHalf,
    mut chunks: mpsc::Receiver<Chunk>,
    client_ack: evd_schemas::metrics::Latency,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(64 << 10, wr);
    let mut text = String::new();
    // Read times of chunks whose answers wait in `out` for the next flush.
    let mut unflushed = Vec::new();
    while let Some(chunk) = chunks.recv().await {
        let spooled = chunk.reply.is_some();
        let results = match chunk.reply {
            Some(rx) => match rx.await {
                Ok(r) => r,
                // The writer is gone (fatal spool error or shutdown): no ack, ever.
                Err(_) => {
                    let answer = error_json(
                        "shutting_down",
                        true,
                        "shutting_down: agent is shutting down; this line and every later one on the connection were not accepted",
                        0,
                    );
                    out.write_all(format!("{answer}\n").as_bytes()).await?;
                    out.flush().await?;
                    return Ok(());
                }
            },
            None => Vec::new(),
        };
        let mut results = results.into_iter();
        text.clear();
        for slot in chunk.slots {
            use std::fmt::Write;
            match slot {
                Slot::Refused { line, error } => text.push_str(&error_json(
                    error.reason.as_str(),
                    false,
                    &error.to_string(),
                    line,
                )),
                Slot::Spooled { line } => match results.next() {
                    Some(Ok(seq)) => {
                        let _ = write!(text, "{{\"ok\":{seq}}}");
                    }
                    Some(Err(refusal)) => text.push_str(&spool_full_json(&refusal, line)),
                    None => text.push_str(&error_json(
                        "internal",
                        true,
                        "internal: no result for this line",
                        line,
                    )),
                },
            }
            text.push('\n');
        }
        out.write_all(text.as_bytes()).await?;
        if spooled {
            unflushed.push(chunk.read_at);
        }
        if chunks.is_empty() {
            out.flush().await?;
            for read_at in unflushed.drain(..) {
                client_ack.observe_since(read_at);
            }
        }
    }
    out.flush().await
}

#[cfg(test)]
mod bind_tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;

    use super::bind;

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// Before: an existing parent (think /run or /tmp) was chmodded to 0750, any
    /// non-socket file at the path was deleted, and the socket's mode followed the
    /// umask (0755 under umask 022), so group members got EACCES.
    #[tokio::test]
    async fn bind_changes_only_what_it_owns_and_sets_the_socket_mode() {
        let top = tempfile::tempdir().unwrap();
        let shared = top.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

        // A file that is not a socket is never deleted.
        let file = shared.join("agent.sock");
        std::fs::write(&file, b"keep me").unwrap();
        let err = bind(&file, 0o660).await.unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

        let path = shared.join("evd/agent.sock");
        let listener = bind(&path, 0o660).await.unwrap();
        assert_eq!(
            mode(&shared),
            0o1777,
            "an existing directory keeps its mode"
        );
        assert_eq!(mode(&shared.join("evd")), 0o750, "a directory it made");
        assert_eq!(mode(&path), 0o660);

        // A second uid in the socket's group may connect.
        let gid = std::fs::metadata(&path).unwrap().gid();
        if unsafe { libc::geteuid() } == 0 {
            let status = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
                ])
                .arg(&path)
                .uid(65534)
                .gid(gid)
                .status()
                .unwrap();
            assert!(
                status.success(),
                "uid 65534 in group {gid} could not connect"
            );
        } else {
            eprintln!("not root: the second-uid connect is checked in CI only");
        }
        drop(listener);
        // A stale socket (nobody answers) is replaced.
        bind(&path, 0o600).await.unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
