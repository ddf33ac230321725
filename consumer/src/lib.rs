//! The evd consumer: Kafka batches → decrypt, validate, dedup → hourly Parquet buckets
//! on object storage → end-to-end acks.
//!
//! Sans-IO cores: [`flush`] (what a flush holds and commits: dedup, manifests),
//! [`rows`] (batches to Arrow), [`ledger`] (manifests and the dedup ledger).
//! [`commit`] is the commit protocol over `object_store`, [`closing`] how the auditor
//! closes an hour against it; [`run`] the Kafka shell, `group` its group membership.

mod acker;
pub mod closing;
pub mod commit;
pub mod compaction;
pub mod config;
pub mod fence;
pub mod flush;
mod group;
pub mod kafka_clients;
pub mod layout;
pub mod ledger;
pub mod metrics;
mod orphans;
pub mod parquet_options;
pub mod parquet_out;
mod quarantine;
pub mod replay;
pub mod rows;
pub mod run;
pub mod storage;
#[cfg(any(test, feature = "test-faults"))]
pub mod store_faults;
pub mod store_retry;
#[cfg(test)]
mod test_batches;
pub mod test_faults;
