//! docs/metrics.md is the one table of every metric evd exports. These tests keep it
//! true: every family a role renders is documented with its type, every documented
//! family is one a role still exports, every metric an alert rule or the Grafana
//! dashboard names is documented, and every role's scrape parses as OpenMetrics.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use evd_schemas::wire::audit::{AuditBody, AuditRecord, Heartbeat};
use evd_schemas::{Hour, SpoolId};

const NOW: i64 = 1_795_257_000_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Each role's scrape, with enough state that its labelled families show.
fn scrapes() -> Vec<(&'static str, String)> {
    let agent = evd_producer::metrics::Metrics::default();
    *agent.tail.lock().unwrap() = Some(evd_producer::metrics::TailFigures {
        sources: vec![evd_producer::metrics::SourceFigures {
            source: "app".into(),
            event_type: "PageView".into(),
            refused: vec![("json", 1)],
            ..Default::default()
        }],
        files: vec![("/var/log/app.log".into(), 10)],
        ..Default::default()
    });
    let bridge = evd_bridge::Metrics::default();
    for name in [
        "records_forwarded",
        "bytes_forwarded",
        "destination_errors",
        "source_errors",
        "skipped_offsets",
        "offset_resets",
        "commits",
    ] {
        bridge.add(name, &[("route", "forward")], 1);
    }
    bridge.set("lag_offsets", &[("route", "forward")], 1.0);
    bridge.set("lag_seconds", &[("route", "forward")], 1.0);
    let shared = support::shared(NOW, &support::config(""));
    shared.state().on_audit(&AuditRecord {
        agent_id: "host-a".into(),
        spool_id: SpoolId(1),
        at_ms: NOW - 5_000,
        body: AuditBody::Heartbeat(Heartbeat {
            final_before_hour: Hour::from_unix_ms(NOW),
            ..Heartbeat::default()
        }),
    });
    vec![
        ("agent", agent.render()),
        (
            "consumer",
            evd_consumer::metrics::Metrics::default().render(),
        ),
        ("bridge", bridge.render()),
        ("ops", evd_ops::auditor_metrics::render(&shared)),
    ]
}

/// family name → type, from `# TYPE` lines.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// family name → type, from the first two cells of docs/metrics.md's table rows (which
/// give the name a query uses: `_total` on a counter, `_info` on an info).
fn documented() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    doc.lines()
        .filter(|l| l.starts_with("| `evd_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let (name, kind) = (cells[1].trim_matches('`'), cells[2]);
            let family = match kind {
                "counter" => name.strip_suffix("_total"),
                "info" => name.strip_suffix("_info"),
                _ => Some(name),
            };
            let family = family.unwrap_or_else(|| panic!("{name}: a {kind} name must end so"));
            (family.to_string(), kind.to_string())
        })
        .collect()
}

#[test]
fn every_exported_family_is_documented_with_its_type() {
    let doc = documented();
    for (role, text) in scrapes() {
        for (name, kind) in families(&text) {
            assert_eq!(
                doc.get(&name),
                Some(&kind),
                "{role} exports {name} ({kind}); docs/metrics.md must list it with that type"
            );
        }
    }
}

#[test]
fn every_documented_family_is_still_exported() {
    let exported: BTreeSet<String> = scrapes()
        .iter()
        .flat_map(|(_, t)| families(t).into_keys())
        .collect();
    // Families that only show with state a unit scrape does not build: each must
    // still be named in its role's source.
    let mut code = String::new();
    for krate in ["producer", "consumer", "broker-bridge", "ops"] {
        sources(&root().join(krate).join("src"), &mut code);
    }
    for name in documented().into_keys() {
        let short = name.splitn(3, '_').nth(2).unwrap_or(&name);
        assert!(
            exported.contains(&name) || code.contains(&format!("\"{short}\"")),
            "docs/metrics.md lists {name}, which no role exports"
        );
    }
}

fn sources(dir: &std::path::Path, out: &mut String) {
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
fn every_metric_alerts_and_dashboards_use_is_documented() {
    let doc = documented();
    for file in ["ops/alerts.yml", "deploy/grafana/evd-dashboard.json"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let names: BTreeSet<&str> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("evd_") && !w.ends_with('_'))
            .collect();
        for name in names {
            let family = ["_total", "_bucket", "_sum", "_count", "_info"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| doc.contains_key(*f)))
                .unwrap_or(name);
            assert!(
                doc.contains_key(family),
                "{file} uses {name}, which docs/metrics.md does not list"
            );
        }
    }
}

/// The reference OpenMetrics parser (the Python `prometheus_client`, installed by
/// scripts/install-test-deps), which refuses what the format does not allow.
const PARSE: &str = "import sys\n\
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
families = list(parse(sys.stdin.read()))\n\
print(len(families), 'families')\n";

#[test]
fn every_scrape_is_valid_openmetrics() {
    for (role, text) in scrapes() {
        let mut child = Command::new("python3")
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "the {role} scrape is not valid OpenMetrics:\n{}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
