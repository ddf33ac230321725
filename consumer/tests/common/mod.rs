//! Helpers the consumer's integration tests share.

use std::sync::Arc;

use bytes::Bytes;
use evd_consumer::commit::Output;
use evd_consumer::ledger::{AgentBatches, MANIFEST_VERSION, Manifest};
use evd_schemas::{Origin, SpoolId};
use object_store::local::LocalFileSystem;
use object_store::path::Path;

/// An output on a local directory.
pub fn output(dir: &std::path::Path) -> Output {
    Output {
        store: Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap()),
        prefix: Path::default(),
    }
}

/// Agent "a"'s spool incarnation in these tests.
pub fn a() -> Origin {
    Origin::new("a", SpoolId(1))
}

/// Commits flush `f<seq>` holding batch `seq` of [`a`] (no data files: the ledger is
/// the point).
pub async fn commit(out: &Output, seq: u64) {
    let mut m = Manifest {
        version: MANIFEST_VERSION,
        flush_id: format!("f{seq:06}"),
        consumer_id: "c".into(),
        created_at_ms: 0,
        files: vec![],
        batches: vec![AgentBatches {
            agent_id: "a".into(),
            spool_id: SpoolId(1),
            ranges: vec![(seq, seq)],
        }],
        delivered: vec![],
        quarantine: vec![],
        offsets: vec![],
        aborted: false,
    };
    out.commit(&mut m, Vec::<(String, Bytes)>::new())
        .await
        .unwrap();
}
