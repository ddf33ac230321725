#![no_main]

use evd_schemas::wire::ack::{self, Ack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ack) = Ack::decode(data) {
        let encoded = ack.encode().expect("decoded acks encode");
        if data.get(4) == Some(&ack::VERSION) {
            // The version this build writes is canonical: the same bytes again.
            assert_eq!(encoded, data);
        } else {
            // An older version reads into the value its re-encoding reads into.
            assert_eq!(Ack::decode(&encoded).expect("re-encoded acks decode"), ack);
        }
    }
});
