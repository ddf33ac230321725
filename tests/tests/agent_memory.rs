//! The agent's memory does not grow with what it holds for Kafka. Before, the sender
//! spawned a task per sealed batch holding its bytes (and librdkafka a copy), and a
//! restart read every unacked batch of the spool into memory: a long Kafka outage with
//! a full spool (10 GiB by default) got the agent OOM-killed, again at every restart.
//! Now at most 32 sends are in flight and waiting batches hold at most 32 MiB; the
//! rest is read from the spool when its turn comes.
//!
//! `EVD_MEMORY_TEST_MIB` (default 512) sets how much goes through; the bound is 256 MiB.

use std::time::{Duration, Instant};

use evd_producer::client::{Response, send_lines};
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::bed::TestBed;

const BOUND_MIB: u64 = 256;

/// Peak resident memory of `pid` (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    rss_mib(pid, "VmHWM:")
}

/// A memory figure of `pid` from /proc (`VmRSS:`, `VmHWM:`), in MiB.
fn rss_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb / 1024
}

/// A PageView whose url is ~3 KB of noise zstd cannot shrink: sealed batches stay
/// about as large as their events.
fn noisy_line(id: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let noise: String = (0..3_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect();
    format!(r#"{{"type":"PageView","ts":1795000000000,"user_id":"u{id}","url":"/{noise}"}}"#)
}

async fn send_noise(agent: &AgentProcess, ids: std::ops::Range<u64>) -> u64 {
    let mut text = String::new();
    for id in ids {
        text.push_str(&noisy_line(id));
        text.push('\n');
    }
    let mut acked = 0;
    send_lines(
        &agent.socket(),
        std::io::Cursor::new(text.into_bytes()),
        |_, r| {
            if let Response::Ok(_) = r {
                acked += 1;
            }
        },
    )
    .await
    .unwrap();
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_while_kafka_is_down_and_after_a_restart() {
    let mib: u64 = std::env::var("EVD_MEMORY_TEST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let mut bed = TestBed::builder().mock(1).partitions(1).start().unwrap();
    bed.broker.mock().broker_down(1).unwrap();
    bed.add_agent("host-mem", AgentOptions::default()).unwrap();
    let mut agent = bed.agents.remove(0);
    let events = (mib << 20) / 3_100;
    let started = Instant::now();
    let mut acked = 0;
    let mut next = 0;
    while next < events {
        acked += send_noise(&agent, next..(next + 5_000).min(events)).await;
        next += 5_000;
        if next % 50_000 == 0 {
            let pid = agent.pid().unwrap();
            println!(
                "  {next} events in, {:.1}s: RSS {} MiB; sealed {:?}, sends waiting {:?}, in flight {:?}, bytes held {:?}",
                started.elapsed().as_secs_f64(),
                rss_mib(pid, "VmRSS:"),
                agent.metric("batches_sealed"),
                agent.metric("sends_waiting"),
                agent.metric("sends_in_flight"),
                agent.metric("send_bytes_held")
            );
        }
    }
    assert_eq!(
        acked, events,
        "the spool takes everything while Kafka is down"
    );
    let sealed = agent.metric("batches_sealed").unwrap_or(0);
    // Let the sender try (and fail) to send for a while.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let running = peak_rss_mib(agent.pid().unwrap());
    println!(
        "{mib} MiB ({events} events, {sealed} batches) into the spool in {:.1}s with Kafka down: agent peak RSS {running} MiB",
        started.elapsed().as_secs_f64()
    );
    assert!(
        running < BOUND_MIB,
        "peak RSS {running} MiB with Kafka down"
    );

    agent.restart().unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let restarted = peak_rss_mib(agent.pid().unwrap());
    println!("after a restart on that spool: agent peak RSS {restarted} MiB");
    assert!(
        restarted < BOUND_MIB,
        "peak RSS {restarted} MiB after a restart with a full spool"
    );
    assert!(agent.process.is_running(), "{}", agent.log_tail());
}
