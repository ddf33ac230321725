//! The Python reference client (`clients/python/evd_client.py`) against a real agent
//! that is killed with `kill -9` while it sends: every good line is acked once the
//! client is done (it reconnects and resends the unanswered ones, with the event ids it
//! gave them), bad lines are refused with their codes, and each acked event is in
//! Parquet exactly once.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tests::agent_proc::AgentOptions;
use tests::bed::TestBed;
use tests::consumer_proc::{
    ConsumerOptions, assert_exactly_once, count_rows, wait_drained, wait_settled,
};
use tests::oracle::event_line;
use tests::rng::Rng;

/// Lines that can never be accepted, at these positions, with the code each gets.
const BAD: [(usize, &str, &str); 3] = [
    (7, "{not json", "json"),
    (1_500, r#"{"type":"NoSuchType","ts":1}"#, "unknown_type"),
    (
        9_000,
        r#"{"type":"PageView","ts":1,"user_id":"u"}"#,
        "schema",
    ),
];

fn send_file_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/python/send_file.py")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_resends_across_agent_kill_9s_and_each_event_lands_once() {
    let mut rng = Rng::from_env("python_client");
    let total: u64 = std::env::var("EVD_E2E_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(40_000, |n: u64| n.clamp(10_000, 40_000));
    let mut bed = TestBed::builder()
        .consumer(ConsumerOptions::default())
        .agent(
            "host-py",
            AgentOptions {
                retransmit_after_ms: 5_000,
                ..AgentOptions::default()
            },
        )
        .start()
        .unwrap();
    let mut agent = bed.agents.remove(0);
    let (consumer, out) = (bed.consumer(), bed.out());

    // The file: good lines (ids 0..total, no event ids: the client adds them) with
    // the bad ones slotted in.
    let mut lines: Vec<String> = (0..total).map(event_line).collect();
    for (at, line, _) in BAD {
        lines.insert(at, line.to_string());
    }
    let file = bed.dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let socket = agent.socket();
    let client = std::thread::spawn(move || {
        Command::new("python3")
            .arg(send_file_script())
            .arg(&socket)
            .arg(&file)
            .output()
            .expect("python3 runs")
    });
    let kills = 5;
    for n in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.range(100, 400)));
        agent
            .restart()
            .unwrap_or_else(|e| panic!("restart {n}: {e:#}"));
    }
    let output = client.join().unwrap();
    assert!(
        output.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let refused: Vec<(usize, String)> = report["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_u64().unwrap() as usize,
                r[1].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(usize, String)> = BAD
        .iter()
        .map(|(at, _, code)| (*at, code.to_string()))
        .collect();
    assert_eq!(refused, want, "bad lines refused with their codes");
    // Line index → id, skipping the bad lines.
    let ids: Vec<u64> = report["acked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let n = n.as_u64().unwrap() as usize;
            (n - BAD.iter().filter(|(at, _, _)| *at < n).count()) as u64
        })
        .collect();
    assert_eq!(ids.len() as u64, total, "every good line acked");
    println!(
        "{total} events acked by the Python client across {kills} agent kill -9s ({} reconnects)",
        report["reconnects"]
    );
    // The last agent process may have sealed nothing (the client can finish before
    // the kills do), so wait for the rows themselves, then for the spool to drain.
    let started = std::time::Instant::now();
    while count_rows(&out).map_or(0, |(rows, _)| rows) < total {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "rows never reached {total}: {}",
            consumer.process.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_drained(&[&agent], &consumer.process, Duration::from_secs(180)).await;
    assert_exactly_once(&out, &ids, Some(total));
}

/// Backpressure: a spool of 16 MiB fills long before 120k events are sent; the client
/// backs off on `spool_full` and sends again as the consumer's acks free the spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_backs_off_on_spool_full_and_every_event_lands_once() {
    let total = 120_000u64;
    let bed = TestBed::builder()
        .consumer(ConsumerOptions::default())
        .agent(
            "host-full",
            AgentOptions {
                spool_extra: "max_bytes = 16777216".into(),
                ..AgentOptions::default()
            },
        )
        .start()
        .unwrap();
    let (agent, consumer, out) = (bed.agent(), bed.consumer(), bed.out());
    let lines: Vec<String> = (0..total).map(event_line).collect();
    let file = bed.dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let output = Command::new("python3")
        .arg(send_file_script())
        .arg(agent.socket())
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["acked"].as_array().unwrap().len() as u64, total);
    let refused = agent.metric("refused_spool_full").unwrap_or(0);
    println!(
        "{total} events acked; the agent refused {refused} lines with spool_full, the client retried {}",
        report["retries"]
    );
    assert!(
        refused > 0,
        "the spool never filled: the test tests nothing"
    );
    wait_settled(agent, &consumer.process, Duration::from_secs(180)).await;
    let ids: Vec<u64> = (0..total).collect();
    assert_exactly_once(&out, &ids, Some(total));
}
