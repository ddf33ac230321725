//! The `evd` command as a user runs it. (Being an integration test of this package also
//! makes `cargo test --workspace` build the `evd` binary the cross-crate tests start.)

use std::path::Path;
use std::process::Command;

fn evd(args: &[&str], dir: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_evd"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `m.toml`, a master keyring, and `a.toml`, the keyring it derives for `agent`, in `d`.
fn generate_keys(d: &Path, agent: &str) {
    assert!(evd(&["keys", "generate", "--out", "m.toml"], d).0);
    let derive = [
        "keys", "derive", "--master", "m.toml", "--agent", agent, "--out", "a.toml",
    ];
    assert!(evd(&derive, d).0);
}

#[test]
fn validate_accepts_the_example_registry() {
    let registry = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/registry");
    let (ok, stdout, stderr) = evd(&["validate", registry.to_str().unwrap()], Path::new("."));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("registry OK, 6 event types"), "{stdout}");
}

#[test]
fn validate_names_file_line_and_key_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("reg")).unwrap();
    std::fs::write(
        dir.path().join("reg/t.toml"),
        "name = \"T\"\nversion = 1\nowner = \"o\"\ntier = \"urgent\"\n",
    )
    .unwrap();
    let (ok, _, stderr) = evd(&["validate", "reg"], dir.path());
    assert!(!ok);
    assert!(
        stderr.contains("reg/t.toml:4: key `tier`: unknown variant `urgent`"),
        "{stderr}"
    );
}

