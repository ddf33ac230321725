//! Soak: the whole pipeline (edge + bridge + central, tansu behind fault proxies) under
//! a steady load for a long time, with a fault from every kind in turn, a share of
//! acks dropped and object-store faults throughout. A line per minute, then the
//! oracle's verdict; exits 1 unless lost = dup = phantom = 0 and no evd process
//! exited on its own.
//!
//! ```text
//! cargo run --release -p tests --bin soak -- --duration 1h --faults every=60s [--rate 1000]
//! ```
//! Needs what `scripts/install-test-deps` installs (tansu, DuckDB) and a release `evd`
//! (`cargo build --release -p evd-ops`, done by the `cargo run` above only for the
//! soak binary itself: build `evd` first).

use std::time::{Duration, Instant};

use tests::load::LoadPlan;
use tests::scenario::{Fault, Scenario, run};

/// `90`, `90s`, `30m`, `1h`.
fn duration(text: &str) -> Duration {
    let (n, unit) = text.split_at(text.trim_end_matches(|c: char| c.is_alphabetic()).len());
    let n: u64 = n
        .parse()
        .unwrap_or_else(|_| panic!("not a duration: {text}"));
    Duration::from_secs(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("unknown unit in {text}: use s, m or h"),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let run_for = duration(&value("--duration").unwrap_or_else(|| "10m".into()));
    let every = value("--faults")
        .map(|f| duration(f.trim_start_matches("every=")))
        .unwrap_or(Duration::from_secs(60));
    let rate: u64 = value("--rate").map_or(1_000, |r| r.parse().expect("--rate N"));
    let gap = every.as_millis() as u64;
    let scenario = Scenario {
        name: format!(
            "soak {}s, a fault every {}s",
            run_for.as_secs(),
            every.as_secs()
        ),
        two_sites: true,
        faults: Fault::ALL.to_vec(),
        load: LoadPlan {
            clients: 4,
            total: None,
            until: Some(Instant::now() + run_for),
            rate_per_s: Some(rate),
            slice: 100,
        },
        fault_gap_ms: (gap * 9 / 10, gap * 11 / 10),
        agent_env: vec![("EVD_TEST_DROP_ACKS_PERCENT".into(), "10".into())],
        consumer_env: vec![(
            "EVD_TEST_STORE_FAULTS".into(),
            "error=0.01,lost_reply=0.01".into(),
        )],
        flush_interval_ms: 5_000,
        drain_limit: Duration::from_secs(600),
        report_every: Some(Duration::from_secs(60)),
        recreate_spool_midway: false,
    };
    println!(
        "soak: {}s at {rate} events/s, a fault every ~{}s, 10% of acks dropped, 1%+1% object-store faults",
        run_for.as_secs(),
        every.as_secs()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(run(scenario));
    println!();
    println!("| figure | value |");
    println!("|---|---:|");
    println!("| duration | {:.0} s |", report.total_secs);
    println!("| events acked | {} |", report.acked);
    println!("| rows in Parquet | {} |", report.verdict.rows);
    println!(
        "| lost / dup / phantom | {} / {} / {} |",
        report.verdict.lost.len(),
        report.verdict.dup.len(),
        report.verdict.phantom.len()
    );
    println!(
        "| files outside manifests | {} |",
        report.verdict.unlisted.len()
    );
    for (fault, n) in &report.faults {
        println!("| fault: {fault} | {n} |");
    }
    for (metric, n) in &report.consumer_metrics {
        println!("| consumer {metric} | {n} |");
    }
    println!(
        "| processes that exited on their own | {} |",
        report.exits.len()
    );
    println!("| drain after the load | {:.1} s |", report.drain_secs);
    for (process, mib) in &report.max_rss_mib {
        println!("| max RSS {process} | {mib} MiB |");
    }
    let verdict = if report.ok() { "PASS" } else { "FAIL" };
    println!("\nsoak verdict: {verdict} (EVD_SEED={})", report.seed);
    std::process::exit(if report.ok() { 0 } else { 1 });
}
