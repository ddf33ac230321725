//! The dashboard as on-call sees it, in headless Chromium: 12 hours of three hosts
//! and three types run through the real auditor core (real Parquet, scans, closing),
//! with one PageView batch of host-2 lost and one slow hour. The grid's red cell must
//! show what is missing, its drill-down must name host-2 and the lost batch seq, the
//! hosts page must put the loss on host-2, the timeliness chart must mark the slow
//! hour over the deadline, and times must be shown in the viewer's zone.
//!
//! Screenshots go to the test's temp dir; with `EVD_UPDATE_SCREENSHOTS=1` also to
//! `docs/` (the README shows them).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use evd_consumer::commit::Output;
use evd_ops::auditor::{Seen, Shared, close_due, scan};
use evd_ops::config::OpsConfig;
use evd_producer::clock::Clock;
use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord, Heartbeat};
use evd_schemas::{Hour, SpoolId};

const HOSTS: [&str; 3] = ["host-1", "host-2", "host-3"];
const TYPES: [&str; 3] = ["PageView", "EndSong", "SearchViewResponse"];
const HOURS: u32 = 12;
const EVENTS: u64 = 400;
const SPOOL: SpoolId = SpoolId(0x5eed);
/// host-2's PageView batch of this hour (counted from the first) is lost.
const LOSSY_HOUR: u32 = 8;
/// Every type's files of this hour are committed 50 min after it ends.
const SLOW_HOUR: u32 = 5;

/// A clock the test moves.
struct Moving(AtomicI64);

impl Clock for Moving {
    fn now_us(&self) -> i64 {
        self.0.load(Ordering::Relaxed) * 1000
    }
}

fn config() -> OpsConfig {
    OpsConfig::from_toml(
        "ops.toml",
        "registry_dir = \"r\"\nkeyring_path = \"k\"\noutput_url = \"file:///unused\"\n\
         late_after_ms = 600000\ndeadline_high_ms = 1800000\ndeadline_normal_ms = 7200000\n\
         deadline_low_ms = 21600000\n[kafka]\nbootstrap_servers = \"unused\"\n",
    )
    .unwrap()
}

/// The audit columns of one batch's rows: received in the hour's last 8 minutes,
/// `late_ms` after their ts.
fn rows(agent: &str, hour: Hour, seq: u64, late_ms: i64) -> RecordBatch {
    let n = EVENTS as usize;
    let received: Vec<i64> = (0..n as i64)
        .map(|i| (hour.end_ms() - 60_000 - i * 1_000) * 1000)
        .collect();
    let ts: Vec<i64> = received.iter().map(|r| r - late_ms * 1000).collect();
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "received_at",
            Arc::new(TimestampMicrosecondArray::from(received).with_timezone("UTC")),
        ),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
        ),
        ("agent_id", Arc::new(StringArray::from(vec![agent; n]))),
        (
            "spool_id",
            Arc::new(StringArray::from(vec![SPOOL.to_string(); n])),
        ),
        (
            "event_seq",
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
        ),
        ("batch_seq", Arc::new(Int64Array::from(vec![seq as i64; n]))),
    ];
    RecordBatch::try_from_iter(cols).unwrap()
}

async fn commit(output: &Output, ty: &str, hour: Hour, agent: &str, seq: u64, late_ms: i64) {
    let bytes = evd_consumer::parquet_out::encode(&rows(agent, hour, seq, late_ms)).unwrap();
    support::commit_file(
        output,
        &format!("f-{ty}-{agent}-{seq}"),
        ty,
        hour,
        EVENTS,
        bytes,
    )
    .await;
}

/// Runs the 12 hours through the auditor; returns the state, the lossy hour and the
/// lost batch seq.
async fn history(dir: &Path) -> (Arc<Shared>, Hour, u64) {
    let output = support::output(dir);
    let config = config();
    let real_now = evd_schemas::clock::unix_now_ms();
    let first = Hour(Hour::from_unix_ms(real_now).0 - HOURS);
    let clock = Arc::new(Moving(AtomicI64::new(first.start_ms())));
    let shared = Shared::new(&support::registry(), config.policy(), clock.clone(), 48);
    shared.mark_audit_caught_up();
    let mut seen = Seen::default();
    let mut lost = 0;
    for i in 0..HOURS {
        let hour = Hour(first.0 + i);
        for (h, host) in HOSTS.iter().enumerate() {
            for (t, ty) in TYPES.iter().enumerate() {
                let seq = u64::from(i) * 3 + t as u64 + 1;
                shared.state().on_audit(&AuditRecord {
                    agent_id: host.to_string(),
                    spool_id: SPOOL,
                    at_ms: hour.start_ms() + 1_000,
                    body: AuditBody::Announcement(Announcement {
                        event_type: ty.to_string(),
                        bucket_hour: hour,
                        batch_seq: seq,
                        event_count: EVENTS as u32,
                    }),
                });
                if i == LOSSY_HOUR && *host == "host-2" && *ty == "PageView" {
                    lost = seq;
                    continue;
                }
                let late_ms = [2_000, 40_000, 400_000][(h + t + i as usize) % 3];
                commit(&output, ty, hour, host, seq, late_ms).await;
            }
        }
        let delay_ms = if i == SLOW_HOUR { 50 * 60_000 } else { 90_000 };
        clock.0.store(hour.end_ms() + delay_ms, Ordering::Relaxed);
        scan(&output, &shared, &mut seen).await.unwrap();
        for host in HOSTS {
            shared.state().on_audit(&AuditRecord {
                agent_id: host.into(),
                spool_id: SPOOL,
                at_ms: hour.end_ms() + 60_000,
                body: AuditBody::Heartbeat(Heartbeat {
                    started_at_ms: first.start_ms(),
                    spool_bytes: 3 << 20,
                    unacked_batches: 2,
                    oldest_unacked_ms: hour.end_ms() - 40_000,
                    next_batch_seq: u64::from(i) * 3 + 4,
                    final_before_hour: hour.next(),
                }),
            });
        }
        close_due(&config, &output, &shared, &mut seen)
            .await
            .unwrap();
    }
    // Now: an hour after the last one ended, past every high-tier deadline.
    let last = Hour(first.0 + HOURS - 1);
    clock
        .0
        .store(last.end_ms() + 60 * 60_000, Ordering::Relaxed);
    scan(&output, &shared, &mut seen).await.unwrap();
    close_due(&config, &output, &shared, &mut seen)
        .await
        .unwrap();
    (shared, Hour(first.0 + LOSSY_HOUR), lost)
}

