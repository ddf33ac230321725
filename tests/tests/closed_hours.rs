//! The closed-hours table end to end: agent → Kafka (mock cluster) → consumer, which
//! flushes every 300 ms (many small files an hour), and an auditor with
//! `[combine] enabled`, all moved through hours by an injected clock.
//!
//! Each closed (type, hour) must get exactly one file in `closed-hours/`, holding
//! exactly the rows of the consumers' files its marker lists (DuckDB compares the two
//! tables row by row, through the views `evd schema ddl` defines), and a restarted
//! auditor must not write any of them again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evd_schemas::Hour;
use serde_json::Value;
use tests::auditor_proc::AuditorOptions;
use tests::clocked::ClockedBed;
use tests::consumer_proc::ConsumerOptions;
use tests::oracle::{TYPES, send_ids};
use tests::process::evd_binary;

const PER_HOUR: u64 = 3_000;

fn parquet_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The markers of `hour`'s closed (type, hour)s.
fn markers(out: &Path, hour: Hour) -> Vec<Value> {
    TYPES
        .iter()
        .filter_map(|ty| {
            let path = out
                .join(ty)
                .join(hour.partition_path())
                .join("_CLOSED.json");
            let text = std::fs::read_to_string(path).ok()?;
            Some(serde_json::from_str(&text).unwrap())
        })
        .collect()
}

fn combined_dir(out: &Path, ty: &str, hour: Hour) -> PathBuf {
    out.join("closed-hours")
        .join(ty)
        .join(hour.partition_path())
}

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(secs);
    while !done() {
        if Instant::now() > until {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

fn ddl(out: &Path, ty: &str, closed_hours: bool) -> String {
    let mut args = vec!["schema", "ddl", "--dialect", "duckdb", "--registry"];
    let registry = tests::agent_proc::example_registry_dir()
        .display()
        .to_string();
    let location = out.display().to_string();
    args.extend([registry.as_str(), "--location", location.as_str()]);
    if closed_hours {
        args.push("--closed-hours");
    }
    args.push(ty);
    let ddl = std::process::Command::new(evd_binary())
        .args(&args)
        .output()
        .unwrap();
    assert!(ddl.status.success(), "{ddl:?}");
    String::from_utf8(ddl.stdout).unwrap()
}

/// Through both views of `ty`, over the closed hours `[from, to)`: rows in the live
/// table, rows in the closed-hours table, and rows in either that the other lacks
/// (as a multiset, by every column).
fn compare_tables(out: &Path, ty: &str, from: Hour, to: Hour) -> (u64, u64, u64) {
    let script = format!(
        r#"
import duckdb, sys
con = duckdb.connect()
con.execute(sys.argv[1])
con.execute(sys.argv[2])
live = 'SELECT * FROM "{ty}" WHERE strftime("date", \'%Y-%m-%d\') || \'T\' || lpad("hour"::VARCHAR, 2, \'0\') IN ({hours})'
closed = 'SELECT * FROM "{ty}_closed_hours"'
a = con.execute(f"SELECT count(*) FROM ({{live}})").fetchone()[0]
b = con.execute(f"SELECT count(*) FROM ({{closed}})").fetchone()[0]
d = con.execute(f"SELECT count(*) FROM (({{live}}) EXCEPT ALL ({{closed}}) UNION ALL (({{closed}}) EXCEPT ALL ({{live}})))").fetchone()[0]
print(a, b, d)
"#,
        hours = (from.0..to.0)
            .map(|h| format!("\\'{}\\'", Hour(h)))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(ddl(out, ty, false))
        .arg(ddl(out, ty, true))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let n: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (n[0], n[1], n[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_closed_hour_becomes_one_file_with_exactly_its_rows() {
    let auditor = AuditorOptions {
        policy: AuditorOptions::default().policy + "[combine]\nenabled = true\n",
        ..AuditorOptions::default()
    };
    let mut clocked = ClockedBed::start(2, ConsumerOptions::new("c1", 300), auditor).unwrap();
    let base = clocked.base;
    let out = clocked.bed.out();

    // Two hours of events, sent in slices so the consumer writes many files.
    for h in 0..2u32 {
        for slice in 0..6 {
            let from = u64::from(h) * PER_HOUR + slice * PER_HOUR / 6;
            let acked = send_ids(&clocked.bed.agent().socket(), from..from + PER_HOUR / 6)
                .await
                .unwrap();
            assert_eq!(acked.len() as u64, PER_HOUR / 6);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        clocked.set_clock(Hour(base.0 + h + 1), 1);
        let hour = Hour(base.0 + h);
        let found = markers(&out, hour).len();
        wait_for("the hour's markers", 60, || {
            markers(&out, hour).len() == TYPES.len()
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e} ({found} at first)\n{}",
                clocked.bed.auditor().log_tail()
            )
        });
    }

    let mut table = Vec::new();
    for h in 0..2u32 {
        let hour = Hour(base.0 + h);
        for marker in markers(&out, hour) {
            let ty = marker["event_type"].as_str().unwrap().to_string();
            let listed = marker["files"].as_array().unwrap().len();
            if listed == 0 {
                continue;
            }
            let dir = combined_dir(&out, &ty, hour);
            wait_for("the combined file", 60, || !parquet_files(&dir).is_empty())
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", clocked.bed.auditor().log_tail()));
            let combined = parquet_files(&dir);
            assert_eq!(combined.len(), 1, "{combined:?}");
            assert_eq!(marker["state"], "complete", "{marker:#}");
            let live = parquet_files(&out.join(&ty).join(hour.partition_path()));
            assert_eq!(live.len(), listed, "the consumers' files stay");
            table.push((
                ty,
                hour,
                listed,
                std::fs::metadata(&combined[0]).unwrap().len(),
            ));
        }
    }
    assert!(
        table.iter().any(|(_, _, files, _)| *files > 3),
        "the consumer wrote several files an hour: {table:?}\n{}",
        clocked.bed.consumer().process.log_tail()
    );
    println!("type, hour, consumers' files -> one combined file of N bytes:");
    for row in &table {
        println!("  {row:?}");
    }

    let mut rows = 0;
    for ty in TYPES {
        let (live, closed, differ) = compare_tables(&out, ty, base, Hour(base.0 + 2));
        assert_eq!(
            (live, differ),
            (closed, 0),
            "{ty}: live {live}, closed {closed}"
        );
        rows += closed;
    }
    assert_eq!(rows, 2 * PER_HOUR, "every acked event, once");

    let ops = clocked.bed.auditor.as_mut().unwrap();
    assert_eq!(ops.metric("hours_combined"), Some(table.len() as u64));
    assert_eq!(ops.metric("hours_not_combined"), Some(0));
    // A restarted auditor finds every combined file in place and writes none again.
    let written: Vec<_> = table
        .iter()
        .map(|(ty, hour, _, _)| {
            let file = &parquet_files(&combined_dir(&out, ty, *hour))[0];
            (
                file.clone(),
                std::fs::metadata(file).unwrap().modified().unwrap(),
            )
        })
        .collect();
    ops.kill9().unwrap();
    ops.spawn(|p| p.metric("files_scanned_total").is_some())
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ops.metric("hours_combined"), Some(0), "{}", ops.log_tail());
    for (file, modified) in written {
        assert_eq!(
            std::fs::metadata(&file).unwrap().modified().unwrap(),
            modified
        );
    }
}
