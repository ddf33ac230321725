//! The alert rules are checked and unit-tested with Prometheus's own `promtool`
//! (Debian's `prometheus` package, installed by scripts/install-test-deps): every rule
//! parses and every alert has a test in alerts.test.yml. That every metric a rule names
//! is one evd exports is checked against docs/metrics.md (tests/metrics_doc.rs).

use std::path::PathBuf;
use std::process::Command;

fn ops_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(ops_dir())
        .output()
        .expect("promtool runs (scripts/install-test-deps installs Debian's prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn rules_parse_and_pass_their_unit_tests() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts.test.yml"]);
}

#[test]
fn every_alert_has_a_unit_test() {
    let rules = std::fs::read_to_string(ops_dir().join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(ops_dir().join("alerts.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() > 20, "{alerts:?}");
    for alert in alerts {
        // A firing expectation: the alert's name followed by a non-empty exp_alerts.
        let fires = tests
            .match_indices(&format!("alertname: {alert}\n"))
            .any(|(at, _)| {
                tests[at..]
                    .lines()
                    .nth(1)
                    .is_some_and(|l| l.trim() == "exp_alerts:")
            });
        assert!(
            fires,
            "{alert}: no test in alerts.test.yml expects it to fire"
        );
        assert!(
            tests.contains(&format!("alertname: {alert}, exp_alerts: []")),
            "{alert}: no test in alerts.test.yml expects it quiet"
        );
    }
}
