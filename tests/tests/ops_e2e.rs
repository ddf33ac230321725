//! The auditor end to end: agent → Kafka (mock cluster) → consumer → Parquet, and
//! `evd ops` over it, all moved through hours by an injected clock.
//!
//! One run shows: hours close with markers whose counts are right; a consumer that
//! loses a batch while claiming it delivered (`EVD_TEST_LOSE_BATCH_SEQ`) is caught,
//! naming the host and the batch seq; late data after a close goes to the open hour and
//! is counted as skew, the closed folder unchanged; `evd ops status` exits non-zero on
//! data loss; the dashboard, loaded in headless Chromium, shows the loss.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evd_schemas::Hour;
use serde_json::Value;
use tests::auditor_proc::AuditorOptions;
use tests::clocked::ClockedBed;
use tests::consumer_proc::{ConsumerOptions, read_back};
use tests::oracle::{TYPES, send_ids};
use tests::process::evd_binary;

const LOST_SEQ: u64 = 3;
const PER_HOUR: u64 = 2_000;

/// Every `_CLOSED.json` under `out`, by (type, hour number).
fn markers(out: &Path) -> Vec<(PathBuf, Value)> {
    let mut found = Vec::new();
    for ty in std::fs::read_dir(out).unwrap().flatten() {
        let Ok(dates) = std::fs::read_dir(ty.path()) else {
            continue;
        };
        for date in dates.flatten() {
            for hour in std::fs::read_dir(date.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let m = hour.path().join("_CLOSED.json");
                if let Ok(text) = std::fs::read_to_string(&m) {
                    found.push((hour.path(), serde_json::from_str(&text).unwrap()));
                }
            }
        }
    }
    found
}

