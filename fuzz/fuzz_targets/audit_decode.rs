#![no_main]

use evd_schemas::wire::audit::{self, AuditRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = evd_schemas::MasterKeyring::new([(1, evd_schemas::Key([7; 32]))]);
    if let Ok(record) = AuditRecord::decode(data, &keys) {
        // Everything a decoded record carries is printable and in range.
        let hour = match &record.body {
            audit::AuditBody::Heartbeat(h) => h.final_before_hour,
            audit::AuditBody::Announcement(a) => a.bucket_hour,
        };
        assert!(hour <= evd_schemas::Hour::MAX);
        let _ = (hour.to_string(), hour.partition_path());
        assert!(evd_schemas::Hour::valid_unix_ms(record.at_ms));
        let encoded = record.encode(&keys).expect("decoded records encode");
        // Only the version this build writes is read, and it is canonical (the tag is
        // deterministic): the same bytes again.
        assert_eq!(encoded, data);
    }
});
