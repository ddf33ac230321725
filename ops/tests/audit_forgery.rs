//! Audit records are authenticated: a forged announcement that arrives before the
//! real one (claiming the batch held no events) must not hide the real batch's loss.
//! It is counted and changes nothing.

mod support;

use std::sync::Arc;

use evd_ops::audit_topic::take_audit_record;
use evd_ops::auditor::Shared;
use evd_schemas::wire::audit::{Announcement, AuditBody, AuditRecord};
use evd_schemas::{Hour, Key, MasterKeyring, SpoolId};

const H: Hour = Hour(493_127);

fn shared() -> Arc<Shared> {
    support::shared(H.end_ms() + 60_000, &support::config(""))
}

fn announcement(agent: &str, count: u32) -> AuditRecord {
    AuditRecord {
        agent_id: agent.into(),
        spool_id: SpoolId(7),
        at_ms: H.start_ms() + 1_000,
        body: AuditBody::Announcement(Announcement {
            event_type: "PageView".into(),
            bucket_hour: H,
            batch_seq: 1,
            event_count: count,
        }),
    }
}

#[test]
fn a_forged_announcement_is_counted_and_ignored() {
    let master = MasterKeyring::new([(1, Key([3; 32]))]);
    let shared = shared();
    // A stranger's key; and host-2's own key used to speak for host-1.
    let stranger = MasterKeyring::new([(1, Key([9; 32]))]);
    let forged_by_stranger = announcement("host-1", 0).encode(&stranger).unwrap();
    let mut forged_by_peer = announcement("host-2", 0)
        .encode(&master.derive_agent_keyring("host-2"))
        .unwrap();
    forged_by_peer[7..13].copy_from_slice(b"host-1");
    for forged in [&forged_by_stranger, &forged_by_peer] {
        assert!(take_audit_record(&shared, &master, forged).is_err());
    }
    // The real announcement: 100 events, none of which reached the output.
    let real = announcement("host-1", 100)
        .encode(&master.derive_agent_keyring("host-1"))
        .unwrap();
    take_audit_record(&shared, &master, &real).unwrap();

    let now = H.end_ms() + 60_000;
    let report = shared.state().report("PageView", H, now, &shared.policy);
    assert_eq!(report.published, 100, "{report:#?}");
    assert_eq!(report.missing, 100, "the loss stays visible");
    let metrics = evd_ops::auditor_metrics::render(&shared);
    assert!(
        metrics.contains("evd_ops_audit_unauthenticated_total 2"),
        "{metrics}"
    );
}
