//! Consumer throughput on one core: sealed batches → open (AEAD + zstd) → validate →
//! Arrow → zstd Parquet → commit on the local store, beside DuckDB (one thread)
//! turning the same lines from a JSONL file into zstd Parquet, and arrow-rs writing
//! the same rows straight from memory. Then sizes: evd's file beside DuckDB rewriting
//! the same rows and columns. Not a test: prints tables.
//!
//! `cargo run --release -p tests --bin consumer-bench -- [EVENTS]`

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use evd_consumer::commit::Output;
use evd_consumer::ledger::{FileEntry, Manifest};
use evd_consumer::parquet_out;
use evd_consumer::rows::Assembler;
use evd_schemas::wire::batch::{self, BatchMeta};
use evd_schemas::wire::record::put_record;
use evd_schemas::{Hour, Registry};
use object_store::local::LocalFileSystem;
use tests::agent_proc::{example_registry_dir, test_master_keyring};

fn registry() -> Result<Registry> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(example_registry_dir())? {
        let path = entry?.path();
        sources.push((path.display().to_string(), std::fs::read_to_string(&path)?));
    }
    Ok(Registry::from_sources(sources)?)
}

/// Where evd's time goes, in the order a batch meets each step.
#[derive(Clone, Copy)]
enum Phase {
    Open,
    Rows,
    Finish,
    Encode,
    Commit,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::Open,
        Phase::Rows,
        Phase::Finish,
        Phase::Encode,
        Phase::Commit,
    ];

    fn what(self) -> &'static str {
        match self {
            Phase::Open => "open: AEAD + zstd of the sealed batches",
            Phase::Rows => "rows: read and validate each event into the column builders",
            Phase::Finish => "finish: builders → Arrow arrays",
            Phase::Encode => "encode: Arrow → zstd Parquet in memory",
            Phase::Commit => "commit: staged upload, manifest, rename (local store)",
        }
    }
}

#[derive(Default)]
struct Phases([std::time::Duration; 5]);

impl Phases {
    fn add(&mut self, phase: Phase, took: std::time::Duration) {
        self.0[phase as usize] += took;
    }

    fn time<T>(&mut self, phase: Phase, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.add(phase, started.elapsed());
        out
    }

    fn print(&self, total_secs: f64) {
        println!("\n| evd's time by step | seconds | share |");
        println!("|---|---:|---:|");
        for phase in Phase::ALL {
            let secs = self.0[phase as usize].as_secs_f64();
            println!(
                "| {} | {secs:.3} | {:.0}% |",
                phase.what(),
                100.0 * secs / total_secs
            );
        }
    }
}

