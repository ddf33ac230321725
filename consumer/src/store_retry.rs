//! Retries of single object-store requests: every store the consumer uses is wrapped
//! in [`RetryingStore`].
//!
//! A failed put, copy, get or head is tried again, up to [`REQUEST_RETRIES`] times,
//! backing off from 50 ms to 2 s. Answers that are results, not failures (not found,
//! already exists, precondition failed, not modified, not implemented) are returned at
//! once. A retried write may already have happened (its reply was lost): the commit
//! protocol is built for that — plain puts and copies rewrite the same bytes, and a
//! create-only put answers "already exists", which `commit` checks is its own flush.
//!
//! HTTP backends also retry inside `object_store`; this layer covers every backend
//! and counts what it retried ([`retries`]).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, Error, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Tries after the first, per request.
pub const REQUEST_RETRIES: u32 = 10;

static RETRIES: AtomicU64 = AtomicU64::new(0);

/// Store requests retried by this process so far.
pub fn retries() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

/// Counts one retry made elsewhere (a whole commit repeated).
pub(crate) fn count_retry() {
    RETRIES.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
}

impl RetryingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> RetryingStore {
        RetryingStore { inner }
    }
}

/// Whether the error is an answer (retrying gives the same) rather than a failure.
fn is_answer(e: &Error) -> bool {
    matches!(
        e,
        Error::NotFound { .. }
            | Error::AlreadyExists { .. }
            | Error::Precondition { .. }
            | Error::NotModified { .. }
            | Error::NotImplemented { .. }
            | Error::NotSupported { .. }
            | Error::InvalidPath { .. }
            | Error::PermissionDenied { .. }
            | Error::Unauthenticated { .. }
            | Error::UnknownConfigurationKey { .. }
    )
}

/// Runs `op` until it succeeds, gives an answer, or the retries are spent.
async fn retrying<T, F, Fut>(what: &str, location: &Path, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0u32;
    let mut delays =
        evd_runtime::backoff::delays(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        match op().await {
            Err(e) if !is_answer(&e) && attempt < REQUEST_RETRIES => {
                attempt += 1;
                count_retry();
                let wait = delays.next().unwrap_or(Duration::from_secs(2));
                tracing::warn!(
                    "object store {what} {location}: {e}; retry {attempt}/{REQUEST_RETRIES} in {wait:?}"
                );
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

impl fmt::Display for RetryingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryingStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for RetryingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        retrying("put", location, || {
            self.inner.put_opts(location, payload.clone(), opts.clone())
        })
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
        retrying("get", location, || {
            self.inner.get_opts(location, options.clone())
        })
        .await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        retrying("get", location, || self.inner.get_ranges(location, ranges)).await
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
        retrying("copy", to, || {
            self.inner.copy_opts(from, to, options.clone())
        })
        .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutMode};

    use super::*;
    use crate::store_faults::{FaultRates, FaultyStore};

    #[tokio::test]
    async fn failures_are_retried_and_a_lost_create_reply_answers_already_exists() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let lossy = FaultRates {
            error: 0.0,
            lost_reply: 1.0,
            ..FaultRates::default()
        };
        let store = RetryingStore::new(Arc::new(FaultyStore::new(inner.clone(), lossy, 3)));
        let before = retries();
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let got = store.put_opts(&Path::from("m"), "x".into(), create).await;
        assert!(
            matches!(got, Err(Error::AlreadyExists { .. })),
            "the retry finds the object the lost reply wrote: {got:?}"
        );
        assert!(retries() > before);

        let flaky = FaultRates {
            error: 0.5,
            lost_reply: 0.0,
            ..FaultRates::default()
        };
        let store = RetryingStore::new(Arc::new(FaultyStore::new(inner, flaky, 11)));
        for n in 0..20 {
            store
                .put(&Path::from(format!("f{n}")), "y".into())
                .await
                .expect("half the requests fail, every put succeeds");
        }
    }
}
