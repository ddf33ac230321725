#![no_main]

use std::sync::LazyLock;

use evd_schemas::Registry;
use evd_schemas::event::parse_event_line;
use libfuzzer_sys::fuzz_target;

const TYPE: &str = r#"name = "T"
version = 1
owner = "o"
tier = "low"
[[fields]]
name = "s"
type = "string"
required = true
[[fields]]
name = "i"
type = "int64"
[[fields]]
name = "t"
type = "timestamp"
[[fields]]
name = "j"
type = "json"
"#;

static REGISTRY: LazyLock<Registry> =
    LazyLock::new(|| Registry::from_sources([("t.toml", TYPE)]).expect("fixed registry"));

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = parse_event_line(data, 1 << 16) {
        let _ = REGISTRY.validate(&line);
    }
});
