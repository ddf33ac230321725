//! `evd demo`: the whole pipeline in one process on a fresh machine — an in-process
//! Kafka (librdkafka's mock cluster), the agent, a consumer, the auditor with its
//! dashboard, and a load generator sending five event types through the agent's socket
//! (about 2% of lines invalid on purpose). Data goes under `--dir` (default
//! `./evd-demo`, recreated at each run).
//!
//! The demo's clock runs ahead of the wall clock so that an hour ends ~20 s into the
//! run: the auditor closes it during the demo and writes `_CLOSED.json` markers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use evd_consumer::metrics::Metrics as ConsumerMetrics;
use evd_consumer::run::{ConsumerParts, run as run_consumer};
use evd_consumer::storage::output_from_url;
use evd_ops::auditor::Shared;
use evd_ops::auditor_role::{self, AuditorParts};
use evd_ops::load;
use evd_producer::agent::{self, AgentParts};
use evd_producer::client::{Response, send_lines};
use evd_producer::clock::{Clock, SystemClock};
use evd_runtime::Stop as CancellationToken;
use evd_schemas::{Hour, Key, MasterKeyring, Registry};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokio::task::JoinHandle;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Seconds of load; the demo then drains and prints a summary.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Events per second sent to the agent.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Where the demo keeps its registry, keys, configs, spool and Parquet output.
    #[arg(long, default_value = "evd-demo")]
    dir: PathBuf,
    /// The dashboard's address.
    #[arg(long, default_value = "127.0.0.1:9300")]
    listen: String,
}

const REGISTRY: [(&str, &str); 6] = [
    (
        "page_view.toml",
        include_str!("../../examples/registry/page_view.toml"),
    ),
    (
        "search_view_response.toml",
        include_str!("../../examples/registry/search_view_response.toml"),
    ),
    (
        "end_song.toml",
        include_str!("../../examples/registry/end_song.toml"),
    ),
    (
        "ad_impression.toml",
        include_str!("../../examples/registry/ad_impression.toml"),
    ),
    (
        "client_crash.toml",
        include_str!("../../examples/registry/client_crash.toml"),
    ),
    (
        "log_line.toml",
        include_str!("../../examples/registry/log_line.toml"),
    ),
];

/// A marker file: the demo only ever deletes a directory it created.
const OWNED: &str = ".evd-demo";

/// The wall clock shifted by a fixed offset.
struct ShiftedClock(i64);

impl Clock for ShiftedClock {
    fn now_us(&self) -> i64 {
        SystemClock.now_us() + self.0 * 1000
    }
}

#[derive(Default)]
struct Load {
    sent: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let dir = prepare_dir(&args.dir)?;
    write_files(&dir, &args.listen)?;
    // Receive time starts 20 s before an hour ends.
    let now = SystemClock.now_ms();
    let offset = Hour::from_unix_ms(now).end_ms() - 20_000 - now;
    let clock: Arc<dyn Clock> = Arc::new(ShiftedClock(offset));

    let registry = load::registry_dir(&dir.join("registry"))?;
    let cluster = start_cluster(&dir, &registry)?;

    let agent_config = crate::cli_agent::load_agent_config(&dir.join("agent.toml"))?;
    let consumer_config = crate::cli_consumer::load_consumer_config(&dir.join("consumer.toml"))?;
    let ops_config = crate::cli_ops::load_ops_config(&dir.join("ops.toml"))?;
    let socket = agent_config.socket.path.clone();
    let output = output_from_url(&consumer_config.output_url).map_err(anyhow::Error::msg)?;
    let shared = Shared::new(
        &registry,
        ops_config.policy(),
        clock.clone(),
        ops_config.window_hours,
    );
    let agent_metrics = Arc::new(evd_producer::metrics::Metrics::default());
    let load_stats = Arc::new(Load::default());