#[test]
fn keys_are_generated_derived_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(evd(&["keys", "generate", "--out", "m.toml"], d).0);
    assert!(
        evd(
            &[
                "keys", "derive", "--master", "m.toml", "--agent", "host-a", "--out", "a.toml"
            ],
            d
        )
        .0
    );
    let (ok, stdout, _) = evd(&["validate", "a.toml"], d);
    assert!(
        ok && stdout.contains("agent keyring OK for agent \"host-a\""),
        "{stdout}"
    );
    let (ok, _, stderr) = evd(&["keys", "generate", "--out", "m.toml"], d);
    assert!(!ok && stderr.contains("File exists"), "{stderr}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(d.join("a.toml"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn validate_checks_agent_consumer_and_ops_configs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let registry = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/registry");
    let reg = registry.display();
    generate_keys(d, "h");
    let agent = format!(
        "agent_id = \"h\"\nregistry_dir = \"{reg}\"\nkeyring_path = \"a.toml\"\n[socket]\npath = \"s.sock\"\n[spool]\ndir = \"spool\"\n[kafka]\nbootstrap_servers = \"b:9092\"\n"
    );
    std::fs::write(d.join("agent.toml"), &agent).unwrap();
    let (ok, out, err) = evd(&["validate", "agent.toml"], d);
    assert!(ok && out.contains("agent config OK"), "{out}{err}");
    let consumer = format!(
        "registry_dir = \"{reg}\"\nkeyring_path = \"m.toml\"\noutput_url = \"file:///tmp/x\"\n[kafka]\nbootstrap_servers = \"b:9092\"\n"
    );
    std::fs::write(d.join("consumer.toml"), &consumer).unwrap();
    let (ok, out, err) = evd(&["validate", "consumer.toml"], d);
    assert!(ok && out.contains("consumer config OK"), "{out}{err}");
    // Ids become object names and Kafka keys: a `/` would split the closing
    // protocol's paths, a quote would break a metrics scrape.
    std::fs::write(
        d.join("consumer.toml"),
        format!("consumer_id = \"team/c1\"\n{consumer}"),
    )
    .unwrap();
    let (ok, _, err) = evd(&["validate", "consumer.toml"], d);
    assert!(
        !ok && err.contains("consumer.toml:1: key `consumer_id`") && err.contains("'/'"),
        "{err}"
    );
    // [parquet]: a level out of the codec's range, and a bloom filter on a column no
    // type has, are refused before start.
    for (table, says) in [
        (
            "[parquet]\ncompression_level = 40\n",
            "key `parquet.compression_level`",
        ),
        (
            "[parquet]\nbloom_filter_columns = [\"usr_id\"]\n",
            "\"usr_id\" is not a column of any type",
        ),
    ] {
        std::fs::write(d.join("consumer.toml"), format!("{consumer}{table}")).unwrap();
        let (ok, _, err) = evd(&["validate", "consumer.toml"], d);
        assert!(!ok && err.contains(says), "{err}");
    }
    let good =
        "[parquet]\ncompression = \"gzip\"\nbloom_filter_columns = [\"user_id\", \"agent_id\"]\n";
    std::fs::write(d.join("consumer.toml"), format!("{consumer}{good}")).unwrap();
    let (ok, out, err) = evd(&["validate", "consumer.toml"], d);
    assert!(ok && out.contains("consumer config OK"), "{out}{err}");
    std::fs::write(d.join("agent.toml"), agent.replace("\"h\"", "\"h\\\"x\"")).unwrap();
    let (ok, _, err) = evd(&["validate", "agent.toml"], d);
    assert!(!ok && err.contains("key `agent_id`"), "{err}");
    std::fs::write(d.join("agent.toml"), &agent).unwrap();
    let ops = format!(
        "registry_dir = \"{reg}\"\noutput_url = \"file:///tmp/x\"\nwindow_hours = 0\nkeyring_path = \"m.toml\"\n[kafka]\nbootstrap_servers = \"b:9092\"\n"
    );
    std::fs::write(d.join("ops.toml"), &ops).unwrap();
    let (ok, _, err) = evd(&["validate", "ops.toml"], d);
    assert!(
        !ok && err.contains("ops.toml:3: key `window_hours`"),
        "{err}"
    );
    let ops = ops.replace("window_hours = 0\n", "listen = \"127.0.0.1:9300\"\n");
    std::fs::write(d.join("ops.toml"), &ops).unwrap();
    let (ok, out, err) = evd(&["validate", "ops.toml"], d);
    assert!(ok && out.contains("ops config OK"), "{out}{err}");
    // Any ops-only key marks an ops config, host_retire_after_ms too.
    std::fs::write(
        d.join("ops.toml"),
        ops.replace(
            "listen = \"127.0.0.1:9300\"\n",
            "host_retire_after_ms = 3600000\n",
        ),
    )
    .unwrap();
    let (ok, out, err) = evd(&["validate", "ops.toml"], d);
    assert!(ok && out.contains("ops config OK"), "{out}{err}");
    // The auditor verifies audit records with the master keyring; an agent's will not do.
    std::fs::write(d.join("ops.toml"), ops.replace("m.toml", "a.toml")).unwrap();
    let (ok, _, err) = evd(&["validate", "ops.toml"], d);
    assert!(!ok && err.contains("master"), "{err}");

    // Tailed files: the source's type must exist and suit the line format.
    let tail = "[[sources]]\nkind = \"file\"\ninclude = [\"logs/*.log\"]\nevent_type = \"LogLine\"\nformat = \"text\"\n";
    std::fs::write(d.join("agent.toml"), format!("{agent}{tail}")).unwrap();
    let (ok, out, err) = evd(&["validate", "agent.toml"], d);
    assert!(ok && out.contains("agent config OK"), "{out}{err}");
    let wrong = tail.replace("LogLine", "PageView");
    std::fs::write(d.join("agent.toml"), format!("{agent}{wrong}")).unwrap();
    let (ok, _, err) = evd(&["validate", "agent.toml"], d);
    assert!(
        !ok && err.contains("text lines need a `line` field"),
        "{err}"
    );
    // A pattern globset cannot compile, and two sources under one name, are refused.
    let bad_glob = tail.replace("logs/*.log", "logs/[.log");
    std::fs::write(d.join("agent.toml"), format!("{agent}{bad_glob}")).unwrap();
    let (ok, _, err) = evd(&["validate", "agent.toml"], d);
    assert!(!ok && err.contains("bad pattern logs/[.log"), "{err}");
    std::fs::write(d.join("agent.toml"), format!("{agent}{tail}{tail}")).unwrap();
    let (ok, _, err) = evd(&["validate", "agent.toml"], d);
    assert!(
        !ok && err.contains("\"logs/*.log\": every source needs its own name"),
        "{err}"
    );
    // Multi-line joining: one pattern, that compiles, on a text source.
    for (table, says) in [
        ("start_pattern = \"^(\"\n", "key `sources.multiline`"),
        (
            "start_pattern = \"^E\"\ncontinuation_pattern = \"^ \"\n",
            "exactly one of start_pattern and continuation_pattern",
        ),
    ] {
        let bad = format!("{tail}[sources.multiline]\n{table}");
        std::fs::write(d.join("agent.toml"), format!("{agent}{bad}")).unwrap();
        let (ok, _, err) = evd(&["validate", "agent.toml"], d);
        assert!(!ok && err.contains(says), "{err}");
    }
    let joined = format!("{tail}[sources.multiline]\ncontinuation_pattern = '^\\s'\n");
    std::fs::write(d.join("agent.toml"), format!("{agent}{joined}")).unwrap();
    let (ok, out, err) = evd(&["validate", "agent.toml"], d);
    assert!(ok && out.contains("agent config OK"), "{out}{err}");
    let named = format!("{tail}name = \"app\"\n");
    std::fs::write(d.join("agent.toml"), format!("{agent}{tail}{named}")).unwrap();
    let (ok, out, err) = evd(&["validate", "agent.toml"], d);
    assert!(ok && out.contains("agent config OK"), "{out}{err}");
    let bad_kind = tail.replace("kind = \"file\"", "kind = \"socket\"");
    std::fs::write(d.join("agent.toml"), format!("{agent}{bad_kind}")).unwrap();
    let (ok, _, err) = evd(&["validate", "agent.toml"], d);
    assert!(
        !ok && err.contains("agent.toml:11: key `sources[0].kind`"),
        "{err}"
    );

    let bridge =
        "[edge]\nbootstrap_servers = \"e:9092\"\n[central]\nbootstrap_servers = \"c:9092\"\n";
    std::fs::write(d.join("bridge.toml"), bridge).unwrap();
    let (ok, out, err) = evd(&["validate", "bridge.toml"], d);
    assert!(ok && out.contains("bridge config OK"), "{out}{err}");
    std::fs::write(
        d.join("bridge.toml"),
        format!("{bridge}[tuning]\nmax_in_flight = 9\n"),
    )
    .unwrap();
    let (ok, _, err) = evd(&["validate", "bridge.toml"], d);
    assert!(
        !ok && err.contains("bridge.toml:6: key `tuning.max_in_flight`"),
        "{err}"
    );
}

