#![no_main]

use evd_schemas::{AgentKeyring, MasterKeyring, Registry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Registry::from_sources([("fuzz.toml", text)]);
        let _ = MasterKeyring::from_toml("fuzz.toml", text);
        let _ = AgentKeyring::from_toml("fuzz.toml", text);
    }
});