/// PageView lines only, so both sides write the same single table.
fn line(id: u64) -> String {
    tests::oracle::page_view_line(id, 180)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let events: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let registry = registry()?;
    let keys = test_master_keyring();
    let agent_keys = keys.derive_agent_keyring("bench");
    let hour = Hour(500_000);
    let json_bytes: u64 = (0..events).map(|i| line(i).len() as u64).sum();

    // Seal batches of 1,000 as an agent would (not timed).
    let mut sealed = Vec::new();
    for (seq, chunk) in (0..events).collect::<Vec<_>>().chunks(1000).enumerate() {
        let mut payload = Vec::new();
        for &id in chunk {
            put_record(
                &mut payload,
                id + 1,
                hour.start_ms() * 1000 + id as i64 % 1000,
                line(id).as_bytes(),
            );
        }
        let meta = BatchMeta {
            agent_id: "bench".into(),
            spool_id: evd_schemas::SpoolId(1),
            batch_seq: seq as u64 + 1,
            event_type: "PageView".into(),
            bucket_hour: hour,
            created_at_ms: 0,
            event_count: chunk.len() as u32,
        };
        sealed.push(batch::seal(&agent_keys, &meta, &payload, 1)?);
    }

    // evd: open, validate, assemble, encode, commit.
    let dir = tempfile::tempdir()?;
    let output = Output {
        store: Arc::new(LocalFileSystem::new_with_prefix(dir.path())?),
        prefix: Default::default(),
    };
    let started = Instant::now();
    let mut phases = Phases::default();
    let mut assembler = Assembler::default();
    for bytes in &sealed {
        let opened = phases.time(Phase::Open, || batch::open(&keys, bytes))?;
        phases
            .time(Phase::Rows, || assembler.add(&registry, &opened, hour))
            .map_err(anyhow::Error::msg)?;
    }
    let mut files = Vec::new();
    let mut staged = Vec::new();
    let mut parquet_bytes = 0;
    let finished = phases.time(Phase::Finish, || assembler.take());
    for (n, f) in finished.into_iter().enumerate() {
        let bytes = phases.time(Phase::Encode, || parquet_out::encode(&f.batch))?;
        parquet_bytes += bytes.len();
        files.push(FileEntry {
            staging: format!("_evd/staging/b/{n}.parquet"),
            final_path: format!("PageView/{}/b-{n}.parquet", f.hour.partition_path()),
            event_type: f.event_type,
            hour: f.hour.0,
            rows: f.batch.num_rows() as u64,
            bytes: bytes.len() as u64,
        });
        staged.push((format!("_evd/staging/b/{n}.parquet"), bytes));
    }
    let mut manifest = Manifest::of_files("b", "bench", 0, files);
    let commit_started = Instant::now();
    output.commit(&mut manifest, staged).await?;
    phases.add(Phase::Commit, commit_started.elapsed());
    let evd_secs = started.elapsed().as_secs_f64();

    // arrow-rs directly: the same rows from memory, same schema and writer settings.
    let schema = Arc::new(registry.get("PageView").unwrap().arrow_schema());
    let started = Instant::now();
    let ts = || TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let (mut received, mut tsb, mut agent, mut spool, mut eseq, mut bseq) = (
        ts(),
        ts(),
        StringBuilder::new(),
        StringBuilder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    let (mut user, mut url, mut referrer, mut load) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        Int64Builder::new(),
    );
    let pad = "x".repeat(180);
    for id in 0..events {
        received.append_value(hour.start_ms() * 1000 + id as i64 % 1000);
        tsb.append_value((1_795_000_000_000 + id as i64) * 1000);
        agent.append_value("bench");
        spool.append_value("0000000000000001");
        eseq.append_value(id as i64 + 1);
        bseq.append_value((id / 1000) as i64 + 1);
        user.append_value(format!("u{id}"));
        url.append_value(format!("/home/{pad}"));
        referrer.append_value("/search");
        load.append_value((id % 900) as i64);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(received.finish()),
        Arc::new(tsb.finish()),
        Arc::new(agent.finish()),
        Arc::new(spool.finish()),
        Arc::new(eseq.finish()),
        Arc::new(bseq.finish()),
        Arc::new(user.finish()),
        Arc::new(url.finish()),
        Arc::new(referrer.finish()),
        Arc::new(load.finish()),
    ];
    let batch = RecordBatch::try_new(schema, columns)?;
    let bytes = parquet_out::encode(&batch)?;
    std::fs::write(dir.path().join("direct.parquet"), &bytes)?;
    let direct_secs = started.elapsed().as_secs_f64();

    let duck = duckdb(dir.path(), events)?;

    let mb = json_bytes as f64 / 1e6;
    println!("\n| path (1 core) | events | seconds | events/s | JSON MB/s | Parquet bytes |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| evd: sealed batches → open → validate → Arrow → Parquet → commit | {events} | {evd_secs:.2} | {:.0} | {:.0} | {parquet_bytes} |",
        events as f64 / evd_secs,
        mb / evd_secs
    );
    println!(
        "| arrow-rs: same rows from memory → Parquet | {events} | {direct_secs:.2} | {:.0} | {:.0} | {} |",
        events as f64 / direct_secs,
        mb / direct_secs,
        bytes.len()
    );
    phases.print(evd_secs);
    match &duck {
        Some(d) => {
            println!(
                "| DuckDB 1 thread: same lines, JSONL file → zstd Parquet | {events} | {:.2} | {:.0} | {:.0} | {} |",
                d.secs,
                events as f64 / d.secs,
                mb / d.secs,
                d.bytes
            );
            println!("\n| same rows and columns | files | Parquet bytes | vs DuckDB |");
            println!("|---|---:|---:|---:|");
            println!(
                "| evd consumer | 1 | {parquet_bytes} | {:.2}× |",
                parquet_bytes as f64 / d.rewrite_bytes as f64
            );
            println!(
                "| DuckDB rewriting evd's file (zstd) | 1 | {} | 1.00× |",
                d.rewrite_bytes
            );
        }
        None => println!("| DuckDB (python3 -m pip install duckdb) is not installed | | | | | |"),
    }
    options_table(&batch, duck.as_ref().map(|d| d.rewrite_bytes))?;
    if std::env::var_os("EVD_BENCH_KEEP").is_some() {
        println!("\nfiles kept in {}", dir.keep().display());
    }
    Ok(())
}

