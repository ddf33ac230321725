//! Choosing the object store from the output URL.

use evd_schemas::Invalid;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::commit::Output;
use crate::store_retry::RetryingStore;

/// The output URL schemes this build writes to. Each is durable once a put returns
/// and honours create-only puts (`PutMode::Create`), which the commit protocol needs.
pub const OUTPUT_SCHEMES: &str =
    "file:///dir, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix";

/// The `output_url` check every config that names an output shares: a URL, of a
/// scheme this build includes, and durable.
pub fn check_output_url(url: &str) -> Result<(), Invalid> {
    let parsed = url::Url::parse(url).map_err(|_| {
        Invalid::at(
            "output_url",
            format!("{url:?} is not a URL ({OUTPUT_SCHEMES})"),
        )
    })?;
    match parsed.scheme() {
        "file" | "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" => Ok(()),
        "memory" => Err(Invalid::at(
            "output_url",
            format!(
                "{url:?} is not durable: committed data would vanish with the process \
                 (after its spool was freed); use one of {OUTPUT_SCHEMES}"
            ),
        )),
        other => Err(Invalid::at(
            "output_url",
            format!(
                "scheme {other:?} is not an output this build writes to; use one of {OUTPUT_SCHEMES}"
            ),
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
/// Every request is retried on failure ([`RetryingStore`]). In a test build with the
/// store-faults switch set ([`crate::test_faults`]) the store under the retries is
/// wrapped in a fault injector.
pub fn output_from_url(url: &str) -> Result<Output, String> {
    let mut output = store_from_url(url)?;
    #[cfg(feature = "test-faults")]
    if let Some(rates) = &crate::test_faults::switches().store_faults {
        let rates = rates.clone()?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        output.store = Arc::new(crate::store_faults::FaultyStore::new(
            output.store,
            rates,
            seed,
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_durable_and_unknown_outputs_are_refused() {
        let Invalid { key, why } = check_output_url("memory:///").unwrap_err();
        assert_eq!(key, "output_url");
        assert!(why.contains("not durable"), "{why}");
        for url in ["http://host/x", "ftp://host/x", "not a url"] {
            assert!(check_output_url(url).is_err(), "{url}");
        }
        for url in [
            "file:///tmp/out",
            "s3://bucket/p",
            "gs://bucket/p",
            "az://container/p",
        ] {
            check_output_url(url).unwrap_or_else(|e| panic!("{url}: {e:?}"));
        }
    }

    /// The documented cloud stores are compiled in: building one fails, if at all, for
    /// its configuration, never for a missing backend.
    #[test]
    fn gcs_and_azure_are_compiled_in() {
        for url in ["gs://bucket/prefix", "az://container/prefix"] {
            if let Err(e) = store_from_url(url) {
                assert!(
                    !e.contains("feature")
                        && !e.contains("not enabled")
                        && !e.contains("NotImplemented"),
                    "{url}: {e}"
                );
            }
        }
    }
}
