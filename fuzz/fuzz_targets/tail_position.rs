#![no_main]

use evd_schemas::tail::{Checkpoint, Fingerprint, Position};
use libfuzzer_sys::fuzz_target;

// The tailer's persisted formats: the checkpoint file and the `tail:` event id.
fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Checkpoint::decode(data) {
        // What decodes re-encodes to an equal checkpoint.
        assert_eq!(Checkpoint::decode(&c.encode()).expect("round trip"), c);
        for entry in &c.files {
            let _ = entry.position();
        }
    }
    if let Ok(id) = std::str::from_utf8(data)
        && let Some(pos) = Position::from_event_id(id)
    {
        assert_eq!(Position::from_event_id(&pos.event_id()), Some(pos));
    }
    let _ = Fingerprint::of(data).matches(data);
});