/// The `[parquet]` options on the same rows: size and encode time of each, beside
/// DuckDB's zstd file of them (how the defaults were chosen).
fn options_table(batch: &RecordBatch, duck_bytes: Option<u64>) -> Result<()> {
    use evd_consumer::parquet_options::{Codec, Dictionary, ParquetOptions};
    let base = ParquetOptions::default();
    let with = |f: &dyn Fn(&mut ParquetOptions)| {
        let mut o = base.clone();
        f(&mut o);
        o
    };
    let cases: Vec<(&str, ParquetOptions)> = vec![
        (
            "default: zstd 3, 256Ki rows/group, dictionary auto",
            base.clone(),
        ),
        ("zstd 1", with(&|o| o.compression_level = Some(1))),
        ("zstd 9", with(&|o| o.compression_level = Some(9))),
        ("snappy", with(&|o| o.compression = Codec::Snappy)),
        ("gzip 6", with(&|o| o.compression = Codec::Gzip)),
        ("64Ki rows/group", with(&|o| o.row_group_rows = 64 * 1024)),
        ("1Mi rows/group", with(&|o| o.row_group_rows = 1 << 20)),
        (
            "pages of 20,000 rows (arrow-rs's default)",
            with(&|o| o.page_rows = 20_000),
        ),
        (
            "dictionary always",
            with(&|o| o.dictionary = Dictionary::Always),
        ),
        (
            "dictionary never",
            with(&|o| o.dictionary = Dictionary::Never),
        ),
        (
            "bloom filter on user_id",
            with(&|o| o.bloom_filter_columns = vec!["user_id".into()]),
        ),
    ];
    println!(
        "
| [parquet] options, same rows | Parquet bytes | vs DuckDB zstd | encode s |"
    );
    println!("|---|---:|---:|---:|");
    for (name, options) in cases {
        let started = Instant::now();
        let bytes = parquet_out::encode_with(batch, &options)?.len();
        let secs = started.elapsed().as_secs_f64();
        let ratio = duck_bytes.map_or("–".into(), |d| format!("{:.2}×", bytes as f64 / d as f64));
        println!("| {name} | {bytes} | {ratio} | {secs:.2} |");
    }
    Ok(())
}

struct Duck {
    secs: f64,
    bytes: u64,
    rewrite_bytes: u64,
}

/// DuckDB on one thread: the bench's lines as a JSONL file → zstd Parquet (timed inside
/// DuckDB's process, file already in the page cache), and evd's Parquet rewritten by
/// DuckDB for the size comparison. `None` when the duckdb module is missing.
fn duckdb(dir: &std::path::Path, events: u64) -> Result<Option<Duck>> {
    let jsonl = dir.join("lines.jsonl");
    let text: String = (0..events).map(|i| line(i) + "\n").collect();
    std::fs::write(&jsonl, text)?;
    let evd_files = dir.join("PageView").join("**").join("*.parquet");
    let script = r#"
import sys, time, os, duckdb
jsonl, evd_files, out, rewrite = sys.argv[1:5]
con = duckdb.connect()
con.execute("SET threads=1")
open(jsonl, "rb").read()
t = time.perf_counter()
con.execute(f"""COPY (SELECT * FROM read_json('{jsonl}', format='newline_delimited',
  columns={{'type':'VARCHAR','ts':'BIGINT','user_id':'VARCHAR','url':'VARCHAR',
           'referrer':'VARCHAR','load_ms':'BIGINT'}}))
  TO '{out}' (FORMAT parquet, COMPRESSION zstd)""")
secs = time.perf_counter() - t
con.execute(f"COPY (SELECT * FROM read_parquet('{evd_files}')) TO '{rewrite}' (FORMAT parquet, COMPRESSION zstd)")
print(secs, os.path.getsize(out), os.path.getsize(rewrite))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&jsonl)
        .arg(&evd_files)
        .arg(dir.join("duck.parquet"))
        .arg(dir.join("rewrite.parquet"))
        .output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named 'duckdb'") {
            return Ok(None);
        }
        anyhow::bail!("duckdb: {err}");
    }
    let text = String::from_utf8(out.stdout)?;
    let mut f = text.split_whitespace();
    let mut next = || {
        f.next()
            .ok_or_else(|| anyhow::anyhow!("duckdb printed {text:?}"))
    };
    Ok(Some(Duck {
        secs: next()?.parse()?,
        bytes: next()?.parse()?,
        rewrite_bytes: next()?.parse()?,
    }))
}
