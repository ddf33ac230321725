//! The agent's configuration file (TOML). Field docs here are the user documentation;
//! `evd validate agent.toml` checks a file without starting anything.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

mod validate;

/// `evd agent --config agent.toml`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This agent's id: part of every batch's identity and key derivation. Defaults to
    /// the host name. It must never change for a spool (the agent refuses to start).
    /// ASCII letters, digits, `.`, `_` and `-` (ids become keys, names and labels).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Directory of event-type TOML files (see `examples/registry`).
    pub registry_dir: PathBuf,
    /// This agent's keyring (`evd keys derive`); never a master keyring.
    pub keyring_path: PathBuf,
    pub socket: SocketConfig,
    pub spool: SpoolConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    pub kafka: KafkaConfig,
    /// Seconds an unacked batch waits before it is sent again (same bytes).
    #[serde(default = "defaults::retransmit_after_ms")]
    pub retransmit_after_ms: u64,
    /// How often a heartbeat goes to the audit topic.
    #[serde(default = "defaults::heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// `host:port` for Prometheus metrics (`/metrics`); unset = no metrics server.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Log files to tail (`[[sources]]`, `kind = "file"`); see `producer/src/tail`.
    #[serde(default)]
    pub sources: Vec<FileSourceConfig>,
    /// How the tailer runs (only used when `sources` is not empty).
    #[serde(default)]
    pub tailer: TailerConfig,
}

/// Only `file` sources exist; the socket is configured in `[socket]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    File,
}

/// A set of log files tailed into one event type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    pub kind: SourceKind,
    /// The source's name in metrics (`source="…"`) and logs; unique among sources.
    /// Default: its first `include` pattern.
    #[serde(default)]
    pub name: Option<String>,
    /// Glob patterns: `*` and `?` within a path component, classes (`[0-9]`),
    /// alternatives (`{api,web}`) and `**` for any depth of directories
    /// (`/var/log/app/*.log`, `/srv/*/log/app.log`, `/var/log/**/*.log`); relative
    /// ones resolve against the config's directory.
    /// With rename rotation, let the pattern match the rotated names too
    /// (`app.log*`, excluding compressed ones): a file is followed by inode, so a
    /// rename is not a new file, and a file created and rotated away while the agent
    /// was down is still found. With copytruncate, match only the live file: a copy
    /// is a new file and would be read twice.
    pub include: Vec<PathBuf>,
    /// Patterns (same syntax) of files never to read, e.g. `["/var/log/app/*.gz"]`.
    #[serde(default)]
    pub exclude: Vec<PathBuf>,
    /// The registry type of this source's events.
    pub event_type: String,
    /// `text`: each line is wrapped as `{"line", "file"}` fields of `event_type`;
    /// `json`: each line is an event object (missing `type` = `event_type`, missing
    /// `ts` = read time).
    pub format: crate::tail::LineFormat,
    /// Longest line taken; a longer one is refused (counted) and skipped.
    #[serde(default = "defaults::max_line_bytes")]
    pub max_line_bytes: usize,
    /// If set, a last line without newline is taken (marked `"partial": true` in
    /// `text` format) once the file has not grown for this long. Unset: it waits for
    /// its newline (or for its file to be rotated away and idle `rotate_wait_ms`).
    #[serde(default)]
    pub partial_flush_ms: Option<u64>,
    /// Where a file no checkpoint knows is read from: `"beginning"` (default), or
    /// `"end"`: past its last complete line, for the files found when the agent
    /// starts without any tail checkpoint (a first deploy does not ingest old logs).
    /// Files that appear later, or while a checkpoint exists, are read from their
    /// beginning: their lines are new.
    #[serde(default)]
    pub read_from: crate::tail::ReadFrom,
    /// A file no checkpoint knows is not read while it was last modified longer ago
    /// than this; once written to again it is read (from where it stood when first
    /// seen, under `read_from`). Unset: every file is read.
    #[serde(default)]
    pub ignore_older_secs: Option<u64>,
    /// Join consecutive lines into one event (`text` sources), e.g. a Java stack trace
    /// with the log line before it: `[sources.multiline]` with `start_pattern` or
    /// `continuation_pattern`.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
}

