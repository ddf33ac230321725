//! Agent throughput: socket → spool → zstd → AEAD → Kafka, beside `kcat -P` producing
//! the same lines to the same broker and rsyslog (imfile → omkafka, Debian's
//! `rsyslog-kafka`) shipping them from a file, the peer a log shipper would pick. Not a
//! test: prints a table; a reference that is not installed gets a row saying so.
//!
//! `cargo build --release -p evd-ops && cargo run --release -p tests --bin agent-bench -- [EVENTS]`

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::oracle::{TYPES, create_pipeline_topics, event_line, send_ids, topic};
use tests::{MockBroker, RealBroker};

struct Row {
    what: String,
    events: u64,
    secs: f64,
    cpu_secs: Option<f64>,
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn run_agent(name: &str, bootstrap: &str, events: u64, clients: u64) -> Result<Row> {
    let dir = tempfile::tempdir()?;
    let agent = AgentProcess::start(dir.path(), "bench", bootstrap, AgentOptions::default())?;
    let pid = agent.pid().context("agent pid")?;
    let cpu0 = cpu_seconds(pid);
    let started = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let socket = agent.socket();
        handles.push(tokio::spawn(async move {
            send_ids(&socket, (0..events).filter(move |i| i % clients == c)).await
        }));
    }
    let mut acked = 0;
    for h in handles {
        acked += h.await??.len() as u64;
    }
    // Delivered: every sealed batch confirmed by Kafka.
    loop {
        let sealed = agent.metric("batches_sealed").unwrap_or(0);
        let sent = agent.metric("batches_sent").unwrap_or(0);
        if agent.metric("events_accepted") == Some(acked)
            && sealed > 0
            && sent >= sealed
            && agent.metric("events_accepted").is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid).zip(cpu0).map(|(b, a)| b - a);
    Ok(Row {
        what: format!("evd agent → {name}"),
        events: acked,
        secs,
        cpu_secs: cpu,
    })
}

fn run_kcat(bootstrap: &str, events: u64) -> Result<Option<Row>> {
    if Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return Ok(None);
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("lines");
    let text: String = (0..events).map(|i| event_line(i) + "\n").collect();
    std::fs::write(&file, text)?;
    let started = Instant::now();
    let status = Command::new("kcat")
        .args([
            "-P",
            "-b",
            bootstrap,
            "-t",
            &topic(TYPES[0]),
            "-X",
            "acks=all",
            "-X",
            "enable.idempotence=true",
            "-l",
        ])
        .arg(Path::new(&file))
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "kcat failed: {status}");
    Ok(Some(Row {
        what: "kcat -P (same lines, no spool/crypto)".into(),
        events,
        secs: started.elapsed().as_secs_f64(),
        cpu_secs: None,
    }))
}

/// Records in every partition of `topic` (the sum of high watermarks).
fn records_in(bootstrap: &str, topic: &str) -> Result<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = tests::kafka::client_config(bootstrap).create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut total = 0;
    for t in metadata.topics() {
        for p in t.partitions() {
            total += consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(5))?
                .1;
        }
    }
    Ok(total)
}

/// rsyslog reading the same lines from a file (imfile, inotify) and producing them to
/// `topic` with omkafka (acks=all, idempotent), timed from its start until every line
/// is in the topic.
fn run_rsyslog(bootstrap: &str, topic: &str, events: u64) -> Result<Option<Row>> {
    let Some(modules) = [
        "/usr/lib/x86_64-linux-gnu/rsyslog",
        "/usr/lib/aarch64-linux-gnu/rsyslog",
    ]
    .into_iter()
    .map(Path::new)
    .find(|dir| dir.join("omkafka.so").is_file()) else {
        return Ok(None);
    };
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("lines.log");
    let text: String = (0..events).map(|i| event_line(i) + "\n").collect();
    std::fs::write(&file, text)?;
    let conf = dir.path().join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}" maxMessageSize="64k")
module(load="{modules}/imfile.so")
module(load="{modules}/omkafka.so")
template(name="raw" type="string" string="%msg%")
input(type="imfile" file="{file}" tag="bench" ruleset="kafka")
ruleset(name="kafka") {{
  action(type="omkafka" broker=["{bootstrap}"] topic="{topic}" template="raw"
         confParam=["acks=all", "enable.idempotence=true"])
}}
"#,
            work = dir.path().display(),
            modules = modules.display(),
            file = file.display(),
        ),
    )?;
    let started = Instant::now();
    let mut child = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.path().join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("rsyslogd")?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let result = loop {
        if records_in(bootstrap, topic)? >= events as i64 {
            break Ok(started.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("rsyslog delivered too little in 600 s"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = child.kill();
    let _ = child.wait();
    Ok(Some(Row {
        what: "rsyslog imfile → omkafka (same lines from a file)".into(),
        events,
        secs: result?,
        cpu_secs: None,
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let events: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500_000);
    let clients = 8;
    let mut rows = Vec::new();

    let mock = MockBroker::start(1)?;
    for t in TYPES {
        mock.create_topic(&topic(t), 3)?;
    }
    mock.create_topic("evd.acks", 1)?;
    mock.create_topic("evd.audit", 1)?;
    rows.push(run_agent("MockCluster", mock.bootstrap(), events, clients).await?);
    if let Some(row) = run_kcat(mock.bootstrap(), events)? {
        rows.push(row);
    }
    mock.create_topic("bench.rsyslog", 3)?;
    match run_rsyslog(mock.bootstrap(), "bench.rsyslog", events)? {
        Some(row) => rows.push(row),
        None => println!("rsyslog-kafka is not installed: no rsyslog row"),
    }
    drop(mock);

    let broker = RealBroker::start()?;
    create_pipeline_topics(&broker.bootstrap(), 3)?;
    rows.push(run_agent("tansu (sqlite)", &broker.bootstrap(), events, clients).await?);

    println!(
        "\n| path | events | seconds | events/s | MB/s (≈{} B/event) | agent CPU s |",
        event_line(1).len() + 1
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let bytes = (event_line(1).len() + 1) as f64;
    for r in rows {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.1} | {} |",
            r.what,
            r.events,
            r.secs,
            r.events as f64 / r.secs,
            r.events as f64 * bytes / r.secs / 1e6,
            r.cpu_secs.map_or("–".into(), |c| format!("{c:.2}"))
        );
    }
    Ok(())
}
