//! The consumer as a real process (`evd consumer`), and reading its output back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::agent_proc::{example_registry_dir, test_master_keyring};
use crate::process::EvdProcess;

/// The session of every test group member (consumers and the bridge): short enough
/// that a dead member's partitions move within seconds, and longer than the longest
/// broker outage a scenario injects. tansu 0.6.0 wedges a group for good when a
/// member times its session out on its own side during an outage: librdkafka then
/// re-joins under a new member id, and the broker keeps the old one as the group's
/// leader, so no rebalance completes (`tests/tests/broker_outage_rejoin.rs`).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const _: () = assert!(
    SESSION_TIMEOUT.as_millis() > crate::scenario::LONGEST_BROKER_OUTAGE.as_millis(),
    "a test member's session must outlast every injected broker outage"
);
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// The librdkafka group settings of every test member, from [`SESSION_TIMEOUT`].
pub fn group_settings() -> [(&'static str, String); 2] {
    [
        (
            "session.timeout.ms",
            SESSION_TIMEOUT.as_millis().to_string(),
        ),
        (
            "heartbeat.interval.ms",
            HEARTBEAT_INTERVAL.as_millis().to_string(),
        ),
    ]
}

/// [`group_settings`] as a TOML inline table (a `kafka.consumer` table).
pub fn group_settings_table() -> String {
    let pairs: Vec<String> = group_settings()
        .iter()
        .map(|(k, v)| format!("{k:?} = {v:?}"))
        .collect();
    format!("{{ {} }}", pairs.join(", "))
}

pub struct ConsumerProcess {
    pub process: EvdProcess,
    pub out_dir: PathBuf,
}

/// Knobs tests change; everything else uses the consumer's defaults.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub id: String,
    pub flush_interval_ms: u64,
    /// Environment of the consumer process (test-only fault switches, S3 settings).
    pub env: Vec<(String, String)>,
    /// `output_url`; `file://<out_dir>` when unset.
    pub output_url: Option<String>,
    /// The rest of the config's `[kafka]` table (`consumer = {…}`, `options = {…}`).
    pub kafka: String,
    /// More top-level config lines (`key = value`), before `[kafka]`.
    pub extra: String,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            id: "c1".into(),
            flush_interval_ms: 1_000,
            env: Vec::new(),
            output_url: None,
            kafka: format!("consumer = {}", group_settings_table()),
            extra: String::new(),
        }
    }
}

impl ConsumerOptions {
    /// Consumer `id`, flushing every `flush_interval_ms`.
    pub fn new(id: &str, flush_interval_ms: u64) -> ConsumerOptions {
        ConsumerOptions {
            id: id.into(),
            flush_interval_ms,
            ..ConsumerOptions::default()
        }
    }
}

impl ConsumerProcess {
    /// Writes a config and keyring under `dir` and starts a consumer writing to
    /// `out_dir` (a local `file://` store) unless `opts.output_url` says otherwise.
    pub fn start(
        dir: &Path,
        bootstrap: &str,
        out_dir: &Path,
        opts: ConsumerOptions,
    ) -> Result<ConsumerProcess> {
        std::fs::create_dir_all(dir)?;
        let keyring = dir.join("master-keys.toml");
        if !keyring.exists() {
            std::fs::write(&keyring, test_master_keyring().to_toml())?;
        }
        let metrics_addr = format!("127.0.0.1:{}", crate::free_port());
        let config = dir.join("consumer.toml");
        let url = opts
            .output_url
            .unwrap_or_else(|| format!("file://{}", out_dir.display()));
        std::fs::write(
            &config,
            format!(
                r#"consumer_id = "{id}"
registry_dir = "{registry}"
keyring_path = "master-keys.toml"
output_url = "{url}"
flush_interval_ms = {flush_interval_ms}
metrics_listen = "{metrics_addr}"
{extra}

[kafka]
bootstrap_servers = "{bootstrap}"
{kafka}
"#,
                id = opts.id,
                flush_interval_ms = opts.flush_interval_ms,
                kafka = opts.kafka,
                extra = opts.extra,
                registry = example_registry_dir().display(),
            ),
        )?;
        let mut process = EvdProcess::new("consumer", dir, config, metrics_addr);
        process.env = opts.env;
        let mut consumer = ConsumerProcess {
            process,
            out_dir: out_dir.to_path_buf(),
        };
        consumer.spawn()?;
        Ok(consumer)
    }

    /// The usual test consumer: `c1`, state under `dir/consumer`, output in `dir/out`,
    /// flushing every second.
    pub fn start_in(dir: &Path, bootstrap: &str) -> Result<ConsumerProcess> {
        let opts = ConsumerOptions::default();
        Self::start(&dir.join("consumer"), bootstrap, &dir.join("out"), opts)
    }

    pub fn spawn(&mut self) -> Result<()> {
        self.process.spawn(|p| p.metric("flushes").is_some())
    }

    pub fn restart(&mut self) -> Result<()> {
        self.process.kill9()?;
        self.spawn()
    }
}