/// How lines are joined; exactly one of the two patterns (Rust `regex` syntax,
/// matched anywhere in the line unless anchored with `^`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A line matching this starts a new event, e.g. `'^\d{4}-\d{2}-\d{2}'`; the lines
    /// after it up to the next match belong to it.
    #[serde(default)]
    pub start_pattern: Option<String>,
    /// A line matching this continues the event before it, e.g. `'^(\s|Caused by:)'`.
    #[serde(default)]
    pub continuation_pattern: Option<String>,
    /// Most lines in one event; the next line starts a new one.
    #[serde(default = "defaults::multiline_max_lines")]
    pub max_lines: usize,
    /// Most bytes in one event (lines and the `\n`s joining them).
    #[serde(default = "defaults::multiline_max_bytes")]
    pub max_bytes: usize,
    /// The last event of a file is taken once the file has not grown for this long
    /// (until then more of its lines may come).
    #[serde(default = "defaults::multiline_flush_timeout_ms")]
    pub flush_timeout_ms: u64,
}

impl MultilineConfig {
    /// The core's spec, or why the patterns do not compile.
    pub fn spec(&self) -> Result<crate::tail::multiline::MultilineSpec, String> {
        use crate::tail::multiline::{Boundary, MultilineSpec};
        let compile = |p: &str| regex::bytes::Regex::new(p).map_err(|e| e.to_string());
        let boundary = match (&self.start_pattern, &self.continuation_pattern) {
            (Some(p), None) => Boundary::Start(compile(p)?),
            (None, Some(p)) => Boundary::Continuation(compile(p)?),
            _ => return Err("set exactly one of start_pattern and continuation_pattern".into()),
        };
        Ok(MultilineSpec {
            boundary,
            max_lines: self.max_lines,
            max_bytes: self.max_bytes,
            flush_timeout_ms: self.flush_timeout_ms.min(i64::MAX as u64) as i64,
        })
    }
}