fn serve(shared: Arc<Shared>) -> String {
    format!("http://{}", support::serve(shared))
}

fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .expect(
            "headless Chromium is needed (scripts/install-test-deps installs Debian's chromium)",
        )
}

/// Chromium in a zone of its own (UTC+05:30, so local times cannot pass for UTC).
fn browser(profile: &Path) -> Command {
    let mut c = Command::new(chromium());
    c.env("TZ", "Asia/Kolkata").args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        &format!("--user-data-dir={}", profile.display()),
    ]);
    c
}

fn dom(profile: &Path, url: &str) -> String {
    let out = browser(profile)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screenshot(profile: &Path, url: &str, name: &str, size: &str) {
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_file(&shot);
    let out = browser(profile)
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("--window-size={size}"))
        .arg(url)
        .output()
        .unwrap();
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1_000),
        "no screenshot of {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if std::env::var_os("EVD_UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs")
            .join(name);
        std::fs::copy(&shot, docs).unwrap();
    }
    println!("screenshot: {}", shot.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_call_sees_what_is_missing_where_and_when_in_local_time() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, lossy, lost_seq) = history(dir.path()).await;
    let url = serve(shared);
    let profile = tempfile::tempdir().unwrap();

    // The grid: the lossy cell is red and says how many events are missing.
    let grid = dom(profile.path(), &format!("{url}/"));
    let cell = format!(
        "data-type=\"PageView\" data-hour=\"{}\" data-state=\"incomplete\" data-missing=\"{EVENTS}\"",
        lossy.0
    );
    assert!(grid.contains(&cell), "no {cell} in:\n{grid}");
    assert!(grid.contains(&format!(">−{EVENTS}</a>")), "{grid}");
    assert!(
        grid.contains("times in Asia/Kolkata") || grid.contains("times in Asia/Calcutta"),
        "the zone is named"
    );
    // Column headers are local times of day: :30 past in UTC+05:30.
    assert!(
        grid.contains(":30 PM</time>") || grid.contains(":30</time>"),
        "{grid}"
    );

    // The drill-down names the host and the lost batch.
    let detail = dom(profile.path(), &format!("{url}/hour/PageView/{}", lossy.0));
    let row = format!("data-agent=\"host-2\" data-missing-seqs=\"{lost_seq}\"");
    assert!(detail.contains(&row), "no {row} in:\n{detail}");

    // Hosts: the loss is on host-2, linked to its cell.
    let hosts = dom(profile.path(), &format!("{url}/hosts"));
    let link = format!(
        "href=\"/hour/PageView/{}\">PageView {lossy}: {EVENTS}</a>",
        lossy.0
    );
    assert!(hosts.contains(&link), "no {link} in:\n{hosts}");
    assert!(
        hosts.contains("<tr class=\"ok\" data-agent=\"host-1\"")
            || hosts.contains("<tr class=ok data-agent=\"host-1\""),
        "host-1 misses nothing:\n{hosts}"
    );

    // Timeliness: the slow hour is over the high tier's 30 min deadline.
    let timeliness = dom(profile.path(), &format!("{url}/timeliness"));
    let page_view = timeliness
        .split("<section")
        .find(|s| s.contains("data-type=\"PageView\""))
        .expect("a PageView chart");
    assert_eq!(
        page_view.matches("class=\"over\"").count(),
        1,
        "{page_view}"
    );
    assert!(
        page_view.contains(&format!("data-within=\"{}\"", HOURS - 1)),
        "{page_view}"
    );

    screenshot(
        profile.path(),
        &format!("{url}/"),
        "dashboard.png",
        "1500,420",
    );
    screenshot(
        profile.path(),
        &format!("{url}/hour/PageView/{}", lossy.0),
        "dashboard-hour.png",
        "1100,700",
    );
    screenshot(
        profile.path(),
        &format!("{url}/timeliness"),
        "dashboard-timeliness.png",
        "800,640",
    );
}
