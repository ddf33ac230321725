//! ARCHITECTURE.md is kept true: every repository path it names exists, and its table
//! of test switches lists exactly the switches the code reads.

use std::collections::BTreeSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn architecture() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap()
}

/// The `code spans` of a Markdown text.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Words of the form `EVD_TEST_*` / `EVD_CRASH_*` in `text`.
fn switch_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("EVD_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.starts_with("EVD_TEST_") || name.starts_with("EVD_CRASH_") {
            names.insert(name.trim_end_matches('_').to_string());
        }
    }
    names
}

#[test]
fn every_path_it_names_exists() {
    const TOP: [&str; 13] = [
        "schemas/",
        "clients/",
        "producer/",
        "consumer/",
        "ops/",
        "broker-bridge/",
        "tests/",
        "fuzz/",
        "scripts/",
        "docs/",
        "examples/",
        "deploy/",
        ".ci/",
    ];
    let doc = architecture();
    let mut missing = Vec::new();
    for span in code_spans(&doc) {
        let path = span.trim_end_matches('/');
        let is_path = TOP.iter().any(|t| span.starts_with(t))
            && !span.contains(' ')
            && !span.contains('<')
            && !span.contains('*');
        if is_path && !root().join(path).exists() {
            missing.push(span.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

#[test]
fn its_test_switches_are_the_ones_the_code_reads() {
    let doc = architecture();
    let table: String = doc
        .lines()
        .filter(|l| l.trim_start().starts_with("| `EVD_"))
        .collect::<Vec<_>>()
        .join("\n");
    let documented = switch_names(&table);
    let mut read = BTreeSet::new();
    for krate in ["producer", "consumer"] {
        let src = std::fs::read_to_string(root().join(krate).join("src/test_faults.rs")).unwrap();
        read.extend(switch_names(&src));
    }
    assert!(!read.is_empty());
    assert_eq!(
        documented, read,
        "ARCHITECTURE.md's switch table vs src/test_faults.rs"
    );
}