/// Reads every `*.parquet` under the final Hive paths of `out_dir` with DuckDB:
/// `user_id` counts (ids are `u<n>`) and rows per (type, hour).
pub struct ParquetReadBack {
    pub ids: BTreeMap<u64, u32>,
    /// DuckDB's column types per event type: `type → column → SQL type`.
    pub column_types: BTreeMap<String, BTreeMap<String, String>>,
    pub rows_per_type_hour: BTreeMap<(String, String), u64>,
    pub files: Vec<String>,
}

pub fn read_back(out_dir: &Path) -> Result<ParquetReadBack> {
    let script = r#"
import duckdb, glob, json, os, sys
out = sys.argv[1]
files = sorted(f for f in glob.glob(os.path.join(out, "*", "date=*", "hour=*", "*.parquet")))
ids, per = {}, {}
types = {}
for ty in sorted({f[len(out):].strip("/").split("/")[0] for f in files}):
    pattern = os.path.join(out, ty, "**", "*.parquet")
    col = "signature" if ty == "ClientCrash" else "user_id"
    rel = f"read_parquet('{pattern}', hive_partitioning=true)"
    types[ty] = {name: kind for name, kind, *_ in duckdb.sql(f"DESCRIBE SELECT * FROM {rel}").fetchall()}
    rows = duckdb.sql(f"SELECT {col}, date, hour FROM {rel}").fetchall()
    for uid, date, hour in rows:
        ids[uid] = ids.get(uid, 0) + 1
        key = f"{ty}|{date}T{int(hour):02d}"
        per[key] = per.get(key, 0) + 1
print(json.dumps({"ids": ids, "per": per, "types": types, "files": [f[len(out):].strip("/") for f in files]}))
"#;
    let v: serde_json::Value = serde_json::from_slice(&duckdb_script(script, out_dir)?)?;
    let mut ids = BTreeMap::new();
    for (uid, n) in v["ids"].as_object().context("ids")? {
        let id: u64 = uid
            .trim_start_matches('u')
            .parse()
            .context("user_id u<n>")?;
        ids.insert(id, n.as_u64().unwrap_or(0) as u32);
    }
    let mut rows_per_type_hour = BTreeMap::new();
    for (k, n) in v["per"].as_object().context("per")? {
        let (ty, hour) = k.split_once('|').context("key")?;
        rows_per_type_hour.insert((ty.to_string(), hour.to_string()), n.as_u64().unwrap_or(0));
    }
    let column_types = serde_json::from_value(v["types"].clone()).context("types")?;
    let files = v["files"]
        .as_array()
        .context("files")?
        .iter()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    Ok(ParquetReadBack {
        ids,
        column_types,
        rows_per_type_hour,
        files,
    })
}

/// Every final Parquet file must be listed by a committed manifest (live, or archived
/// by a compaction).
pub fn files_not_in_manifests(out_dir: &Path, files: &[String]) -> Result<Vec<String>> {
    let mut listed = std::collections::HashSet::new();
    for dir in ["_evd/manifests", "_evd/archive/manifests"].map(|d| out_dir.join(d)) {
        if !dir.exists() {
            continue;
        }
        for entry in std::fs::read_dir(dir)? {
            let bytes = std::fs::read(entry?.path())?;
            let m: serde_json::Value = serde_json::from_slice(&bytes)?;
            for f in m["files"].as_array().into_iter().flatten() {
                if let Some(p) = f["final_path"].as_str() {
                    listed.insert(p.to_string());
                }
            }
        }
    }
    Ok(files
        .iter()
        .filter(|f| !listed.contains(*f))
        .cloned()
        .collect())
}

/// The oracle's verdict on the Parquet output: every acked id exactly once, no id that
/// was never sent (ids `>= sent_below`), and every final file in a manifest. Prints the
/// figures and returns the read-back for further checks. (`checker::check` is the
/// same verdict as a value, with where lost ids were last.)
pub fn assert_exactly_once(
    out_dir: &Path,
    acked: &[u64],
    sent_below: Option<u64>,
) -> ParquetReadBack {
    let verdict = crate::checker::check(out_dir, acked, sent_below, &Default::default());
    println!(
        "oracle: {}; {} files",
        verdict.summary(),
        verdict.back.files.len()
    );
    assert!(verdict.ok(), "the oracle failed: {}", verdict.summary());
    verdict.back
}

/// Whether `agent`'s spool holds no unacked batch (everything committed and acked end
/// to end), once this agent process has finished a writer turn (its gauges are set at
/// the end of each; a turn runs at least every second).
pub fn is_drained(agent: &crate::agent_proc::AgentProcess) -> bool {
    agent.metric("spool_unacked_batches") == Some(0)
        && agent.metric("fsyncs").is_some_and(|n| n > 0)
}

