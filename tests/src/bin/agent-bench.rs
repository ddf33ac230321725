//! Agent throughput: socket → spool → zstd → AEAD → Kafka, beside `kcat -P` producing
//! the same lines to the same broker. Not a test: prints a table.
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
