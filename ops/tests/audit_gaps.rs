//! Loss detection from committed Parquet onwards: 20 seeded runs in which one batch
//! never reaches the output, and 20 clean runs. Each run commits real Parquet files
//! through the consumer's commit protocol, then the auditor scans the output and closes
//! the hour: the gap must be named (agent, type, batch seq) every time, and a clean
//! run must close complete every time. (Kafka is left out; `tests/tests/ops_e2e.rs`
//! runs the whole pipeline once with a lossy consumer.)

mod support;

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use evd_consumer::layout::hour_dir;
use evd_ops::auditor::{Seen, close_due, scan};
use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord, Heartbeat};
use evd_schemas::{Hour, SpoolId};

const H: Hour = Hour(493_127);
const TYPES: [&str; 2] = ["PageView", "EndSong"];

/// splitmix64, so a failing seed replays.
fn rng(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rows of one batch with the columns the auditor reads.
/// The spool incarnation of every simulated agent.
const SPOOL: SpoolId = SpoolId(0x77);

fn rows(agent: &str, seq: u64, n: u64) -> RecordBatch {
    let t = H.start_ms() * 1000 + 5_000_000;
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "received_at",
            Arc::new(TimestampMicrosecondArray::from(vec![t; n as usize]).with_timezone("UTC")),
        ),
        (
            "ts",
            Arc::new(
                TimestampMicrosecondArray::from(vec![t - 1_000_000; n as usize])
                    .with_timezone("UTC"),
            ),
        ),
        (
            "agent_id",
            Arc::new(StringArray::from(vec![agent; n as usize])),
        ),
        (
            "spool_id",
            Arc::new(StringArray::from(vec![SPOOL.to_string(); n as usize])),
        ),
        (
            "event_seq",
            Arc::new(UInt64Array::from((0..n).collect::<Vec<_>>())),
        ),
        (
            "batch_seq",
            Arc::new(UInt64Array::from(vec![seq; n as usize])),
        ),
    ];
    RecordBatch::try_from_iter(cols).unwrap()
}

/// One run; returns the (type, marker) pairs written and the dropped batch.
async fn run(seed: u64, gap: bool) -> (Vec<serde_json::Value>, Option<(String, String, u64)>) {
    let dir = tempfile::tempdir().unwrap();
    let output = support::output(dir.path());
    let mut state = seed;
    let now = H.end_ms() + 60_000;
    let config = support::config("");
    let shared = support::shared(now, &config);
    shared.mark_audit_caught_up();
    let mut batches = Vec::new();
    for agent in ["host-1", "host-2"] {
        for seq in 1..=(3 + rng(&mut state) % 8) {
            let ty = TYPES[(rng(&mut state) % 2) as usize];
            batches.push((
                agent.to_string(),
                ty.to_string(),
                seq,
                1 + rng(&mut state) % 300,
            ));
        }
    }
    let dropped = gap.then(|| {
        let (a, t, s, _) = &batches[(rng(&mut state) % batches.len() as u64) as usize];
        (a.clone(), t.clone(), *s)
    });
    for (agent, ty, seq, n) in &batches {
        let record = |body| AuditRecord {
            agent_id: agent.clone(),
            spool_id: SPOOL,
            at_ms: H.start_ms() + 1_000,
            body,
        };
        shared
            .state()
            .on_audit(&record(AuditBody::Announcement(Announcement {
                event_type: ty.clone(),
                bucket_hour: H,
                batch_seq: *seq,
                event_count: *n as u32,
            })));
        if dropped.as_ref() == Some(&(agent.clone(), ty.clone(), *seq)) {
            continue;
        }
        // One flush per batch, through the consumer's commit protocol.
        let bytes = evd_consumer::parquet_out::encode(&rows(agent, *seq, *n)).unwrap();
        support::commit_file(&output, &format!("f-{agent}-{seq}"), ty, H, *n, bytes).await;
    }
    for agent in ["host-1", "host-2"] {
        shared.state().on_audit(&AuditRecord {
            agent_id: agent.into(),
            spool_id: SPOOL,
            at_ms: H.end_ms() + 1_000,
            body: AuditBody::Heartbeat(Heartbeat {
                final_before_hour: H.next(),
                ..Heartbeat::default()
            }),
        });
    }
    let mut seen = Seen::default();
    scan(&output, &shared, &mut seen).await.unwrap();
    close_due(&config, &output, &shared, &mut seen)
        .await
        .unwrap();
    let mut markers = Vec::new();
    for ty in TYPES {
        let path = dir.path().join(hour_dir(ty, H)).join("_CLOSED.json");
        if let Ok(text) = std::fs::read_to_string(path) {
            markers.push(serde_json::from_str(&text).unwrap());
        }
    }
    (markers, dropped)
}

#[tokio::test]
async fn every_injected_gap_is_named_and_clean_runs_never_alarm() {
    for seed in 0..20 {
        let (markers, dropped) = run(seed, true).await;
        let (agent, ty, seq) = dropped.unwrap();
        let lossy: Vec<_> = markers
            .iter()
            .filter(|m| m["state"] == "incomplete")
            .collect();
        assert_eq!(lossy.len(), 1, "seed {seed}: {markers:#?}");
        assert_eq!(lossy[0]["event_type"], ty.as_str(), "seed {seed}");
        let named: Vec<_> = lossy[0]["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["missing"].as_u64() > Some(0))
            .collect();
        assert_eq!(named.len(), 1, "seed {seed}");
        assert_eq!(named[0]["agent_id"], agent.as_str(), "seed {seed}");
        assert_eq!(
            named[0]["missing_batch_seqs"],
            serde_json::json!([[seq, seq]]),
            "seed {seed}"
        );
    }
    for seed in 100..120 {
        let (markers, _) = run(seed, false).await;
        for m in &markers {
            assert_eq!(m["state"], "complete", "seed {seed}: false alarm {m:#}");
            assert_eq!(m["published"], m["delivered"], "seed {seed}");
        }
    }
}
