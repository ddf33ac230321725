//! Per-host metrics carry the host's agent id (alerts name the host) and stop once the
//! host has been silent for `host_retire_after_ms`: a decommissioned host stops
//! alerting after that grace period. A re-created spool (new incarnation of the same
//! agent id) replaces the old one instead of leaving it to alert as silent.

mod support;

use evd_schemas::wire::audit::{AuditBody, AuditRecord, Heartbeat};
use evd_schemas::{Hour, SpoolId};

const NOW: i64 = 1_795_257_000_000;

fn beat(agent: &str, spool: u64, at_ms: i64) -> AuditRecord {
    AuditRecord {
        agent_id: agent.into(),
        spool_id: SpoolId(spool),
        at_ms,
        body: AuditBody::Heartbeat(Heartbeat {
            spool_bytes: 4096,
            final_before_hour: Hour::from_unix_ms(at_ms),
            ..Heartbeat::default()
        }),
    }
}

#[test]
fn silent_hosts_alert_until_retired_and_old_incarnations_never_do() {
    let shared = support::shared(NOW, &support::config("host_retire_after_ms = 3600000\n"));
    {
        let mut state = shared.state();
        state.on_audit(&beat("live", 1, NOW - 5_000));
        state.on_audit(&beat("silent", 1, NOW - 600_000));
        state.on_audit(&beat("gone", 1, NOW - 7_200_000));
        // "wiped" re-created its spool: the old incarnation stopped two hours ago.
        state.on_audit(&beat("wiped", 1, NOW - 7_200_000));
        state.on_audit(&beat("wiped", 2, NOW - 10_000));
    }
    let metrics = evd_ops::auditor_metrics::render(&shared);
    for line in [
        "evd_ops_host_heartbeat_age_seconds{agent_id=\"live\"} 5",
        "evd_ops_host_heartbeat_age_seconds{agent_id=\"silent\"} 600",
        "evd_ops_host_heartbeat_age_seconds{agent_id=\"wiped\"} 10",
        "evd_ops_host_spool_bytes{agent_id=\"live\"} 4096",
        "evd_ops_hosts_retired 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(
        !metrics.contains("agent_id=\"gone\""),
        "a host silent past the grace period is retired:\n{metrics}"
    );
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with("evd_ops_host_heartbeat_age_seconds{agent_id=\"wiped\"}"))
            .count(),
        1
    );
}