/// `evd validate` builds every Kafka client of every role: a key librdkafka does not
/// know is reported with file, line and key, whichever table and client it reaches;
/// TLS + SASL/SCRAM settings pass (they are compiled in); a non-durable output and a
/// fixed key set to another value are refused.
#[test]
fn validate_builds_every_kafka_client_and_names_a_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let registry = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/registry");
    let reg = registry.display();
    generate_keys(d, "h");
    let secure = "[kafka.options]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"u\"\n\"sasl.password\" = \"p\"\n\"compression.type\" = \"zstd\"\n";
    let roles = [
        (
            "agent.toml",
            format!(
                "agent_id = \"h\"\nregistry_dir = \"{reg}\"\nkeyring_path = \"a.toml\"\n[socket]\npath = \"s.sock\"\n[spool]\ndir = \"spool\"\n[kafka]\nbootstrap_servers = \"b:9092\"\n"
            ),
            "agent config OK",
        ),
        (
            "consumer.toml",
            format!(
                "registry_dir = \"{reg}\"\nkeyring_path = \"m.toml\"\noutput_url = \"file:///tmp/x\"\n[kafka]\nbootstrap_servers = \"b:9092\"\n"
            ),
            "consumer config OK",
        ),
        (
            "ops.toml",
            format!(
                "registry_dir = \"{reg}\"\noutput_url = \"file:///tmp/x\"\nkeyring_path = \"m.toml\"\nlisten = \"127.0.0.1:9300\"\n[kafka]\nbootstrap_servers = \"b:9092\"\n"
            ),
            "ops config OK",
        ),
    ];
    for (file, base, ok_line) in &roles {
        let text = format!("{base}{secure}");
        std::fs::write(d.join(file), &text).unwrap();
        let (ok, out, err) = evd(&["validate", file], d);
        assert!(ok && out.contains(ok_line), "{file}: {out}{err}");
        // A misspelt key in the client's own table, on the file's last line.
        let bad = format!("{text}[kafka.consumer]\n\"sasl.mechansim\" = \"PLAIN\"\n");
        let line = bad.lines().count();
        std::fs::write(d.join(file), &bad).unwrap();
        let (ok, _, err) = evd(&["validate", file], d);
        let expected = format!("{file}:{line}: key `kafka.consumer.\"sasl.mechansim\"`");
        assert!(!ok && err.contains(&expected), "{file}: {err}");
    }
    let bridge = "[edge]\nbootstrap_servers = \"e:9092\"\n[edge.options]\n\"security.protocol\" = \"SSL\"\n[central]\nbootstrap_servers = \"c:9092\"\n[central.options]\n\"security.protcol\" = \"SSL\"\n";
    std::fs::write(d.join("bridge.toml"), bridge).unwrap();
    let (ok, _, err) = evd(&["validate", "bridge.toml"], d);
    assert!(
        !ok && err.contains("bridge.toml:8: key `central.options.\"security.protcol\"`"),
        "{err}"
    );
    // Acked data must outlive the process: memory:/// is refused.
    let consumer = roles[1].1.replace("file:///tmp/x", "memory:///");
    std::fs::write(d.join("consumer.toml"), consumer).unwrap();
    let (ok, _, err) = evd(&["validate", "consumer.toml"], d);
    assert!(
        !ok && err.contains("key `output_url`") && err.contains("not durable"),
        "{err}"
    );
    // The consumer commits offsets only after its output is durable.
    let consumer = format!(
        "{}[kafka.options]\n\"enable.auto.commit\" = \"true\"\n",
        roles[1].1
    );
    std::fs::write(d.join("consumer.toml"), consumer).unwrap();
    let (ok, _, err) = evd(&["validate", "consumer.toml"], d);
    assert!(
        !ok && err.contains("key `kafka.options.\"enable.auto.commit\"`"),
        "{err}"
    );
}

