//! Any bytes given to the batch decoder: no panic, no unbounded allocation. Half the
//! inputs are sealed first so the fuzzer also reaches the post-authentication paths
//! (decompression cap, checksum, record framing).
#![no_main]

use evd_schemas::wire::batch::{self, BatchMeta};
use evd_schemas::{Hour, Key, MasterKeyring};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let master = MasterKeyring::new([(1, Key([7; 32]))]);
    if let Ok(header) = batch::peek_header(data) {
        // A decoded header's hour is in range and prints.
        assert!(header.meta.bucket_hour <= Hour::MAX);
        let _ = header.meta.bucket_hour.partition_path();
    }
    let _ = batch::open(&master, data);
    // Seal arbitrary bytes as a "payload" (usually rejected as records) and open it.
    if let Some((&count, payload)) = data.split_first() {
        let meta = BatchMeta {
            agent_id: "fuzz".into(),
            spool_id: evd_schemas::SpoolId(1),
            batch_seq: 1,
            event_type: "T".into(),
            bucket_hour: Hour(0),
            created_at_ms: 0,
            event_count: u32::from(count),
        };
        let keys = master.derive_agent_keyring("fuzz");
        if let Ok(sealed) = batch::seal(&keys, &meta, payload, 1) {
            batch::open(&master, &sealed).expect("a batch we sealed must open");
        }
    }
});