    let runtime = tokio::runtime::Runtime::new()?;
    let code = runtime.block_on(async {
        // One stop token for every role the demo starts.
        let stop = CancellationToken::new();
        let agent = AgentParts {
            config: agent_config,
            registry: registry.clone(),
            keys: load::agent_keyring(&dir.join("keys/agent.toml"))?,
            clock: clock.clone(),
            reload: None,
            metrics: agent_metrics.clone(),
        };
        let consumer = ConsumerParts {
            config: consumer_config,
            registry: registry.clone(),
            keys: load::master_keyring(&dir.join("keys/master.toml"))?,
            output: output.clone(),
            metrics: Arc::new(ConsumerMetrics::default()),
        };
        let auditor = AuditorParts {
            listener: evd_ops::http::bind(&ops_config.listen).await?,
            keys: load::master_keyring(&ops_config.keyring_path)?,
            config: ops_config,
            output,
            shared: shared.clone(),
        };
        let (s1, s2, s3) = (stop.clone(), stop.clone(), stop.clone());
        let mut agent_task = tokio::spawn(async move { Ok(agent::run(agent, s1).await?) });
        let consumer_task = tokio::spawn(async move { Ok(run_consumer(consumer, s2).await?) });
        let auditor_task = tokio::spawn(async move { Ok(auditor_role::run(auditor, s3).await?) });
        wait_for_socket(&socket).await?;

        println!("evd demo: data under {}", dir.display());
        println!("evd demo: dashboard  http://{}/  (hosts: /hosts, API: /api/hours, metrics: /metrics)", args.listen);
        println!(
            "evd demo: {} events/s for {} s; the demo clock runs {} s ahead so an hour ends 20 s in",
            args.rate,
            args.duration,
            offset / 1000
        );
        let started = Instant::now();
        let load = generate(socket.clone(), args.rate, Duration::from_secs(args.duration), load_stats.clone(), clock.clone());
        run_load_and_drain(load, &mut agent_task, &load_stats, &shared, started).await?;
        progress(&load_stats, &shared, started);
        println!();
        let code = summary(&dir, &load_stats, &shared);
        let roles = [("agent", agent_task), ("consumer", consumer_task), ("auditor", auditor_task)];
        stop_roles(&stop, roles).await;
        Ok::<_, anyhow::Error>(code)
    })?;
    runtime.shutdown_timeout(Duration::from_secs(2));
    drop(cluster);
    Ok(code)
}

