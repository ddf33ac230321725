//! The evd agent: accepts events over a Unix socket (and, later, from tailed files),
//! makes them durable in a spool before acking, batches, seals and produces them to
//! Kafka, and frees the spool only on end-to-end acks.

pub mod spool;
