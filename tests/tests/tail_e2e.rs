//! The tailer end to end: a service logs JSON lines into a file that is rotated
//! (rename + create, like logrotate's `create`: unique names, or logrotate's numbered
//! cascade) while the agent is killed with SIGKILL. Every line must be in Parquet
//! exactly once. The pattern matches the rotated names too (`app.log*`), as the
//! agent's docs advise for rename rotation: a file created and rotated while the agent
//! is down is still read.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use tests::agent_proc::{AgentOptions, test_master_keyring};
use tests::bed::TestBed;
use tests::consumer_proc::{ConsumerOptions, assert_exactly_once, wait_drained};
use tests::oracle::{TestReader, event_line};
use tests::rng::Rng;

/// How the service rotates its log.
#[derive(Clone, Copy)]
enum Rotation {
    /// `app.log` → `app.log.<n>` with a new n each time (logrotate's `dateext` style).
    Unique,
    /// logrotate's numbered cascade: `app.log.2` → `app.log.3`, `app.log.1` →
    /// `app.log.2`, `app.log` → `app.log.1`: every rotated file moves again.
    Cascade,
}

/// Writes lines `0..total` to `logs/app.log` at about `per_sec`, rotating every
/// `every` lines. Returns the number of rotations.
fn service(logs: &Path, total: u64, per_sec: u64, every: u64, rotation: Rotation) -> u64 {
    let active = logs.join("app.log");
    let mut file = std::fs::File::create(&active).unwrap();
    let started = Instant::now();
    let mut rotations = 0;
    let mut buf = Vec::new();
    for id in 0..total {
        if id > 0 && id % every == 0 {
            file.write_all(&buf).unwrap();
            buf.clear();
            rotations += 1;
            match rotation {
                Rotation::Unique => {
                    std::fs::rename(&active, logs.join(format!("app.log.{rotations}"))).unwrap()
                }
                Rotation::Cascade => {
                    for n in (1..rotations).rev() {
                        let from = logs.join(format!("app.log.{n}"));
                        std::fs::rename(&from, logs.join(format!("app.log.{}", n + 1))).unwrap();
                    }
                    std::fs::rename(&active, logs.join("app.log.1")).unwrap();
                }
            }
            file = std::fs::File::create(&active).unwrap();
        }
        buf.extend_from_slice(event_line(id).as_bytes());
        buf.push(b'\n');
        if id % 1_000 == 999 {
            file.write_all(&buf).unwrap();
            buf.clear();
            let due = Duration::from_secs_f64((id + 1) as f64 / per_sec as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    file.write_all(&buf).unwrap();
    rotations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rotated_lines_survive_10_agent_kill_9s() {
    let total: u64 = std::env::var("EVD_TAIL_E2E_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    run("tail_e2e", total, 50_000, Rotation::Unique, 10).await;
}

/// logrotate's numbered cascade every 30,000 lines, 600,000 lines, 8 kills: before
/// unclaimed resume points outlived the first scan after a restart, 3 runs in 6 read
/// one or two whole rotated files a second time under their new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logrotate_cascade_survives_8_agent_kill_9s() {
    run("tail_e2e_cascade", 600_000, 30_000, Rotation::Cascade, 8).await;
}

async fn run(name: &str, total: u64, every: u64, rotation: Rotation, kills: u64) {
    let mut rng = Rng::from_env(name);
    let per_sec = 25_000;
    let mut bed = TestBed::builder()
        .consumer(ConsumerOptions::default())
        .start()
        .unwrap();
    let logs = bed.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let opts = AgentOptions {
        retransmit_after_ms: 5_000,
        tail: format!(
            "[[sources]]\nkind = \"file\"\ninclude = [\"{}/app.log*\"]\nevent_type = \"PageView\"\nformat = \"json\"\n",
            logs.display()
        ),
        ..AgentOptions::default()
    };
    bed.add_agent("host-tail", opts).unwrap();
    let mut agent = bed.agents.remove(0);
    let (consumer, out) = (bed.consumer(), bed.out());

    let writer_logs = logs.clone();
    let writer = std::thread::spawn(move || service(&writer_logs, total, per_sec, every, rotation));
    let run_ms = total * 1000 / per_sec;
    let kill_at: Vec<u64> = (0..kills)
        .map(|_| rng.range(run_ms / (kills + 2), run_ms / kills))
        .collect();
    let killer = tokio::task::spawn_blocking(move || {
        for (n, pause) in kill_at.into_iter().enumerate() {
            std::thread::sleep(Duration::from_millis(pause));
            agent
                .restart()
                .unwrap_or_else(|e| panic!("restart {n}: {e:#}"));
        }
        agent
    });
    let rotations = writer.join().unwrap();
    let agent = killer.await.unwrap();
    println!("{name}: {total} lines written, {rotations} rotations, {kills} agent kill -9s");

    let all: Vec<u64> = (0..total).collect();
    let bootstrap = bed.bootstrap();
    let started = Instant::now();
    let expected = all.clone();
    let missing = tokio::task::spawn_blocking(move || {
        let mut reader = TestReader::new(&bootstrap, test_master_keyring(), false).unwrap();
        reader.wait_for(&expected, Duration::from_secs(300))
    })
    .await
    .unwrap();
    assert!(
        missing.is_empty(),
        "{} lines never reached Kafka, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        agent.log_tail()
    );
    println!(
        "every line in Kafka {:.1}s after the writer stopped",
        started.elapsed().as_secs_f64()
    );
    let secs = wait_drained(&[&agent], &consumer.process, Duration::from_secs(240)).await;
    println!("spool drained {secs:.1}s later");
    assert_exactly_once(&out, &all, Some(total));
}
