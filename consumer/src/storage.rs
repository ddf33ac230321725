//! Choosing the object store from the output URL.

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::commit::Output;
use crate::store_faults::{FaultRates, FaultyStore};
use crate::store_retry::RetryingStore;

/// The `output_url` check every config that names an output shares.
pub fn check_output_url(url: &str) -> Result<(), (&'static str, String)> {
    match url::Url::parse(url) {
        Ok(_) => Ok(()),
        Err(_) => Err((
            "output_url",
            format!("{url:?} is not a URL (file:///dir, s3://bucket/prefix, …)"),
        )),
    }
}

/// `file:///abs/dir` → a local directory (created if missing), with **fsync on**: every
/// file the commit protocol writes, and every directory entry pointing to it, is on
/// stable storage before the put, copy or rename returns (object_store's default is
/// off, which would let a power loss take committed hours whose offsets were committed
/// and whose spools were freed). Other schemes go through
/// `object_store::parse_url_opts` with options from the environment (`AWS_*`,
/// `GOOGLE_*`, `AZURE_*`), for the backends this build includes.
///
/// Every request is retried on failure ([`RetryingStore`]). With
/// `EVD_TEST_STORE_FAULTS` set (reliability tests only) the store under the retries
/// is wrapped in [`FaultyStore`].
pub fn output_from_url(url: &str) -> Result<Output, String> {
    let mut output = store_from_url(url)?;
    if let Some(rates) = FaultRates::from_env()? {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        eprintln!("evd: EVD_TEST_STORE_FAULTS: injecting object-store faults {rates:?}");
        output.store = Arc::new(FaultyStore::new(output.store, rates, seed));
    }
    output.store = Arc::new(RetryingStore::new(output.store));
    Ok(output)
}

fn store_from_url(url: &str) -> Result<Output, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("output_url {url:?}: {e}"))?;
    if parsed.scheme() == "file" {
        let dir = parsed
            .to_file_path()
            .map_err(|_| format!("output_url {url:?}: not a local path"))?;
        create_dir_durably(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| e.to_string())?
            .with_fsync(true);
        return Ok(Output {
            store: Arc::new(store),
            prefix: Path::default(),
        });
    }
    let env = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
    let (store, prefix) = object_store::parse_url_opts(&parsed, env)
        .map_err(|e| format!("output_url {url:?}: {e}"))?;
    Ok(Output {
        store: Arc::from(store),
        prefix,
    })
}

/// Creates `dir` and any missing parents, fsyncing each parent whose entries changed,
/// so the output root survives a power loss like everything written under it.
fn create_dir_durably(dir: &std::path::Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}
