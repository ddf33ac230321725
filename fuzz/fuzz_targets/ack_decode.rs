#![no_main]

use evd_schemas::wire::ack::Ack;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ack) = Ack::decode(data) {
        // Whatever decodes re-encodes to the same bytes: the format is canonical.
        assert_eq!(ack.encode().expect("decoded acks encode"), data);
    }
});
