#![no_main]

use evd_schemas::wire::ack::Ack;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = evd_schemas::MasterKeyring::new([(1, evd_schemas::Key([7; 32]))]);
    if let Ok(ack) = Ack::decode(data, &keys) {
        let encoded = ack.encode(&keys).expect("decoded acks encode");
        // Only the version this build writes is read, and it is canonical (the tag is
        // deterministic): the same bytes again.
        assert_eq!(encoded, data);
    }
});
