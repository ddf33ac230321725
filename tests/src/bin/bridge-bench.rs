//! Bridge throughput between two local clusters (two MockClusters), beside kcat
//! consuming from one and producing to the other (`kcat -C | kcat -P`). Not a test:
//! prints a table.
//!
//! `cargo run --release -p tests --bin bridge-bench -- [RECORDS] [VALUE_BYTES]`
//! (a MockCluster partition keeps only a few MiB: about 70 MB in all here).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use evd_bridge::{BridgeConfig, BridgeParts, CancellationToken, Metrics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tests::MockBroker;
use tests::kafka::client_config;

const TOPIC: &str = "evd.events.PageView";
const PARTITIONS: i32 = 48;

/// Writes `records` records to the source; returns that number once the source is
/// seen to hold them all.
fn fill(bootstrap: &str, records: u64, value_bytes: usize) -> Result<i64> {
    let producer: BaseProducer = client_config(bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let value = "x".repeat(value_bytes);
    for i in 0..records {
        let key = format!("agent-{}", i % 16);
        let mut record = BaseRecord::to(TOPIC).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let consumer: BaseConsumer = client_config(bootstrap).create()?;
    let mut retained = 0;
    for p in 0..PARTITIONS {
        let (low, high) = consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(5))?;
        retained += high - low;
    }
    ensure!(
        retained == records as i64,
        "the MockCluster kept only {retained} of {records} records (it keeps a few MiB per \
         partition): use fewer or smaller records"
    );
    Ok(retained)
}

/// Records ever written to `topic`: its high watermarks summed. (A MockCluster keeps
/// only a few MiB per partition, so the data set is spread over `PARTITIONS`
/// partitions.) The partitions are asked at once: asked one after another, a count
/// took 48 round trips, about a second at 20 ms, which hid what the copiers did.
fn count(consumer: &BaseConsumer, topic: &str) -> Result<i64> {
    std::thread::scope(|scope| {
        let asks: Vec<_> = (0..PARTITIONS)
            .map(|p| {
                scope.spawn(move || consumer.fetch_watermarks(topic, p, Duration::from_secs(5)))
            })
            .collect();
        let mut total = 0;
        for ask in asks {
            total += ask.join().expect("watermark thread")?.1;
        }
        Ok(total)
    })
}

/// Waits until `topic` holds `want` records; returns the seconds from its first record
/// to its last (so start-up, such as joining a group, is not counted). `alive` says
/// whether the copier still runs.
fn copy_seconds(bootstrap: &str, topic: &str, want: i64, alive: impl Fn() -> bool) -> Result<f64> {
    let consumer: BaseConsumer = client_config(bootstrap).create()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    loop {
        let n = count(&consumer, topic)?;
        if n > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if n >= want {
            return Ok(first.expect("set above").elapsed().as_secs_f64());
        }
        ensure!(
            Instant::now() < deadline,
            "{topic} never reached {want} records"
        );
        ensure!(alive(), "the copier stopped early");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two clusters with the topic; the central one `rtt` away (a long link).
fn clusters(rtt: Duration) -> Result<(MockBroker, MockBroker)> {
    let edge = MockBroker::start(1)?;
    let central = MockBroker::start(1)?;
    edge.create_topic(TOPIC, PARTITIONS)?;
    central.create_topic(TOPIC, PARTITIONS)?;
    if !rtt.is_zero() {
        central.round_trip_time(1, rtt)?;
    }
    Ok((edge, central))
}

fn evd_bridge(records: u64, value_bytes: usize, rtt: Duration) -> Result<f64> {
    let (edge, central) = clusters(rtt)?;
    let held = fill(edge.bootstrap(), records, value_bytes)?;
    let config = BridgeConfig::from_toml(
        "bench",
        &format!(
            "[edge]\nbootstrap_servers = \"{}\"\n[central]\nbootstrap_servers = \"{}\"\n\
             [forward]\ntopics = [\"{TOPIC}\"]\n[reverse]\nenabled = false\n[tuning]\nbatch_bytes = 1000000\n",
            edge.bootstrap(),
            central.bootstrap()
        ),
    )?;
    let stop = CancellationToken::new();
    let s = stop.clone();
    let parts = BridgeParts {
        config,
        metrics: Arc::new(Metrics::default()),
    };
    let bridge = std::thread::spawn(move || evd_bridge::run(parts, s));
    let secs = copy_seconds(central.bootstrap(), TOPIC, held, || !bridge.is_finished());
    stop.cancel();
    bridge.join().expect("bridge thread")?;
    secs
}

fn kcat_pipe(records: u64, value_bytes: usize, rtt: Duration) -> Result<Option<f64>> {
    if Command::new("kcat").arg("-V").output().is_err() {
        return Ok(None);
    }
    let (edge, central) = clusters(rtt)?;
    let held = fill(edge.bootstrap(), records, value_bytes)?;
    let mut consume = Command::new("kcat")
        .args([
            "-C",
            "-b",
            edge.bootstrap(),
            "-t",
            TOPIC,
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .args(["-f", "%k\t%s\n"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut produce = Command::new("kcat")
        .args(["-P", "-b", central.bootstrap(), "-t", TOPIC, "-K", "\t"])
        .args(["-X", "enable.idempotence=true", "-X", "acks=all"])
        .stdin(consume.stdout.take().expect("piped"))
        .spawn()?;
    let secs = copy_seconds(central.bootstrap(), TOPIC, held, || true);
    consume.wait()?;
    ensure!(produce.wait()?.success(), "kcat -P failed");
    Ok(Some(secs?))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let records: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(60_000);
    let value_bytes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000);
    let mb = records as f64 * value_bytes as f64 / 1e6;
    println!("Both copy with acks=all and an idempotent producer.\n");
    println!("| what | records | value bytes | seconds | records/s | MB/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    let row = |what: &str, secs: f64| {
        println!(
            "| {what} | {records} | {value_bytes} | {secs:.2} | {:.0} | {:.1} |",
            records as f64 / secs,
            mb / secs
        );
    };
    for rtt_ms in [0, 20] {
        let rtt = Duration::from_millis(rtt_ms);
        let link = if rtt_ms == 0 {
            String::new()
        } else {
            format!(", central {rtt_ms} ms away")
        };
        row(
            &format!("evd bridge{link}"),
            evd_bridge(records, value_bytes, rtt)?,
        );
        match kcat_pipe(records, value_bytes, rtt)? {
            Some(secs) => row(&format!("kcat -C \\| kcat -P{link}"), secs),
            None => println!("| kcat not installed | | | | | |"),
        }
    }
    Ok(())
}
