#![no_main]

use evd_schemas::wire::audit::{self, AuditRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = AuditRecord::decode(data) {
        // Everything a decoded record carries is printable and in range.
        let hour = match &record.body {
            audit::AuditBody::Heartbeat(h) => h.final_before_hour,
            audit::AuditBody::Announcement(a) => a.bucket_hour,
        };
        assert!(hour <= evd_schemas::Hour::MAX);
        let _ = (hour.to_string(), hour.partition_path());
        assert!(evd_schemas::Hour::valid_unix_ms(record.at_ms));
        let encoded = record.encode().expect("decoded records encode");
        if data.get(4) == Some(&audit::VERSION) {
            // The version this build writes is canonical: the same bytes again.
            assert_eq!(encoded, data);
        } else {
            // An older version reads into the value its re-encoding reads into.
            assert_eq!(
                AuditRecord::decode(&encoded).expect("re-encoded records decode"),
                record
            );
        }
    }
});
