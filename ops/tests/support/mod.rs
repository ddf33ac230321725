//! What the auditor's integration tests share: a fixed clock, the example registry, a
//! config with short deadlines, a shared state and a local output.
#![allow(dead_code)] // each test file uses its own part

use std::sync::Arc;

use bytes::Bytes;
use evd_consumer::commit::Output;
use evd_consumer::layout::hour_dir;
use evd_consumer::ledger::{FileEntry, Manifest};
use evd_ops::auditor::Shared;
use evd_ops::config::OpsConfig;
use evd_producer::clock::Clock;
use evd_schemas::Hour;
use evd_schemas::Registry;

pub struct Fixed(pub i64);

impl Clock for Fixed {
    fn now_us(&self) -> i64 {
        self.0 * 1000
    }
}

pub fn registry() -> Registry {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/registry");
    evd_ops::load::registry_dir(&dir).unwrap()
}

/// An ops config with 1 s lateness and 60 s deadlines, plus `extra` top-level lines.
pub fn config(extra: &str) -> OpsConfig {
    OpsConfig::from_toml(
        "ops.toml",
        &format!(
            "registry_dir = \"r\"\nkeyring_path = \"k\"\noutput_url = \"file:///unused\"\n\
             late_after_ms = 1000\ndeadline_high_ms = 60000\ndeadline_normal_ms = 60000\n\
             deadline_low_ms = 60000\n{extra}[kafka]\nbootstrap_servers = \"unused\"\n"
        ),
    )
    .unwrap()
}

/// The auditor's shared state at a fixed `now_ms`, 48-hour window.
pub fn shared(now_ms: i64, config: &OpsConfig) -> Arc<Shared> {
    Shared::new(&registry(), config.policy(), Arc::new(Fixed(now_ms)), 48)
}

pub fn output(dir: &std::path::Path) -> Output {
    Output {
        store: Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap()),
        prefix: object_store::path::Path::default(),
    }
}

/// Commits `bytes` as the one Parquet file of flush `id` in `ty`'s `hour`, through the
/// consumer's commit protocol.
pub async fn commit_file(output: &Output, id: &str, ty: &str, hour: Hour, rows: u64, bytes: Bytes) {
    let staging = format!("_evd/staging/{id}/0.parquet");
    let file = FileEntry {
        staging: staging.clone(),
        final_path: format!("{}/{id}-0.parquet", hour_dir(ty, hour)),
        event_type: ty.into(),
        hour: hour.0,
        rows,
        bytes: bytes.len() as u64,
    };
    let mut manifest = Manifest::of_files(id, "c", 0, vec![file]);
    output
        .commit(&mut manifest, vec![(staging, bytes)])
        .await
        .unwrap();
}

/// Serves the auditor's HTTP face for `shared` on a free port; returns `host:port`.
pub fn serve(shared: Arc<Shared>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                evd_ops::http::serve(listener, evd_ops::dashboard::router(shared)).await
            })
    });
    addr
}