impl FileSourceConfig {
    /// The name in metrics and logs: `name`, else the first pattern.
    pub fn display_name(&self) -> String {
        match (&self.name, self.include.first()) {
            (Some(name), _) => name.clone(),
            (None, Some(pattern)) => pattern.display().to_string(),
            (None, None) => String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailerConfig {
    /// Where read positions are kept (default `<spool.dir>/tail-checkpoints.json`).
    #[serde(default)]
    pub checkpoint_path: Option<PathBuf>,
    /// How often files are checked for new lines, new files and rotation.
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// A rotated-away or deleted file is closed once read to its end and idle this
    /// long (a writer may still be finishing its last lines into it).
    #[serde(default = "defaults::rotate_wait_ms")]
    pub rotate_wait_ms: u64,
    /// Bytes read from one file per poll (fairness across many files).
    #[serde(default = "defaults::read_chunk_bytes")]
    pub read_chunk_bytes: usize,
    /// Bytes read from all files together per poll (the agent's memory for tailing:
    /// about twice this); the next poll goes on with the files after the last one
    /// read.
    #[serde(default = "defaults::max_poll_bytes")]
    pub max_poll_bytes: usize,
}

impl Default for TailerConfig {
    fn default() -> Self {
        TailerConfig {
            checkpoint_path: None,
            poll_interval_ms: defaults::poll_interval_ms(),
            rotate_wait_ms: defaults::rotate_wait_ms(),
            read_chunk_bytes: defaults::read_chunk_bytes(),
            max_poll_bytes: defaults::max_poll_bytes(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketConfig {
    /// Path of the Unix stream socket. Directories on the way that do not exist are
    /// created with mode 0750 (owner and group); existing ones are left as they are.
    /// A stale socket file is replaced; any other file at the path is refused.
    pub path: PathBuf,
    /// Mode of the socket file, set explicitly (the umask does not apply). Connecting
    /// needs write permission: the default 0o660 lets the agent's user and group send;
    /// restrict further with `allowed_uids` / `allowed_gids`.
    #[serde(default = "defaults::socket_mode")]
    pub mode: u32,
    /// Longest accepted event line in bytes (newline excluded). Longer lines get an
    /// error and are skipped up to their newline.
    #[serde(default = "defaults::max_line_bytes")]
    pub max_line_bytes: usize,
    /// If set, only peers with one of these uids may send (checked with SO_PEERCRED).
    #[serde(default)]
    pub allowed_uids: Option<Vec<u32>>,
    /// If set, only peers with one of these gids may send.
    #[serde(default)]
    pub allowed_gids: Option<Vec<u32>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of spool segments (created with mode 0700).
    pub dir: PathBuf,
    /// Disk quota. New events are refused with "spool full" at 90% of it; the rest is
    /// kept so batches can still be sealed.
    #[serde(default = "defaults::spool_max_bytes")]
    pub max_bytes: u64,
    /// Size at which a new segment file starts.
    #[serde(default = "defaults::segment_bytes")]
    pub segment_bytes: u64,
    /// Extra time the writer waits for more events before one fsync covers them all.
    /// 0 (default): fsync as soon as the previous one returns; concurrent clients
    /// already share fsyncs.
    #[serde(default)]
    pub group_commit_delay_ms: u64,
    /// A line whose `event_id` was made durable this recently is answered with the
    /// first copy's seq instead of being stored again, also across agent crashes
    /// (docs/wire-format.md §4). Costs memory per id and keeps acked segments on disk
    /// this long. 0 turns client ids off.
    #[serde(default = "defaults::dedup_window_ms")]
    pub dedup_window_ms: u64,
}

/// When a batch is sealed: whichever limit is reached first. Defaults follow the
/// design brief's publisher (1,000 events or 100 ms): large enough for zstd to work
/// well and to keep Kafka request rates low, small enough that an event waits at
/// most 100 ms and a sealed batch fits Kafka's message limit (`evd validate` checks
/// the worst case, incompressible events, against `message.max.bytes`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "defaults::max_events")]
    pub max_events: usize,
    /// Uncompressed payload bytes.
    #[serde(default = "defaults::max_bytes")]
    pub max_bytes: usize,
    #[serde(default = "defaults::max_age_ms")]
    pub max_age_ms: u64,
    /// zstd level (1 = fastest).
    #[serde(default = "defaults::zstd_level")]
    pub zstd_level: i32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: defaults::max_events(),
            max_bytes: defaults::max_bytes(),
            max_age_ms: defaults::max_age_ms(),
            zstd_level: defaults::zstd_level(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port,host:port`
    pub bootstrap_servers: String,
    /// Topic the consumers publish end-to-end acks to.
    #[serde(default = "defaults::acks_topic")]
    pub acks_topic: String,
    /// Topic for heartbeats and batch announcements.
    #[serde(default = "defaults::audit_topic")]
    pub audit_topic: String,
    /// librdkafka settings for both of the agent's clients (producer and acks
    /// consumer): security (`security.protocol`, `sasl.*`, `ssl.*`), timeouts, … Keys
    /// with dots are quoted: `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// librdkafka settings for the producer only, over `options`. `enable.idempotence`
    /// and `acks` are fixed (true, all): another value is refused.
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
    /// librdkafka settings for the acks consumer only, over `options` (`group.id` is
    /// fixed: `evd-agent-<agent_id>`).
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
}

mod defaults {
    pub fn multiline_max_lines() -> usize {
        500
    }
    pub fn multiline_max_bytes() -> usize {
        256 << 10
    }
    pub fn multiline_flush_timeout_ms() -> u64 {
        1_000
    }
    pub fn retransmit_after_ms() -> u64 {
        120_000
    }
    pub fn heartbeat_interval_ms() -> u64 {
        10_000
    }
    pub fn max_line_bytes() -> usize {
        evd_schemas::event::DEFAULT_MAX_LINE_BYTES
    }
    pub fn spool_max_bytes() -> u64 {
        10 << 30
    }
    pub fn segment_bytes() -> u64 {
        64 << 20
    }
    pub fn max_events() -> usize {
        1_000
    }
    pub fn max_bytes() -> usize {
        900 << 10
    }
    pub fn socket_mode() -> u32 {
        0o660
    }
    pub fn max_age_ms() -> u64 {
        100
    }
    pub fn zstd_level() -> i32 {
        1
    }
    pub fn acks_topic() -> String {
        "evd.acks".into()
    }
    pub fn dedup_window_ms() -> u64 {
        30_000
    }
    pub fn audit_topic() -> String {
        "evd.audit".into()
    }
    pub fn poll_interval_ms() -> u64 {
        250
    }
    pub fn rotate_wait_ms() -> u64 {
        5_000
    }
    pub fn read_chunk_bytes() -> usize {
        4 << 20
    }
    pub fn max_poll_bytes() -> usize {
        16 << 20
    }
}

impl AgentConfig {
    /// Parses and validates a config file's text; errors name the file, line and key.
    pub fn from_toml(origin: &str, text: &str) -> Result<AgentConfig, evd_schemas::SourceError> {
        evd_schemas::TomlSource::load_config(origin, text)
    }

    /// Where the tailer keeps its checkpoint.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.tailer
            .checkpoint_path
            .clone()
            .unwrap_or_else(|| self.spool.dir.join("tail-checkpoints.json"))
    }

    /// The configured agent id, or the host name.
    pub fn agent_id(&self) -> String {
        self.agent_id.clone().unwrap_or_else(host_name)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
registry_dir = "registry"
keyring_path = "agent-keys.toml"

[socket]
path = "/run/evd/agent.sock"

[spool]
dir = "/var/lib/evd/spool"

[kafka]
bootstrap_servers = "127.0.0.1:9092"
"#;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = AgentConfig::from_toml("agent.toml", MINIMAL).unwrap();
        assert_eq!(c.batch.max_events, 1_000);
        assert_eq!(c.batch.max_age_ms, 100);
        assert_eq!(c.kafka.acks_topic, "evd.acks");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = MINIMAL.replace("[spool]", "[spool]\nflush_ms = 3");
        let msg = AgentConfig::from_toml("agent.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("agent.toml:9: key `spool.flush_ms`"),
            "{msg}"
        );
        let text = format!("{MINIMAL}[kafka.producer]\nacks = \"1\"\n");
        let msg = AgentConfig::from_toml("agent.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("key `kafka.producer`: `acks` is fixed"),
            "{msg}"
        );
    }

    /// A batch that cannot fit a Kafka message is acked to clients and then retried
    /// forever (before: a 1 MiB line or a 1 MiB incompressible batch under librdkafka's
    /// 1,000,000-byte default, with the old 1 MiB defaults).
    #[test]
    fn batches_must_fit_kafka_messages() {
        let msg = |text: &str| {
            AgentConfig::from_toml("agent.toml", text)
                .err()
                .map(|e| e.to_string())
        };
        let big_batches = MINIMAL.replace("[spool]", "[batch]\nmax_bytes = 1048576\n\n[spool]");
        let err = msg(&big_batches).expect("1 MiB batches do not fit 1,000,000-byte messages");
        assert!(
            err.contains("key `batch.max_bytes`") && err.contains("message.max.bytes"),
            "{err}"
        );
        let big_lines = MINIMAL.replace("[socket]", "[socket]\nmax_line_bytes = 1048576");
        let err = msg(&big_lines).expect("a 1 MiB line does not fit");
        assert!(err.contains("key `socket.max_line_bytes`"), "{err}");
        let raised =
            format!("{big_batches}[kafka.producer]\n\"message.max.bytes\" = \"2000000\"\n");
        assert_eq!(msg(&raised), None);
    }
}
