//! The tailer wakes up when a watched file changes: with a 3 s poll interval (the
//! most the default dedup window allows), each of 5 lines written at random moments
//! is read within 1 s. By polling alone each would wait 0–3 s, so all five within 1 s
//! happens with a chance of 1 in 243.

use std::io::Write;
use std::time::{Duration, Instant};

use tests::MockBroker;
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::oracle::event_line;
use tests::rng::Rng;

#[test]
fn a_written_line_is_read_at_once_not_at_the_next_poll() {
    let mut rng = Rng::from_env("tail_wake");
    let mock = MockBroker::start(1).unwrap();
    mock.create_pipeline_topics(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let opts = AgentOptions {
        tail: format!(
            "[[sources]]\nkind = \"file\"\nname = \"app\"\ninclude = [\"{}/*.log\"]\nevent_type = \"PageView\"\nformat = \"json\"\n[tailer]\npoll_interval_ms = 3000\n",
            logs.display()
        ),
        ..AgentOptions::default()
    };
    let agent = AgentProcess::start(dir.path(), "host-w", mock.bootstrap(), opts).unwrap();
    let mut file = std::fs::File::create(logs.join("app.log")).unwrap();
    // The agent finds the (empty) file and settles into its poll interval.
    std::thread::sleep(Duration::from_millis(3_500));
    let mut waits = Vec::new();
    for n in 1..=5u64 {
        std::thread::sleep(Duration::from_millis(rng.range(200, 3_000)));
        writeln!(file, "{}", event_line(n * 5)).unwrap();
        let written = Instant::now();
        while agent.metric("tail_lines_read").unwrap_or(0) < n {
            assert!(
                written.elapsed() < Duration::from_secs(10),
                "line {n} never read"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        waits.push(written.elapsed());
    }
    println!("read after {waits:?}");
    assert!(
        waits.iter().all(|w| *w < Duration::from_secs(1)),
        "lines waited for the poll: {waits:?}"
    );
}
