//! Plain-value batches for the pure cores' unit tests (`rows`, `flush`).

use evd_schemas::wire::batch::{self, BatchMeta, OpenedBatch};
use evd_schemas::wire::record::put_record;
use evd_schemas::{Hour, Key, MasterKeyring, Registry, SpoolId};

pub const HOUR: Hour = Hour(493_127);

/// `PageView` (user_id required, url, n int64, extra json) and `Click` (user_id).
pub fn registry() -> Registry {
    const PAGE_VIEW: &str = "name = \"PageView\"\nversion = 1\nowner = \"web\"\ntier = \"high\"\n\
        [[fields]]\nname = \"user_id\"\ntype = \"string\"\nrequired = true\n\
        [[fields]]\nname = \"url\"\ntype = \"string\"\n\
        [[fields]]\nname = \"n\"\ntype = \"int64\"\n\
        [[fields]]\nname = \"extra\"\ntype = \"json\"\n";
    const CLICK: &str = "name = \"Click\"\nversion = 1\nowner = \"web\"\ntier = \"high\"\n\
        [[fields]]\nname = \"user_id\"\ntype = \"string\"\nrequired = true\n";
    Registry::from_sources([("pv.toml", PAGE_VIEW), ("click.toml", CLICK)]).unwrap()
}

fn master() -> MasterKeyring {
    MasterKeyring::new([(1, Key([7; 32]))])
}

/// An authentic batch of `bodies` (event seqs from 1, received in `hour`).
pub fn opened(agent: &str, seq: u64, event_type: &str, hour: Hour, bodies: &[&str]) -> OpenedBatch {
    let mut payload = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let received_us = hour.start_ms() * 1000 + i as i64;
        put_record(&mut payload, i as u64 + 1, received_us, body.as_bytes());
    }
    let meta = BatchMeta {
        agent_id: agent.into(),
        spool_id: SpoolId(9),
        batch_seq: seq,
        event_type: event_type.into(),
        bucket_hour: hour,
        created_at_ms: hour.start_ms(),
        event_count: bodies.len() as u32,
    };
    let keys = master().derive_agent_keyring(agent);
    let sealed = batch::seal(&keys, &meta, &payload, 1).unwrap();
    batch::open(&master(), &sealed).unwrap()
}

/// A valid PageView line.
pub fn page_view(user: &str) -> String {
    format!(r#"{{"type":"PageView","ts":1700000000000,"user_id":"{user}","n":3}}"#)
}