fn parquet_files(folder: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(folder)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".parquet"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn marker_files(marker: &Value) -> Vec<String> {
    let mut files: Vec<String> = marker["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    files.sort();
    files
}

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn evd(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(evd_binary())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hours_close_right_a_lost_batch_is_named_late_data_is_skew_and_the_dashboard_shows_it() {
    let lose = ("EVD_TEST_LOSE_BATCH_SEQ".to_string(), LOST_SEQ.to_string());
    let consumer = ConsumerOptions {
        env: vec![lose],
        ..ConsumerOptions::new("c1", 300)
    };
    let clocked = ClockedBed::start(2, consumer, AuditorOptions::default()).unwrap();
    let (bed, base) = (&clocked.bed, clocked.base);
    let (consumer, agent, ops, out) = (bed.consumer(), bed.agent(), bed.auditor(), bed.out());

    let closed_in = |hours: std::ops::Range<u32>| {
        markers(&out)
            .into_iter()
            .filter(|(_, m)| hours.contains(&(m["hour_number"].as_u64().unwrap() as u32)))
            .collect::<Vec<_>>()
    };
    // Three hours of events; each closes (6 types) once the next has begun, the lossy
    // one at its 10 s deadline.
    let mut acked = Vec::new();
    for h in 0..3u32 {
        let from = u64::from(h) * PER_HOUR;
        acked.extend(
            send_ids(&agent.socket(), from..from + PER_HOUR)
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        clocked.set_clock(Hour(base.0 + h + 1), 1);
        let hour = base.0 + h;
        wait_for("an hour's 6 markers", 60, || {
            closed_in(hour..hour + 1).len() == 6
        })
        .await;
    }
    assert_eq!(acked.len() as u64, 3 * PER_HOUR);

    let closed = closed_in(base.0..base.0 + 3);
    let published: u64 = closed
        .iter()
        .map(|(_, m)| m["published"].as_u64().unwrap())
        .sum();
    let summary: Vec<String> = closed
        .iter()
        .map(|(_, m)| {
            format!(
                "{} {} {} {}/{}",
                m["event_type"], m["hour"], m["state"], m["delivered"], m["published"]
            )
        })
        .collect();
    assert_eq!(
        published,
        3 * PER_HOUR,
        "markers count every acked event: {summary:#?}\nCONSUMER {}\nAGENT {}",
        consumer.process.log_tail(),
        agent.log_tail()
    );
    let incomplete: Vec<_> = closed
        .iter()
        .filter(|(_, m)| m["state"] == "incomplete")
        .collect();
    assert_eq!(
        incomplete.len(),
        1,
        "exactly the lossy (type, hour): {closed:#?}"
    );
    let (_, lossy) = incomplete[0];
    let lost = lossy["missing"].as_u64().unwrap();
    assert!(lost > 0);
    let host = &lossy["agents"][0];
    assert_eq!(host["agent_id"], "host-a");
    assert_eq!(
        host["missing_batch_seqs"],
        serde_json::json!([[LOST_SEQ, LOST_SEQ]])
    );
    assert_eq!(
        lossy["delivered"].as_u64().unwrap() + lost,
        lossy["published"].as_u64().unwrap()
    );
    for (folder, m) in &closed {
        if m["state"] != "incomplete" {
            assert_eq!(m["state"], "complete", "{m:#}");
            assert_eq!(m["published"], m["delivered"], "{m:#}");
        }
        assert_eq!(
            marker_files(m),
            parquet_files(folder),
            "{}",
            folder.display()
        );
    }
    let lossy_type = lossy["event_type"].as_str().unwrap().to_string();
    let lossy_hour = lossy["hour"].as_str().unwrap().to_string();
    println!("lost batch {LOST_SEQ} ({lost} events) flagged in {lossy_type} {lossy_hour}");

    // On-call's commands see the loss and exit non-zero.
    let url = format!("http://{}", ops.metrics_addr);
    let (ok, text) = evd(&["ops", "status", "--url", &url]);
    assert!(!ok && text.contains("DATA LOSS"), "{text}");
    let (ok, text) = evd(&["ops", "hour", &lossy_type, &lossy_hour, "--url", &url]);
    assert!(
        !ok && text.contains("host-a") && text.contains("[[3,3]]"),
        "{text}"
    );

    // Late data: the consumer pauses, hour base+3 closes at its deadline without it...
    consumer.process.signal(libc::SIGSTOP);
    let late: Vec<u64> = send_ids(&agent.socket(), 3 * PER_HOUR..3 * PER_HOUR + 500)
        .await
        .unwrap();
    assert_eq!(late.len(), 500);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    clocked.set_clock(Hour(base.0 + 4), 1);
    wait_for("hour base+3 closed", 60, || {
        closed_in(base.0 + 3..base.0 + 4).len() == 6
    })
    .await;
    let before: Vec<_> = closed_in(base.0 + 3..base.0 + 4)
        .into_iter()
        .map(|(folder, m)| (parquet_files(&folder), folder, m))
        .collect();
    // ...then it resumes: its rows go to the open hour, counted as skew.
    consumer.process.signal(libc::SIGCONT);
    let expected = (3 * PER_HOUR + 500 - lost) as usize;
    wait_for("every row landed", 90, || {
        read_back(&out).map(|b| b.ids.len()).unwrap_or(0) == expected
    })
    .await;
    let back = read_back(&out).unwrap();
    assert!(back.ids.values().all(|&n| n == 1), "a duplicate row");
    for (files, folder, m) in &before {
        assert_eq!(&parquet_files(folder), files, "closed folder changed");
        let now: Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("_CLOSED.json")).unwrap())
                .unwrap();
        assert_eq!(&now, m, "closed marker changed");
    }
    let skewed = Hour(base.0 + 3);
    let mut skew = 0;
    wait_for("skew counted", 30, || {
        skew = TYPES
            .iter()
            .map(|t| {
                let (_, text) = evd(&["ops", "hour", t, &skewed.to_string(), "--url", &url]);
                text.split("skew ")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum::<u64>();
        skew == 500
    })
    .await;
    assert_eq!(skew, 500);
    let next = out.join(format!("PageView/{}", Hour(base.0 + 4).partition_path()));
    assert!(
        !parquet_files(&next).is_empty(),
        "late rows are in the open hour"
    );

    dashboard_in_chromium(&url, &lossy_type, lossy["hour_number"].as_u64().unwrap());
}

/// Loads the dashboard in headless Chromium: the grid must show the lossy cell as
/// incomplete; a screenshot is saved next to the test's temp files.
fn dashboard_in_chromium(url: &str, ty: &str, hour: u64) {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect(
            "headless Chromium is needed (scripts/install-test-deps installs Debian's chromium)",
        );
    let profile = tempfile::tempdir().unwrap();
    let common = [
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    let dom = std::process::Command::new(chromium)
        .args(&common)
        .arg("--dump-dom")
        .arg(format!("{url}/"))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    let cell = format!("data-type=\"{ty}\" data-hour=\"{hour}\" data-state=\"incomplete\"");
    assert!(
        dom.contains(&cell),
        "no {cell} in the rendered grid:\n{dom}"
    );
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let status = std::process::Command::new(chromium)
        .args(&common)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1400,520")
        .arg(format!("{url}/"))
        .output()
        .unwrap();
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 1_000)
            .unwrap_or(false),
        "no screenshot: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    println!("dashboard screenshot: {}", shot.display());
}
