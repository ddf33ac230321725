//! The evd consumer: Kafka batches → decrypt, validate, dedup → hourly Parquet buckets
//! on object storage → end-to-end acks.
//!
//! Sans-IO cores: [`rows`] (batches to Arrow), [`ledger`] (manifests and dedup).
//! [`commit`] is the commit protocol over `object_store`, [`closing`] how the auditor
//! closes an hour against it; [`run`] the Kafka shell.

mod acker;
pub mod closing;
pub mod commit;
pub mod compaction;
pub mod config;
pub mod fence;
pub mod kafka_clients;
pub mod ledger;
pub mod metrics;
mod orphans;
pub mod parquet_out;
pub mod rows;
pub mod run;
pub mod storage;
#[cfg(any(test, feature = "test-faults"))]
pub mod store_faults;
pub mod store_retry;
pub mod test_faults;
