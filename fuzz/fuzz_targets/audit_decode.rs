#![no_main]

use evd_schemas::wire::audit::AuditRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = AuditRecord::decode(data) {
        assert_eq!(record.encode().expect("decoded records encode"), data);
    }
});
