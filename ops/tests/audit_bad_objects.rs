//! One unreadable object in the output (a truncated `.parquet`, a Parquet file whose
//! audit columns have other types or whose data layout is newer than the auditor's,
//! a broken manifest or closed marker) must not stop
//! the auditor: it is set aside, counted and logged once, and every other hour still
//! closes.

mod support;

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};

use evd_consumer::layout::hour_dir;
use evd_ops::auditor::{Seen, close_due, scan};
use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord, Heartbeat};
use evd_schemas::{Hour, SpoolId};

const H: Hour = Hour(493_127);

#[tokio::test]
async fn unreadable_objects_are_set_aside_and_counted_and_hours_still_close() {
    let dir = tempfile::tempdir().unwrap();
    let put = |rel: String, bytes: &[u8]| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    put(
        format!(
            "{}/c-1-000001-0.parquet",
            hour_dir("PageView", Hour(H.0 - 1))
        ),
        b"PAR1 truncated",
    );
    put(
        format!("{}/_CLOSED.json", hour_dir("EndSong", Hour(H.0 - 2))),
        b"{\"version\": 2, \"event_ty",
    );
    put(
        format!(
            "{}/c-1-000002-0.parquet",
            hour_dir("PageView", Hour(H.0 - 1))
        ),
        &foreign_parquet(),
    );
    put(
        format!(
            "{}/c-1-000003-0.parquet",
            hour_dir("PageView", Hour(H.0 - 1))
        ),
        &future_layout_parquet(),
    );
    put("_evd/manifests/f-1.json".into(), b"not json");
    let output = support::output(dir.path());
    let config = support::config("");
    let now = H.end_ms() + 120_000;
    let shared = support::shared(now, &config);
    shared.mark_audit_caught_up();
    let record = |at_ms, body| AuditRecord {
        agent_id: "host-1".into(),
        spool_id: SpoolId(7),
        at_ms,
        body,
    };
    shared.state().on_audit(&record(
        H.start_ms() + 1_000,
        AuditBody::Announcement(Announcement {
            event_type: "PageView".into(),
            bucket_hour: H,
            batch_seq: 1,
            event_count: 10,
        }),
    ));
    shared.state().on_audit(&record(
        H.end_ms() + 1_000,
        AuditBody::Heartbeat(Heartbeat {
            final_before_hour: H.next(),
            ..Heartbeat::default()
        }),
    ));
    let mut seen = Seen::default();
    for _ in 0..3 {
        scan(&output, &shared, &mut seen)
            .await
            .expect("a scan survives unreadable objects");
    }
    close_due(&config, &output, &shared, &mut seen)
        .await
        .unwrap();
    let marker = dir
        .path()
        .join(hour_dir("PageView", H))
        .join("_CLOSED.json");
    let closed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&marker).expect("H closed")).unwrap();
    assert_eq!(closed["state"], "incomplete", "{closed:#}");
    let metrics = evd_ops::auditor_metrics::render(&shared);
    assert!(
        metrics.contains("evd_ops_bad_objects_total 5"),
        "each bad object counted once over three scans:\n{metrics}"
    );
}

/// Parquet with the audit columns' names but other types (`agent_id` a number,
/// `batch_seq` text), as another writer might leave in the bucket.
fn foreign_parquet() -> Vec<u8> {
    let t = H.start_ms() * 1000;
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "received_at",
            Arc::new(TimestampMicrosecondArray::from(vec![t]).with_timezone("UTC")),
        ),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(vec![t]).with_timezone("UTC")),
        ),
        ("agent_id", Arc::new(Int64Array::from(vec![1]))),
        (
            "spool_id",
            Arc::new(StringArray::from(vec!["0000000000000007"])),
        ),
        ("batch_seq", Arc::new(StringArray::from(vec!["one"]))),
    ];
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    evd_consumer::parquet_out::encode(&batch).unwrap().to_vec()
}

/// A well-formed data file of a layout version this auditor does not know.
fn future_layout_parquet() -> Vec<u8> {
    let registry = support::registry();
    let ty = registry.get("PageView").unwrap();
    let mut schema = ty.arrow_schema();
    schema.metadata.insert(
        evd_schemas::registry::DATA_LAYOUT_KEY.to_string(),
        "9".to_string(),
    );
    let batch = RecordBatch::new_empty(Arc::new(schema));
    evd_consumer::parquet_out::encode(&batch).unwrap().to_vec()
}
