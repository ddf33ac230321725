//! Test-only object-store faults: an [`ObjectStore`] wrapper the reliability suite
//! switches on in a test build of `evd consumer` ([`crate::test_faults`]).
//!
//! `error=0.05,lost_reply=0.05` makes each put, copy and get
//! fail with that probability:
//!
//! - `error`: the request fails before it reaches the store (a 5xx, a reset);
//! - `lost_reply`: the write **happens**, then the caller waits 200 ms and gets a
//!   timeout — the case a retry must survive. A create-only put retried after it
//!   answers "already exists", as a real store would.
//!
//! `slow_staging_ms=N` delays every put under `_evd/staging/` by N ms: a flush whose
//! uploads outlast `max.poll.interval.ms` (the zombie-fence test).
//! `ignore_create_only=1` turns create-only puts into overwrites, like a store that
//! ignores `If-None-Match` (the `evd validate --connect` test).
//!
//! Lists and deletes pass through. Without the switch the wrapper is not installed.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use crate::test_faults::FaultRates;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Parses a fault spec (`error=0.05,lost_reply=0.05,slow_staging_ms=N`).
pub fn parse_rates(spec: &str) -> Result<FaultRates, String> {
    let mut rates = FaultRates::default();
    for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("EVD_TEST_STORE_FAULTS: {part:?} is not key=probability"))?;
        if key.trim() == "ignore_create_only" {
            rates.ignore_create_only = value.trim() == "1";
            continue;
        }
        if key.trim() == "slow_staging_ms" {
            rates.slow_staging_ms = value
                .trim()
                .parse()
                .map_err(|_| format!("EVD_TEST_STORE_FAULTS: {value:?} is not a number of ms"))?;
            continue;
        }
        let p: f64 = value
            .trim()
            .parse()
            .ok()
            .filter(|p| (0.0..=1.0).contains(p))
            .ok_or_else(|| format!("EVD_TEST_STORE_FAULTS: {value:?} is not in 0..=1"))?;
        match key.trim() {
            "error" => rates.error = p,
            "lost_reply" => rates.lost_reply = p,
            other => return Err(format!("EVD_TEST_STORE_FAULTS: unknown fault {other:?}")),
        }
    }
    Ok(rates)
}

/// What happens to one request.
enum Fate {
    Pass,
    FailBefore,
    LoseReply,
}

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rates: FaultRates,
    rng: AtomicU64,
    /// Faults injected so far (both kinds).
    pub injected: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, rates: FaultRates, seed: u64) -> FaultyStore {
        FaultyStore {
            inner,
            rates,
            rng: AtomicU64::new(seed.max(1)),
            injected: AtomicU64::new(0),
        }
    }

    fn uniform(&self) -> f64 {
        // xorshift64; races between requests only make it more random.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fate(&self, can_lose_reply: bool) -> Fate {
        let u = self.uniform();
        let fate = if u < self.rates.error {
            Fate::FailBefore
        } else if can_lose_reply && u < self.rates.error + self.rates.lost_reply {
            Fate::LoseReply
        } else {
            Fate::Pass
        };
        if !matches!(fate, Fate::Pass) {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        fate
    }

    fn fault(what: &str, location: &Path) -> object_store::Error {
        object_store::Error::Generic {
            store: "evd-test-faults",
            source: format!("injected fault: {what} {location}").into(),
        }
    }

    /// Runs a write under its fate.
    async fn write<T>(
        &self,
        location: &Path,
        op: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.fate(true) {
            Fate::Pass => op.await,
            Fate::FailBefore => Err(Self::fault("request failed", location)),
            Fate::LoseReply => {
                op.await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(Self::fault("timed out after the write happened", location))
            }
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        if self.rates.ignore_create_only {
            opts.mode = object_store::PutMode::Overwrite;
        }
        if self.rates.slow_staging_ms > 0
            && location
                .as_ref()
                .contains(&format!("{}/", crate::layout::STAGING_DIR))
        {
            tokio::time::sleep(Duration::from_millis(self.rates.slow_staging_ms)).await;
        }
        self.write(location, self.inner.put_opts(location, payload, opts))
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match self.fate(false) {
            Fate::Pass | Fate::LoseReply => self.inner.get_opts(location, options).await,
            Fate::FailBefore => Err(Self::fault("request failed", location)),
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.write(to, self.inner.copy_opts(from, to, options))
            .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.write(to, self.inner.rename_opts(from, to, options))
            .await
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutMode};

    use super::*;

    #[test]
    fn the_spec_names_each_fault() {
        assert_eq!(
            parse_rates("error=0.1, lost_reply=0.2").unwrap(),
            FaultRates {
                error: 0.1,
                lost_reply: 0.2,
                ..FaultRates::default()
            }
        );
        assert!(parse_rates("eror=0.1").unwrap_err().contains("eror"));
        assert!(parse_rates("error=2").is_err());
        assert_eq!(
            parse_rates("slow_staging_ms=1500").unwrap().slow_staging_ms,
            1_500
        );
    }

    #[tokio::test]
    async fn a_lost_reply_writes_and_the_retry_finds_the_object() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let rates = FaultRates {
            error: 0.0,
            lost_reply: 1.0,
            ..FaultRates::default()
        };
        let store = FaultyStore::new(inner.clone(), rates, 7);
        let path = Path::from("m.json");
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let first = store.put_opts(&path, "x".into(), create.clone()).await;
        assert!(first.is_err(), "the reply is lost");
        assert!(inner.head(&path).await.is_ok(), "but the write happened");
        let retry = inner.put_opts(&path, "x".into(), create).await;
        assert!(matches!(
            retry,
            Err(object_store::Error::AlreadyExists { .. })
        ));
        assert_eq!(store.injected.load(Ordering::Relaxed), 1);
    }
}
