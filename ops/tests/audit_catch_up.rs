//! After an outage longer than a deadline, a restarted auditor must not close hours
//! before it has re-read the audit topic up to where it stood at start: with half the
//! records read, an hour closes on what was read so far (here: one host's lost batch
//! named, the other's not even known).

mod support;

use evd_consumer::layout::hour_dir;
use evd_ops::auditor::{Seen, close_due, scan};
use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord, Heartbeat};
use evd_schemas::{Hour, SpoolId};

const H: Hour = Hour(493_127);

fn records(agent: &str) -> [AuditRecord; 2] {
    let record = |at_ms, body| AuditRecord {
        agent_id: agent.into(),
        spool_id: SpoolId(7),
        at_ms,
        body,
    };
    [
        record(
            H.start_ms() + 1_000,
            AuditBody::Announcement(Announcement {
                event_type: "PageView".into(),
                bucket_hour: H,
                batch_seq: 1,
                event_count: 10,
            }),
        ),
        record(
            H.end_ms() + 1_000,
            AuditBody::Heartbeat(Heartbeat {
                final_before_hour: H.next(),
                ..Heartbeat::default()
            }),
        ),
    ]
}

#[tokio::test]
async fn nothing_closes_before_the_audit_topic_is_read_up_to_its_start_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let output = support::output(dir.path());
    let config = support::config("");
    // Hours after the deadline: the auditor was down.
    let now = H.end_ms() + 3 * 3_600_000;
    let shared = support::shared(now, &config);
    // The reader has read host-2's records and not yet host-1's; neither batch landed.
    for r in records("host-2") {
        shared.state().on_audit(&r);
    }
    let mut seen = Seen::default();
    scan(&output, &shared, &mut seen).await.unwrap();
    close_due(&config, &output, &shared, &mut seen)
        .await
        .unwrap();
    let marker = dir
        .path()
        .join(hour_dir("PageView", H))
        .join("_CLOSED.json");
    assert!(
        !marker.exists(),
        "closed on half the audit topic: {}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );
    // The rest of the topic is read, the reader reaches its start watermark.
    for r in records("host-1") {
        shared.state().on_audit(&r);
    }
    shared.mark_audit_caught_up();
    close_due(&config, &output, &shared, &mut seen)
        .await
        .unwrap();
    let closed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&marker).unwrap()).unwrap();
    assert_eq!(closed["state"], "incomplete");
    assert_eq!(closed["missing"], 20);
}
