//! Every benchmark binary runs at a tiny size and prints its table, so none can rot.
//! Nothing here is timed: the figures are for people (docs/benchmarks.md), measured
//! at full size on a quiet machine.

use std::process::Command;

/// Runs a bench binary with `args`; returns what it printed, after checking it ended
/// well.
fn run(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    stdout
}

#[test]
fn agent_bench_prints_evd_beside_its_references() {
    let out = run(env!("CARGO_BIN_EXE_agent-bench"), &["3000"]);
    assert!(out.contains("| evd agent → MockCluster | 3000 |"), "{out}");
    assert!(
        out.contains("| evd agent → tansu (sqlite) | 3000 |"),
        "{out}"
    );
    assert!(
        out.contains("| kcat -P"),
        "kcat is installed by the test deps: {out}"
    );
    assert!(out.contains("| rsyslog imfile → omkafka"), "{out}");
}

#[test]
fn consumer_bench_prints_evd_beside_its_references() {
    let out = run(env!("CARGO_BIN_EXE_consumer-bench"), &["3000"]);
    assert!(out.contains("evd"), "{out}");
}

#[test]
fn tail_bench_prints_evd_beside_wc() {
    let out = run(env!("CARGO_BIN_EXE_tail-bench"), &["3000"]);
    for files in [1, 100] {
        for mode in ["json", "text", "text, multi-line joining"] {
            let row = format!("| evd tailer → spool, {mode} | {files} | 3000 |");
            assert!(out.contains(&row), "no {row} in:\n{out}");
        }
    }
}

#[test]
fn bridge_bench_prints_evd_beside_kcat() {
    let out = run(env!("CARGO_BIN_EXE_bridge-bench"), &["300", "100"]);
    assert!(out.contains("| evd bridge | 300 | 100 |"), "{out}");
    assert!(
        out.contains("| evd bridge, central 20 ms away | 300 |"),
        "{out}"
    );
}

#[test]
fn latency_bench_prints_percentiles_and_memory() {
    let out = run(env!("CARGO_BIN_EXE_latency-bench"), &["2", "500", "300"]);
    assert!(out.contains("| every 300 ms | 1000 of 1000 |"), "{out}");
}
