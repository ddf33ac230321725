#![no_main]

use evd_schemas::wire::audit::{self, AuditRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = AuditRecord::decode(data) {
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
