//! Combining a closed hour: FILES consumer files of EVENTS PageView rows in all (as
//! FILES flushes of one consumer would write them), then evd's combiner
//! (`evd_ops::combine::hour`) writing them into one file on the local store, beside
//! DuckDB (one thread) merging the same files into one zstd file. Prints files per
//! hour, bytes and time for each. Not a test: prints a table.
//!
//! `cargo run --release -p evd-ops --example combine-bench -- [EVENTS FILES]`

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use evd_consumer::commit::Output;
use evd_consumer::layout;
use evd_ops::audit::{CellState, MarkerFile};
use evd_ops::combine::hour::{Outcome, combine_hour};
use evd_ops::combine::queue::Job;
use evd_ops::config::CombineConfig;
use evd_schemas::Hour;
use object_store::ObjectStoreExt;

const HOUR: Hour = Hour(500_000);

/// Rows `from..to` of a synthetic PageView hour, in the consumer's column layout.
fn rows(schema: &arrow_schema::SchemaRef, from: i64, to: i64) -> RecordBatch {
    let start_us = HOUR.start_ms() * 1000;
    let ids = from..to;
    let micros = |offset: i64| {
        TimestampMicrosecondArray::from_iter_values(
            ids.clone().map(move |i| start_us + i * 3_600 + offset),
        )
        .with_timezone("UTC")
    };
    let text = |f: &dyn Fn(i64) -> String| StringArray::from_iter_values(ids.clone().map(f));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(micros(0)),
        Arc::new(micros(-250_000)),
        Arc::new(text(&|i| format!("host-{:04}", i % 40))),
        Arc::new(text(&|i| format!("{:016x}", 0x5eed + i % 40))),
        Arc::new(Int64Array::from_iter_values(
            ids.clone().map(|i| i / 40 + 1),
        )),
        Arc::new(Int64Array::from_iter_values(
            ids.clone().map(|i| i / 40_000 + 1),
        )),
        Arc::new(text(&|i| format!("u{}", i * 7_919 % 250_000))),
        Arc::new(text(&|i| format!("/artist/{}/album/{}", i % 5_000, i % 97))),
        Arc::new(text(&|i| {
            ["/search", "/home", "/browse"][(i % 3) as usize].to_string()
        })),
        Arc::new(Int64Array::from_iter_values(
            ids.clone().map(|i| i * 31 % 900),
        )),
    ];
    RecordBatch::try_new(schema.clone(), columns).expect("PageView's columns")
}

fn main() {
    let args: Vec<i64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    run(&args);
}

/// The bench with `[EVENTS FILES]` (defaults for those missing).
fn run(args: &[i64]) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(bench(args));
}

async fn bench(args: &[i64]) {
    let events = args.first().copied().unwrap_or(1_000_000).max(1);
    let files = args.get(1).copied().unwrap_or(60).clamp(1, events);
    let registry_dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/registry");
    let registry = evd_ops::load::registry_dir(&registry_dir).expect("the example registry");
    let schema = Arc::new(registry.get("PageView").expect("PageView").arrow_schema());

    let dir = tempfile::tempdir().expect("a temp dir");
    let output = Output {
        store: Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("the store"),
        ),
        prefix: Default::default(),
    };
    // The consumer's files: one per flush, encoded as the consumer does (not timed).
    let mut listed = Vec::new();
    let mut small_bytes = 0;
    for n in 0..files {
        let (from, to) = (events * n / files, events * (n + 1) / files);
        let bytes = evd_consumer::parquet_out::encode(&rows(&schema, from, to)).expect("encode");
        let path = layout::data_file("PageView", HOUR, &format!("c-1-{n:06}"), 0);
        small_bytes += bytes.len() as u64;
        listed.push(MarkerFile {
            path: path.clone(),
            bytes: bytes.len() as u64,
        });
        output
            .store
            .put(&output.path(&path), bytes.into())
            .await
            .expect("put");
    }
    let job = Job {
        event_type: "PageView".into(),
        hour: HOUR,
        state: CellState::Complete,
        files: listed,
    };

    let started = Instant::now();
    let outcome = combine_hour(&output, &job, &CombineConfig::default())
        .await
        .expect("combine");
    let evd_secs = started.elapsed().as_secs_f64();
    let Outcome::Written { rows, bytes, .. } = outcome else {
        panic!("not combined: {outcome:?}");
    };
    assert_eq!(rows, events as u64);

    println!(
        "\n| one closed hour of PageView ({events} rows) | files per hour | bytes | vs DuckDB | seconds (1 core) | rows/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let duck = duckdb(dir.path());
    let ratio = |b: u64| {
        duck.map_or("".to_string(), |(_, d)| {
            format!("{:.2}×", b as f64 / d as f64)
        })
    };
    println!(
        "| consumer's files ({files} flushes) | {files} | {small_bytes} | {} | | |",
        ratio(small_bytes)
    );
    println!(
        "| evd combiner → closed-hours table | 1 | {bytes} | {} | {evd_secs:.2} | {:.0} |",
        ratio(bytes),
        events as f64 / evd_secs
    );
    match duck {
        Some((secs, duck_bytes)) => println!(
            "| DuckDB 1 thread: same files → one zstd file | 1 | {duck_bytes} | 1.00× | {secs:.2} | {:.0} |",
            events as f64 / secs
        ),
        None => println!("| DuckDB (python3 -m pip install duckdb) is not installed | | | | | |"),
    }
    if std::env::var_os("EVD_BENCH_KEEP").is_some() {
        println!("\nfiles kept in {}", dir.keep().display());
    }
}

/// DuckDB on one thread merging the consumer's files into one zstd file: (seconds,
/// bytes), or `None` without the duckdb module.
fn duckdb(dir: &std::path::Path) -> Option<(f64, u64)> {
    let script = r#"
import sys, time, os, duckdb
files, out = sys.argv[1:3]
con = duckdb.connect()
con.execute("SET threads=1")
t = time.perf_counter()
con.execute(f"COPY (SELECT * FROM read_parquet('{files}')) TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
print(time.perf_counter() - t, os.path.getsize(out))
"#;
    let files = dir.join("PageView").join("**").join("*.parquet");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(files)
        .arg(dir.join("duck.parquet"))
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("duckdb: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// `cargo test` runs the bench at a tiny size so it cannot rot (nothing is timed).
#[test]
fn runs_at_a_tiny_size() {
    run(&[3_000, 7]);
}
