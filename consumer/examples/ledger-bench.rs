//! Many consumers' manifests through recovery and ledger compaction, on a local-disk
//! object store: CONSUMERS consumers each commit FLUSHES flushes (`Output::commit`, the
//! consumers' own path) listing, for each of AGENTS agents, BATCHES batch seqs. An
//! agent's seqs go round-robin to the consumers, as its event types spread its batches
//! over their partitions: each manifest holds every agent's seqs as isolated ranges,
//! while their union (the ledger) is one range per agent. Then a consumer's start-up
//! reads every live manifest (recovery), folds them into a snapshot (compaction), and
//! starts again from the snapshot. Prints time, bytes and peak memory per step.
//!
//! `cargo run --release -p evd-consumer --example ledger-bench -- [AGENTS CONSUMERS FLUSHES BATCHES]`

use std::sync::Arc;
use std::time::Instant;

use evd_consumer::commit::Output;
use evd_consumer::ledger::{AgentBatches, MANIFEST_VERSION, Manifest};
use evd_schemas::SpoolId;
use object_store::local::LocalFileSystem;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Bytes of every object under `dir` of the store's root.
fn bytes_under(root: &std::path::Path, dir: &str) -> u64 {
    std::fs::read_dir(root.join(dir)).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Consumer `c`'s manifest of flush `f`: per agent, the `batches` seqs of this flush
/// whose turn is `c` (seq `s` goes to consumer `s % consumers`).
fn manifest(c: usize, f: usize, agents: usize, consumers: usize, batches: usize) -> Manifest {
    let first = (f * batches * consumers) as u64 + 1;
    let seqs = move || {
        (first..first + (batches * consumers) as u64).filter(move |s| *s as usize % consumers == c)
    };
    Manifest {
        version: MANIFEST_VERSION,
        flush_id: format!("c{c:04}-f{f:06}"),
        consumer_id: format!("consumer-{c}"),
        created_at_ms: 0,
        files: vec![],
        batches: (0..agents)
            .map(|a| AgentBatches {
                agent_id: format!("host-{a:06}"),
                spool_id: SpoolId(1),
                ranges: seqs().map(|s| (s, s)).collect(),
            })
            .collect(),
        delivered: vec![],
        quarantine: vec![],
        offsets: vec![],
        aborted: false,
    }
}

async fn run(args: &[usize]) {
    let [agents, consumers, flushes, batches] = match args {
        [a, c, f, b, ..] => [*a, *c, *f, *b],
        _ => [1_000, 28, 10, 20],
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = Output {
        store: Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("a local store")),
        prefix: Default::default(),
    };
    let manifests = consumers * flushes;
    println!(
        "{agents} agents × {consumers} consumers × {flushes} flushes, {batches} batches per \
         agent per manifest: {manifests} manifests, {} batches",
        manifests * agents * batches
    );
    println!();
    println!("| step | seconds | store bytes | ledger ranges | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|");

    let started = Instant::now();
    for f in 0..flushes {
        for c in 0..consumers {
            let mut m = manifest(c, f, agents, consumers, batches);
            output.commit(&mut m, vec![]).await.expect("commit");
        }
    }
    let live = bytes_under(dir.path(), "_evd/manifests");
    println!(
        "| commit {manifests} manifests (mean {} KiB) | {:.2} | {live} | – | {:.0} |",
        live / manifests.max(1) as u64 / 1024,
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );

    let step = async |what: &str, compact_after: usize, dir_name: &str| {
        let started = Instant::now();
        let ledger = output
            .recover(compact_after, "bench")
            .await
            .expect("recover");
        let secs = started.elapsed().as_secs_f64();
        let ranges: usize = ledger
            .snapshot(0, "bench", 0)
            .committed
            .iter()
            .map(|b| b.ranges.len())
            .sum();
        println!(
            "| {what} | {secs:.2} | {} | {ranges} | {:.0} |",
            bytes_under(dir.path(), dir_name),
            peak_rss_mib()
        );
    };
    step(
        "start-up: read every live manifest",
        usize::MAX,
        "_evd/manifests",
    )
    .await;
    step(
        "start-up that compacts (snapshot written, manifests archived)",
        0,
        "_evd/ledger",
    )
    .await;
    step("start-up from the snapshot", usize::MAX, "_evd/ledger").await;
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(run(&args));
}

#[test]
fn runs_at_a_tiny_size() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(run(&[5, 3, 2, 4]));
}
