//! Quarantine counts come from flush manifests, live or archived by a ledger
//! compaction. The archive (which grows with every flush ever made) is listed at the
//! first scan and again only when a compaction wrote a new ledger generation; a
//! manifest archived between two scans is still counted once.

mod support;

use evd_consumer::ledger::{Delivered, MANIFEST_VERSION, Manifest};
use evd_ops::auditor::{Seen, scan};
use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord};
use evd_schemas::{Hour, SpoolId};

const H: Hour = Hour(493_127);

fn manifest(flush_id: &str, quarantined: u64) -> Vec<u8> {
    Manifest {
        version: MANIFEST_VERSION,
        flush_id: flush_id.into(),
        consumer_id: "c".into(),
        created_at_ms: 0,
        files: vec![],
        batches: vec![],
        delivered: vec![Delivered {
            agent_id: "host-1".into(),
            spool_id: SpoolId(7),
            event_type: "PageView".into(),
            hour: H.0,
            events: 0,
            quarantined,
            batch_ranges: vec![(1, 1)],
        }],
        quarantine: vec![],
        offsets: vec![],
        aborted: false,
    }
    .to_json()
}

#[tokio::test]
async fn archived_manifests_are_counted_once_and_the_archive_is_listed_on_new_generations() {
    let dir = tempfile::tempdir().unwrap();
    let put = |rel: &str, bytes: &[u8]| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    put("_evd/archive/manifests/f-1.json", &manifest("f-1", 3));
    put("_evd/ledger/00000000000000000001.json", b"{}");
    put("_evd/manifests/f-2.json", &manifest("f-2", 5));
    let output = support::output(dir.path());
    let shared = support::shared(H.end_ms(), &support::config(""));
    let quarantined = || {
        shared
            .state()
            .report("PageView", H, H.end_ms(), &shared.policy)
            .quarantined
    };
    shared.state().on_audit(&AuditRecord {
        agent_id: "host-1".into(),
        spool_id: SpoolId(7),
        at_ms: H.start_ms() + 1,
        body: AuditBody::Announcement(Announcement {
            event_type: "PageView".into(),
            bucket_hour: H,
            batch_seq: 1,
            event_count: 1_000,
        }),
    });
    let mut seen = Seen::default();
    scan(&output, &shared, &mut seen).await.unwrap();
    assert_eq!(
        quarantined(),
        8,
        "live and archived manifests at the first scan"
    );

    // A compaction archives f-2 (already counted) and a manifest created and archived
    // between two scans (f-3), writing generation 2.
    std::fs::remove_file(dir.path().join("_evd/manifests/f-2.json")).unwrap();
    put("_evd/archive/manifests/f-2.json", &manifest("f-2", 5));
    put("_evd/archive/manifests/f-3.json", &manifest("f-3", 11));
    put("_evd/ledger/00000000000000000002.json", b"{}");
    scan(&output, &shared, &mut seen).await.unwrap();
    assert_eq!(quarantined(), 19, "f-3 counted, f-2 not twice");

    // Without a new generation the archive is not listed again: an object that
    // appears there by other means is not read (compaction is the only writer).
    put("_evd/archive/manifests/f-4.json", &manifest("f-4", 100));
    scan(&output, &shared, &mut seen).await.unwrap();
    assert_eq!(quarantined(), 19);
}