/// What a spool that does not drain is waiting for, with both logs.
pub fn drain_status(agent: &crate::agent_proc::AgentProcess, consumer: &EvdProcess) -> String {
    format!(
        "agent sealed {:?} sent {:?} acked {:?} unacked {:?}; \
         consumer partitions {:?} consumed {:?} flushes {:?} written {:?} acks sent {:?}\n\
         agent:\n{}\nconsumer:\n{}",
        agent.metric("batches_sealed"),
        agent.metric("batches_sent"),
        agent.metric("batches_acked"),
        agent.metric("spool_unacked_batches"),
        consumer.metric("assigned_partitions"),
        consumer.metric("batches_consumed"),
        consumer.metric("flushes"),
        consumer.metric("events_written"),
        consumer.metric("acks_sent"),
        agent.log_tail(),
        consumer.log_tail()
    )
}

/// Waits until every agent's spool has drained ([`is_drained`]); panics with the logs
/// after `limit`. Returns the seconds waited.
pub async fn wait_drained(
    agents: &[&crate::agent_proc::AgentProcess],
    consumer: &EvdProcess,
    limit: std::time::Duration,
) -> f64 {
    let started = std::time::Instant::now();
    for agent in agents {
        while !is_drained(agent) {
            assert!(
                started.elapsed() < limit,
                "spool did not drain: {}",
                drain_status(agent, consumer)
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    started.elapsed().as_secs_f64()
}

/// Waits until every event this agent process accepted is in a sealed batch that was
/// acked end to end: batches seal within `batch.max_age_ms` (100 ms) and gauges follow
/// within a writer turn, so [`wait_drained`] alone can pass before the first seal.
/// Returns the batches this agent process sealed.
pub async fn wait_settled(
    agent: &crate::agent_proc::AgentProcess,
    consumer: &EvdProcess,
    limit: std::time::Duration,
) -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let started = std::time::Instant::now();
    wait_drained(&[agent], consumer, limit).await;
    let sealed = agent.metric("batches_sealed").unwrap_or(0);
    assert!(
        sealed > 0,
        "nothing sealed: {}",
        drain_status(agent, consumer)
    );
    while agent.metric("batches_acked").unwrap_or(0) < sealed {
        assert!(
            started.elapsed() < limit,
            "sealed batches not acked: {}",
            drain_status(agent, consumer)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    sealed
}

/// Rows and distinct ids in the final Parquet files of `out_dir` (DuckDB).
pub fn count_rows(out_dir: &Path) -> Result<(u64, u64)> {
    let script = r#"
import duckdb, glob, os, sys
out = sys.argv[1]
parts = []
for ty in sorted(os.listdir(out)):
    if ty.startswith("_") or not glob.glob(os.path.join(out, ty, "date=*", "hour=*", "*.parquet")):
        continue
    col = "signature" if ty == "ClientCrash" else "user_id"
    parts.append(f"SELECT {col} AS id FROM read_parquet('{os.path.join(out, ty, 'date=*', 'hour=*', '*.parquet')}')")
if not parts:
    print("0 0")
else:
    rows, distinct = duckdb.sql(f"SELECT count(*), count(DISTINCT id) FROM ({' UNION ALL '.join(parts)})").fetchall()[0]
    print(rows, distinct)
"#;
    let stdout = duckdb_script(script, out_dir)?;
    let text = String::from_utf8_lossy(&stdout);
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    match (it.next(), it.next()) {
        (Some(Ok(rows)), Some(Ok(distinct))) => Ok((rows, distinct)),
        _ => bail!("duckdb count: unexpected output {text:?}"),
    }
}

/// Defines `ty`'s table in DuckDB with `evd schema ddl --dialect duckdb` over the
/// consumer's output and returns the view's row count and its column types.
pub fn ddl_read_back(out_dir: &Path, ty: &str) -> Result<(u64, BTreeMap<String, String>)> {
    let ddl = Command::new(crate::process::evd_binary())
        .args(["schema", "ddl", "--dialect", "duckdb", "--registry"])
        .arg(example_registry_dir())
        .arg("--location")
        .arg(out_dir)
        .arg(ty)
        .output()
        .context("running evd schema ddl")?;
    if !ddl.status.success() {
        bail!("evd schema ddl: {}", String::from_utf8_lossy(&ddl.stderr));
    }
    let script = format!(
        r#"
import duckdb, json, sys
con = duckdb.connect()
con.execute(sys.stdin.read())
rows = con.execute('SELECT count(*) FROM "{ty}"').fetchone()[0]
types = {{name: kind for name, kind, *_ in con.execute('DESCRIBE "{ty}"').fetchall()}}
print(json.dumps({{"rows": rows, "types": types}}))
"#
    );
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running python3 with duckdb")?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(&ddl.stdout)?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "duckdb on the DDL failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&ddl.stdout)
        );
    }
    let back: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let rows = back["rows"].as_u64().context("rows")?;
    let types = back["types"]
        .as_object()
        .context("types")?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    Ok((rows, types))
}

/// Runs a Python script (DuckDB) with `out_dir` as its argument; returns its stdout.
fn duckdb_script(script: &str, out_dir: &Path) -> Result<Vec<u8>> {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(out_dir)
        .output()
        .context("running python3 with duckdb")?;
    if !output.status.success() {
        bail!(
            "duckdb script failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.stdout)
}
