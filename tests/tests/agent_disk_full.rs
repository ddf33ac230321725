//! Disk full under the agent: the spool lives on a 16 MiB tmpfs the test fills and
//! empties. The agent must refuse new events with "spool full" (not crash, not ack),
//! keep every acked event through a kill -9 on the full disk, accept again once space
//! returns, and deliver every acked event exactly once.
//!
//! Mounting a tmpfs needs root (or CAP_SYS_ADMIN); CI runs as root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use evd_producer::client::{Response, send_lines};
use tests::agent_proc::{AgentOptions, AgentProcess};
use tests::bed::{TestBed, agent_dir};
use tests::consumer_proc::{ConsumerOptions, assert_exactly_once, wait_drained, wait_settled};
use tests::oracle::{event_line_with_id, persistent_client};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a tmpfs at {} failed: this test needs root (CAP_SYS_ADMIN)",
            at.display()
        );
        Tmpfs(at.to_path_buf())
    }

    fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Sends ids `from..to`; returns (acked ids, refusal messages).
async fn send(agent: &AgentProcess, ids: std::ops::Range<u64>) -> (Vec<u64>, Vec<String>) {
    let ids: Vec<u64> = ids.collect();
    let mut text = String::new();
    for &id in &ids {
        text.push_str(&event_line_with_id(id));
        text.push('\n');
    }
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    send_lines(
        &agent.socket(),
        std::io::Cursor::new(text.into_bytes()),
        |n, r| match r {
            Response::Ok(_) => acked.push(ids[n as usize - 1]),
            Response::Error {
                error,
                code,
                retryable,
                ..
            } => {
                assert!(code == "spool_full" && retryable, "{error}");
                refused.push(error)
            }
        },
    )
    .await
    .expect("the agent answers every line");
    (acked, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_events_keeps_the_acked_and_recovers() {
    let mut bed = TestBed::builder().start().unwrap();
    let disk = Tmpfs::mount(&agent_dir(bed.dir.path(), "host-full").join("spool"), "16m");
    bed.add_agent("host-full", AgentOptions::default()).unwrap();
    // Owned here, so it stops before the tmpfs under its spool is unmounted.
    let mut agent = bed.agents.remove(0);

    // Leave 6 MiB: the spool keeps one segment (4 MiB) free for batching.
    let filler = disk.0.join("filler");
    let fill = disk.free_bytes() - (6 << 20);
    std::fs::write(&filler, vec![0u8; fill as usize]).unwrap();

    let mut acked = Vec::new();
    let mut next = 0;
    let refusal = loop {
        assert!(next < 100_000, "never refused");
        let (got, refused) = send(&agent, next..next + 1_000).await;
        next += 1_000;
        acked.extend(got);
        if let Some(r) = refused.first() {
            break r.clone();
        }
    };
    println!(
        "disk full after {} acked events: {refusal:?}; {} bytes free",
        acked.len(),
        disk.free_bytes()
    );
    assert!(refusal.starts_with("spool_full: disk full"), "{refusal}");
    assert!(agent.process.is_running(), "a full disk is not fatal");

    // kill -9 on the full disk: the agent starts again and still refuses.
    agent.restart().unwrap();
    let (got, refused) = send(&agent, next..next + 100).await;
    next += 100;
    acked.extend(&got);
    assert!(!refused.is_empty(), "still full after the restart");

    // Space returns: events are accepted again, and everything drains.
    std::fs::remove_file(&filler).unwrap();
    let (got, refused) = send(&agent, next..next + 1_000).await;
    next += 1_000;
    assert!(
        refused.is_empty(),
        "accepted once space returned: {refused:?}"
    );
    acked.extend(got);
    acked.extend(persistent_client(agent.socket(), (next..next + 1_000).collect()).await);
    next += 1_000;

    let out = bed.out();
    let consumer = bed.add_consumer(ConsumerOptions::default()).unwrap();
    let secs = wait_drained(&[&agent], &consumer.process, Duration::from_secs(120)).await;
    println!(
        "{} acked events drained {secs:.1}s after the consumer started",
        acked.len()
    );
    assert_exactly_once(&out, &acked, Some(next));
    assert!(
        agent.metric("refused_spool_full").unwrap_or(0) > 0,
        "refusals are counted"
    );
    drop(agent);
    drop(disk);
}

/// Writes to `path` until the disk refuses a byte more.
fn fill_completely(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    for small in [4096usize, 512, 1] {
        while f.write(&vec![0u8; small]).is_ok_and(|n| n > 0) {}
    }
}

/// Another process takes the whole disk, the spool's reserve for sealing and acking
/// included, while batches wait to be sealed and acks arrive. Before, ENOSPC on a
/// sealed or acked frame (or a segment rollover) was fatal, and the agent then could
/// not start either: it died here. Now it refuses events, keeps what it must still
/// write, and once space returns every acked event is delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_another_process_fills_is_survived() {
    let mut bed = TestBed::builder()
        .consumer(ConsumerOptions::default())
        .start()
        .unwrap();
    let disk = Tmpfs::mount(
        &agent_dir(bed.dir.path(), "host-filled").join("spool"),
        "16m",
    );
    let opts = AgentOptions {
        // Accepted events wait 2 s for their batch: the seal comes after the fill.
        tail: "[batch]\nmax_age_ms = 2000\n".into(),
        ..AgentOptions::default()
    };
    bed.add_agent("host-filled", opts).unwrap();
    // Owned here, so it stops before the tmpfs under its spool is unmounted.
    let mut agent = bed.agents.remove(0);
    let consumer = bed.consumer();
    let (mut acked, refused) = send(&agent, 0..3_000).await;
    assert!(refused.is_empty(), "{refused:?}");
    let filler = disk.0.join("filler");
    fill_completely(&filler);
    let mut next = 3_000;
    let mut refusals = 0;
    for _ in 0..10 {
        let (got, refused) = send(&agent, next..next + 100).await;
        next += 100;
        refusals += refused.len();
        acked.extend(got);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            agent.process.is_running(),
            "the agent died on the full disk:\n{}",
            agent.log_tail()
        );
    }
    println!(
        "disk filled by another process: {refusals} events refused, {} bytes free, {:?} deferred writes",
        disk.free_bytes(),
        agent.metric("spool_disk_full_deferrals")
    );
    assert!(refusals > 0, "a full disk refuses new events");

    std::fs::remove_file(&filler).unwrap();
    acked.extend(persistent_client(agent.socket(), (next..next + 2_000).collect()).await);
    next += 2_000;
    // This agent seals a batch 2 s after its first event.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_settled(&agent, &consumer.process, Duration::from_secs(120)).await;
    assert!(agent.process.is_running(), "{}", agent.log_tail());
    assert_exactly_once(&bed.out(), &acked, Some(next));
    drop(agent);
    drop(disk);
}