/// Runs the load generator to its end (failing if the agent stops meanwhile), then
/// waits up to 120 s until every acked event landed (the auditor counted it in the
/// Parquet files), printing progress each second.
async fn run_load_and_drain(
    load: impl std::future::Future<Output = Result<()>> + Send + 'static,
    agent_task: &mut tokio::task::JoinHandle<Result<()>>,
    load_stats: &Arc<Load>,
    shared: &Arc<Shared>,
    started: Instant,
) -> Result<()> {
    let generator = tokio::spawn(load);
    while !generator.is_finished() {
        progress(load_stats, shared, started);
        if agent_task.is_finished() {
            bail!("the agent stopped: {:?}", agent_task.await);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    generator.await??;
    let drain_until = Instant::now() + Duration::from_secs(120);
    while shared.rows_scanned.load(Ordering::Relaxed) < load_stats.acked.load(Ordering::Relaxed)
        && Instant::now() < drain_until
    {
        progress(load_stats, shared, started);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// The in-process Kafka with every topic the demo's roles use; the config files get
/// its address.
fn start_cluster(
    dir: &Path,
    registry: &Registry,
) -> Result<MockCluster<'static, DefaultProducerContext>> {
    let cluster = MockCluster::new(1).context("starting the in-process Kafka")?;
    let bootstrap = cluster.bootstrap_servers();
    for ty in registry.types() {
        cluster.create_topic(&ty.topic(), 3, 1)?;
    }
    cluster.create_topic("evd.acks", 3, 1)?;
    cluster.create_topic("evd.audit", 3, 1)?;
    for name in ["agent.toml", "consumer.toml", "ops.toml"] {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)?.replace("BOOTSTRAP", &bootstrap);
        std::fs::write(&path, text)?;
    }
    Ok(cluster)
}

/// Every role drains and stops as its own process would at SIGTERM: cancels `stop`,
/// waits up to 30 s for all of them and says how each stopped.
async fn stop_roles(stop: &CancellationToken, roles: [(&str, JoinHandle<Result<()>>); 3]) {
    stop.cancel();
    let stopping = async {
        let mut stopped = Vec::new();
        for (role, task) in roles {
            stopped.push((role, task.await));
        }
        stopped
    };
    let Ok(stopped) = tokio::time::timeout(Duration::from_secs(30), stopping).await else {
        eprintln!("evd demo: a role did not stop within 30 s");
        return;
    };
    for (role, result) in stopped {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("evd demo: the {role} stopped with an error: {e:#}"),
            Err(e) => eprintln!("evd demo: the {role} panicked: {e}"),
        }
    }
    println!("evd demo: every role stopped");
}

fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        if !dir.join(OWNED).exists() {
            bail!(
                "{} exists and was not made by `evd demo`; give another --dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(OWNED),
        "made by evd demo; deleted by the next run\n",
    )?;
    Ok(std::fs::canonicalize(dir)?)
}

fn write_files(dir: &Path, listen: &str) -> Result<()> {
    std::fs::create_dir_all(dir.join("registry"))?;
    for (name, text) in REGISTRY {
        std::fs::write(dir.join("registry").join(name), text)?;
    }
    std::fs::create_dir_all(dir.join("keys"))?;
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).map_err(|e| anyhow::anyhow!("OS randomness: {e}"))?;
    let master = MasterKeyring::new([(1, Key(key))]);
    load::write_secret(&dir.join("keys/master.toml"), &master.to_toml())?;
    load::write_secret(
        &dir.join("keys/agent.toml"),
        &master.derive_agent_keyring("demo-host").to_toml(),
    )?;
    let out = dir.join("out");
    std::fs::write(
        dir.join("agent.toml"),
        "agent_id = \"demo-host\"\nregistry_dir = \"registry\"\nkeyring_path = \"keys/agent.toml\"\n\
         heartbeat_interval_ms = 1000\nretransmit_after_ms = 30000\n\
         [socket]\npath = \"agent/evd.sock\"\n[spool]\ndir = \"agent/spool\"\n\
         [kafka]\nbootstrap_servers = \"BOOTSTRAP\"\n",
    )?;
    std::fs::write(
        dir.join("consumer.toml"),
        format!(
            "consumer_id = \"demo-consumer\"\nregistry_dir = \"registry\"\nkeyring_path = \"keys/master.toml\"\n\
             output_url = \"file://{}\"\nflush_interval_ms = 2000\n[kafka]\nbootstrap_servers = \"BOOTSTRAP\"\n",
            out.display()
        ),
    )?;
    std::fs::write(
        dir.join("ops.toml"),
        format!(
            "registry_dir = \"registry\"\nkeyring_path = \"keys/master.toml\"\noutput_url = \"file://{}\"\nlisten = \"{listen}\"\nscan_interval_ms = 1000\n\
             late_after_ms = 30000\ndeadline_high_ms = 60000\ndeadline_normal_ms = 90000\ndeadline_low_ms = 120000\n\
             [kafka]\nbootstrap_servers = \"BOOTSTRAP\"\n",
            out.display()
        ),
    )?;
    Ok(())
}

