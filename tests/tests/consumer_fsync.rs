//! A `file://` output is durable before the consumer commits offsets and sends
//! end-to-end acks: every flush fsyncs its files and their directories. Before,
//! object_store's `LocalFileSystem` ran with fsync off (its default): a consumer that
//! committed, offset-committed and acked 2,000 events made 0 fsync calls, so a power
//! loss could take hours whose spools were already freed.
//!
//! Counted with `strace` attached to the consumer (Debian's `strace`, installed by
//! `scripts/install-test-deps`).

use std::process::{Command, Stdio};
use std::time::Duration;

use tests::agent_proc::AgentOptions;
use tests::bed::TestBed;
use tests::consumer_proc::{ConsumerOptions, assert_exactly_once, wait_settled};
use tests::oracle::send_ids;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flush_of_a_file_output_is_fsynced() {
    let mut bed = TestBed::builder()
        .consumer(ConsumerOptions::default())
        .start()
        .unwrap();
    let consumer = bed.consumers.remove(0);
    let out = bed.out();
    let trace = bed.dir.path().join("fsyncs.txt");
    let pid = consumer.process.pid().unwrap().to_string();
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .args(["-p", &pid])
        .stderr(Stdio::null())
        .spawn()
        .expect("strace (scripts/install-test-deps installs it)");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let agent = bed.add_agent("host-f", AgentOptions::default()).unwrap();
    let acked = send_ids(&agent.socket(), 0..2_000).await.unwrap();
    wait_settled(agent, &consumer.process, Duration::from_secs(120)).await;
    let flushes = consumer.process.metric("flushes").unwrap();
    // SIGINT detaches strace and flushes its output.
    unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
    strace.wait().unwrap();
    let text = std::fs::read_to_string(&trace).unwrap();
    let syncs = text
        .lines()
        .filter(|l| l.contains("fsync(") || l.contains("fdatasync("))
        .count() as u64;
    println!("{flushes} flushes, {syncs} fsync/fdatasync calls by the consumer");
    assert!(flushes > 0);
    // Per flush at least: the staged file, `pending`, the manifest, the final file and
    // `done`, each file and its directory.
    assert!(
        syncs >= 5 * flushes,
        "{syncs} fsyncs for {flushes} flushes: the output is not made durable"
    );
    assert_exactly_once(&out, &acked, Some(2_000));
}
