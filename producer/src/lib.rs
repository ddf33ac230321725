//! The evd agent: accepts events over a Unix socket and from tailed log files,
//! makes them durable in a spool before acking, batches, seals and produces them to
//! Kafka, and frees the spool only on end-to-end acks.
//!
//! Sans-IO cores: [`spool`] (over a `SegmentStore`), [`batcher`], [`tail::tailer`]
//! (over a `TailFs`). Shells: [`writer`] (the thread owning the spool), [`socket`],
//! [`tail::shell`], [`sender`], [`acks`], wired in [`agent`].

pub mod acks;
pub mod agent;
pub mod batcher;
pub mod client;
pub mod clock;
pub mod config;
pub mod dedup;
pub mod kafka_clients;
pub mod metrics;
pub mod refusal;
pub mod sender;
pub mod socket;
pub mod spool;
pub mod tail;
pub mod test_faults;
pub mod writer;
