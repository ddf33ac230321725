//! End-to-end latency: from the client's ack (event fsynced in the agent's spool) to
//! the event's row visible in a final Parquet file, at a steady rate, agent → tansu →
//! consumer → local store. Prints p50/p90/p99/max and a histogram per consumer flush
//! interval, and the peak resident memory of the agent and the consumer. Not a test.
//!
//! `cargo build --release -p evd-ops && cargo run --release -p tests --bin latency-bench -- [SECONDS] [RATE] [FLUSH_MS…]`
//! (defaults: 120 s at 2,000 events/s, flushing every 60 s (the consumer's default) and
//! every 1 s). `latency-bench 10 100000 1000` shows the agent's memory at 100k events/s.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use evd_producer::client::{Response, send_lines};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tests::agent_proc::AgentOptions;
use tests::bed::TestBed;
use tests::consumer_proc::ConsumerOptions;

/// When each event seq was acked to the client.
type Acks = Arc<Mutex<HashMap<u64, Instant>>>;

/// A PageView line (one type, so one file per flush).
fn line(id: u64) -> String {
    tests::oracle::page_view_line(id, 120)
}

/// Sends `rate` lines a second for `secs` seconds over one connection, recording
/// when each is acked.
async fn send_steadily(socket: PathBuf, rate: u64, secs: u64, acks: Acks) -> Result<u64> {
    let (mut tx, rx) = tokio::io::duplex(1 << 20);
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let per_tick = (rate / 100).max(1);
        let mut id = 0;
        while id < rate * secs {
            tick.tick().await;
            let mut text = String::new();
            for _ in 0..per_tick {
                text.push_str(&line(id));
                text.push('\n');
                id += 1;
            }
            tx.write_all(text.as_bytes()).await?;
        }
        anyhow::Ok(id)
    });
    let sent = send_lines(&socket, rx, |_, response| {
        if let Response::Ok(seq) = response {
            acks.lock().expect("acks").insert(seq, Instant::now());
        }
    })
    .await?;
    writer.await??;
    Ok(sent)
}

/// Final Parquet files under `out` (not the consumer's staging area).
fn final_files(out: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "_evd") {
            continue;
        }
        if path.is_dir() {
            final_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            found.push(path);
        }
    }
}

fn event_seqs(file: &Path) -> Result<Vec<u64>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file)?)?.build()?;
    let mut seqs = Vec::new();
    for batch in reader {
        let batch = batch?;
        let column = batch.column_by_name("event_seq").context("event_seq")?;
        seqs.extend(
            column
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|&s| s as u64),
        );
    }
    Ok(seqs)
}

/// Peak resident memory of `pid` (VmHWM), in MiB.
fn peak_rss_mib(pid: Option<u32>) -> f64 {
    let status = pid
        .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

struct Run {
    flush_ms: u64,
    latencies_ms: Vec<f64>,
    sent: u64,
    agent_mib: f64,
    consumer_mib: f64,
}

async fn run(secs: u64, rate: u64, flush_ms: u64) -> Result<Run> {
    let bed = TestBed::builder()
        .consumer(ConsumerOptions::new("c1", flush_ms))
        .agent("host-a", AgentOptions::default())
        .start()?;
    let acks: Acks = Arc::default();
    let mut sender = Some(tokio::spawn(send_steadily(
        bed.agent().socket(),
        rate,
        secs,
        acks.clone(),
    )));
    let mut seen_files = BTreeSet::new();
    let mut visible: HashMap<u64, Instant> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(secs + flush_ms / 1000 * 3 + 120);
    let mut sent = None;
    loop {
        let mut files = Vec::new();
        final_files(&bed.out(), &mut files);
        let now = Instant::now();
        for file in files {
            if seen_files.insert(file.clone()) {
                for seq in event_seqs(&file)? {
                    visible.entry(seq).or_insert(now);
                }
            }
        }
        if let Some(done) = sender.take_if(|s| s.is_finished()) {
            sent = Some(done.await??);
            continue;
        }
        if sent.is_some_and(|n| visible.len() as u64 >= n) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "rows never all became visible");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acks = acks.lock().expect("acks");
    let mut latencies_ms: Vec<f64> = visible
        .iter()
        .filter_map(|(seq, at)| Some(at.duration_since(*acks.get(seq)?).as_secs_f64() * 1e3))
        .collect();
    latencies_ms.sort_by(f64::total_cmp);
    Ok(Run {
        flush_ms,
        latencies_ms,
        sent: sent.unwrap_or(0),
        agent_mib: peak_rss_mib(bed.agent().pid()),
        consumer_mib: peak_rss_mib(bed.consumer().process.pid()),
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn print_histogram(sorted: &[f64]) {
    let edges_ms = [
        100.0, 250.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0, 30_000.0, 60_000.0, 120_000.0,
    ];
    println!("\n| latency ≤ | events | share | |");
    println!("|---:|---:|---:|---|");
    let mut below = 0;
    for edge in edges_ms.iter().chain([&f64::INFINITY]) {
        let n = sorted.partition_point(|l| l <= edge) - below;
        below += n;
        let share = n as f64 / sorted.len().max(1) as f64;
        let label = if edge.is_finite() {
            format!("{edge:.0} ms")
        } else {
            "more".to_string()
        };
        println!(
            "| {label} | {n} | {:.1}% | {} |",
            share * 100.0,
            "█".repeat((share * 40.0).round() as usize)
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let secs = args.first().copied().unwrap_or(120);
    let rate = args.get(1).copied().unwrap_or(2_000);
    let flushes: Vec<u64> = match args.get(2..) {
        Some(f) if !f.is_empty() => f.to_vec(),
        _ => vec![60_000, 1_000],
    };
    let mut runs = Vec::new();
    for flush_ms in flushes {
        runs.push(run(secs, rate, flush_ms).await?);
    }
    println!("\n{secs} s at {rate} events/s; from client ack to the row visible in Parquet.\n");
    println!(
        "| consumer flush | events | p50 ms | p90 ms | p99 ms | max ms | agent peak RSS MiB | consumer peak RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &runs {
        let l = &r.latencies_ms;
        println!(
            "| every {} ms | {} of {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} |",
            r.flush_ms,
            l.len(),
            r.sent,
            percentile(l, 0.5),
            percentile(l, 0.9),
            percentile(l, 0.99),
            percentile(l, 1.0),
            r.agent_mib,
            r.consumer_mib
        );
    }
    for r in &runs {
        println!("\nflush every {} ms:", r.flush_ms);
        print_histogram(&r.latencies_ms);
    }
    Ok(())
}
