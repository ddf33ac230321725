//! The alert rules are checked and unit-tested with Prometheus's own `promtool`
//! (Debian's `prometheus` package, installed by scripts/install-test-deps): every rule
//! parses, every alert has a test in alerts.test.yml, and every metric a rule names is
//! one evd exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
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

fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn every_metric_a_rule_names_is_exported() {
    let rules = std::fs::read_to_string(ops_dir().join("alerts.yml")).unwrap();
    let names: BTreeSet<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("evd_"))
        .map(|w| w.trim_end_matches("_bucket").to_string())
        .collect();
    let root = ops_dir().join("..");
    for name in names {
        // Each role renders its prefix + a field or table name.
        let (krate, field) = [
            ("producer", "evd_agent_"),
            ("consumer", "evd_consumer_"),
            ("broker-bridge", "evd_bridge_"),
            ("ops", "evd_ops_"),
        ]
        .iter()
        .find_map(|(k, p)| name.strip_prefix(p).map(|f| (*k, f)))
        .unwrap_or_else(|| panic!("{name}: no evd role has this prefix"));
        let mut code = String::new();
        sources(&root.join(krate).join("src"), &mut code);
        let field = field.trim_end_matches("_total");
        let exported = code.contains(&name)
            || code.contains(&format!("{field}:"))
            || code.contains(&format!("\"{field}\""));
        assert!(
            exported,
            "{name}: alerts.yml names it, {krate} does not export it"
        );
    }
}
