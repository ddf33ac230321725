//! `evd demo --duration 60` on a fresh directory exits 0 and leaves Parquet that DuckDB
//! reads with the counts the demo reported, and closed-hour markers.

use std::process::Command;

use tests::process::evd_binary;

#[test]
fn the_demo_runs_and_its_parquet_reads_back_with_the_reported_counts() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", tests::free_port());
    let out = Command::new(evd_binary())
        .args([
            "demo",
            "--duration",
            "60",
            "--rate",
            "1000",
            "--listen",
            &listen,
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("every acked event landed exactly once"),
        "{stdout}"
    );
    // The demo stops every role it started, each draining as at SIGTERM.
    assert!(stdout.contains("every role stopped"), "{stdout}\n{stderr}");
    let acked: u64 = stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("sent ")?
                .split("acked ")
                .nth(1)?
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .expect("the summary names the acked count");
    assert!(acked > 50_000, "{stdout}");

    let data = dir.path().join("evd-demo/out");
    let count = Command::new("python3")
        .arg("-c")
        .arg(
            "import duckdb,sys; print(duckdb.execute(f\"select count(*) from read_parquet('{sys.argv[1]}/*/*/*/*.parquet', hive_partitioning=true, union_by_name=true)\").fetchone()[0])",
        )
        .arg(&data)
        .output()
        .unwrap();
    let rows: u64 = String::from_utf8_lossy(&count.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("duckdb: {}", String::from_utf8_lossy(&count.stderr)));
    assert_eq!(rows, acked, "DuckDB reads every acked event, once");
    let markers = walk(&data)
        .into_iter()
        .filter(|p| p.ends_with("_CLOSED.json"))
        .count();
    assert!(
        markers >= 5,
        "the hour that ended during the demo closed: {markers} markers"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}