async fn wait_for_socket(socket: &Path) -> Result<()> {
    for _ in 0..100 {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the agent's socket {} did not come up", socket.display())
}

/// One event line; every 50th is invalid on purpose (unknown type, schema violation,
/// not JSON), which the agent refuses line by line.
fn event_line(n: u64, ts_ms: i64) -> String {
    let user = n % 9_973;
    match n % 50 {
        7 => format!(r#"{{"type":"NoSuchType","ts":{ts_ms},"n":{n}}}"#),
        23 => format!(r#"{{"type":"PageView","ts":{ts_ms},"load_ms":"slow"}}"#),
        41 => format!("{{not json {n}"),
        _ => match n % 5 {
            0 => format!(
                r#"{{"type":"PageView","ts":{ts_ms},"user_id":"u{user}","url":"/album/{n}","referrer":"/search","load_ms":{}}}"#,
                n % 900
            ),
            1 => format!(
                r#"{{"type":"SearchViewResponse","ts":{ts_ms},"user_id":"u{user}","query":"songs like {n}","result_count":{},"latency_ms":12.5}}"#,
                n % 50
            ),
            2 => format!(
                r#"{{"type":"EndSong","ts":{ts_ms},"user_id":"u{user}","track_id":"t{n}","ms_played":{},"reason_end":"trackdone","offline":false}}"#,
                n % 300_000
            ),
            3 => format!(
                r#"{{"type":"AdImpression","ts":{ts_ms},"user_id":"u{user}","ad_id":"ad-{n}","campaign_id":"c7","price_micros":1200,"viewable":true}}"#
            ),
            _ => format!(
                r#"{{"type":"ClientCrash","ts":{ts_ms},"app_version":"8.9.{}","platform":"android","signature":"s{n}","details":{{"thread":"main"}}}}"#,
                n % 40
            ),
        },
    }
}

/// Sends `rate` lines a second for `duration` over one connection, in 100 ms steps.
async fn generate(
    socket: PathBuf,
    rate: u64,
    duration: Duration,
    stats: Arc<Load>,
    clock: Arc<dyn Clock>,
) -> Result<()> {
    let (mut tx, rx) = tokio::io::duplex(1 << 20);
    let counts = stats.clone();
    let sender = tokio::spawn(async move {
        send_lines(&socket, rx, |_, response| match response {
            Response::Ok(_) => {
                counts.acked.fetch_add(1, Ordering::Relaxed);
            }
            Response::Error { .. } => {
                counts.refused.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await
    });
    use tokio::io::AsyncWriteExt;
    let started = Instant::now();
    let mut n = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while started.elapsed() < duration {
        tick.tick().await;
        let due = (started.elapsed().as_millis() as u64 * rate / 1000).max(n);
        let mut text = String::new();
        while n < due {
            // Services stamp events a little before the agent receives them.
            text.push_str(&event_line(n, clock.now_ms() - (n % 3_000) as i64));
            text.push('\n');
            n += 1;
        }
        tx.write_all(text.as_bytes()).await?;
        stats.sent.store(n, Ordering::Relaxed);
    }
    drop(tx);
    sender.await??;
    Ok(())
}

fn progress(load: &Load, shared: &Shared, started: Instant) {
    use std::io::Write;
    print!(
        "\r[{:>4} s] sent {:>8}  acked {:>8}  refused {:>5}  landed {:>8}  hours closed {:>3}  quarantined batches {}   ",
        started.elapsed().as_secs(),
        load.sent.load(Ordering::Relaxed),
        load.acked.load(Ordering::Relaxed),
        load.refused.load(Ordering::Relaxed),
        shared.rows_scanned.load(Ordering::Relaxed),
        shared.hours_closed.load(Ordering::Relaxed),
        shared.quarantined_batches.load(Ordering::Relaxed),
    );
    let _ = std::io::stdout().flush();
}

fn summary(dir: &Path, load: &Load, shared: &Shared) -> ExitCode {
    let acked = load.acked.load(Ordering::Relaxed);
    let landed = shared.rows_scanned.load(Ordering::Relaxed);
    println!("evd demo: summary");
    println!(
        "  sent {}, acked {acked}, refused {} (invalid on purpose)",
        load.sent.load(Ordering::Relaxed),
        load.refused.load(Ordering::Relaxed)
    );
    println!(
        "  landed in Parquet {landed}, hours closed {}",
        shared.hours_closed.load(Ordering::Relaxed)
    );
    for r in evd_ops::dashboard::reports(shared)
        .iter()
        .filter(|r| r.published > 0)
    {
        println!(
            "  {:<20} {}  {:<10} published {:>7} delivered {:>7} missing {}",
            r.event_type,
            r.hour,
            r.state.as_str(),
            r.published,
            r.delivered,
            r.missing
        );
    }
    println!("Query the buckets (DuckDB from PyPI: pip install duckdb):");
    println!(
        "  python3 -c \"import duckdb; print(duckdb.sql(\\\"select regexp_extract(filename, '/([^/]+)/date=', 1) as event_type, date, hour, count(*) as events from read_parquet('{}/out/*/*/*/*.parquet', hive_partitioning=true, union_by_name=true, filename=true) group by all order by all\\\"))\"",
        dir.display()
    );
    let reports = evd_ops::dashboard::reports(shared);
    let duplicates: u64 = reports.iter().map(|r| r.duplicates).sum();
    let missing: u64 = reports.iter().map(|r| r.missing).sum();
    if landed == acked && duplicates == 0 && missing == 0 {
        println!("evd demo: every acked event landed exactly once");
        ExitCode::SUCCESS
    } else {
        println!(
            "evd demo: FAILED: acked {acked}, landed {landed}, duplicates {duplicates}, missing {missing}"
        );
        ExitCode::FAILURE
    }
}