/// The example configs under examples/config are complete: with the environment a
/// deployment gives them (`${VAR}`), `evd validate` accepts each; with a variable
/// missing it names the file and line.
#[test]
fn the_example_configs_validate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate_keys(d, "node-7");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let env = [
        ("EVD_AGENT_ID", "node-7".to_string()),
        ("EVD_CONSUMER_ID", "c-0".to_string()),
        (
            "EVD_REGISTRY_DIR",
            root.join("examples/registry").display().to_string(),
        ),
        ("EVD_KEYRING", d.join("a.toml").display().to_string()),
        ("EVD_MASTER_KEYRING", d.join("m.toml").display().to_string()),
        ("KAFKA_BOOTSTRAP", "kafka-1:9093".to_string()),
        ("KAFKA_USERNAME", "evd".to_string()),
        ("KAFKA_PASSWORD", "secret".to_string()),
        ("EDGE_KAFKA_BOOTSTRAP", "edge:9093".to_string()),
        ("CENTRAL_KAFKA_BOOTSTRAP", "central:9093".to_string()),
        ("CENTRAL_KAFKA_USERNAME", "evd".to_string()),
        ("CENTRAL_KAFKA_PASSWORD", "secret".to_string()),
    ];
    let run = |file: &str, without: Option<&str>| {
        let path = root.join("examples/config").join(file);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_evd"));
        cmd.args(["validate", path.to_str().unwrap()])
            .current_dir(d);
        for (k, v) in &env {
            if Some(*k) != without {
                cmd.env(k, v);
            }
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for (file, says) in [
        ("agent.toml", "agent config OK"),
        ("consumer.toml", "consumer config OK"),
        ("ops.toml", "ops config OK"),
        ("bridge.toml", "bridge config OK"),
    ] {
        let (ok, out) = run(file, None);
        assert!(ok && out.contains(says), "{file}: {out}");
    }
    let (ok, out) = run("agent.toml", Some("KAFKA_BOOTSTRAP"));
    assert!(
        !ok && out.contains("agent.toml:") && out.contains("KAFKA_BOOTSTRAP is not set"),
        "{out}"
    );
}
