//! evd operations: the auditor (completeness, data loss, lateness, hour closing), its
//! dashboard and metrics, and loading configuration from disk. The `evd` binary
//! (src/main.rs) is a thin shell over this library.

pub mod audit;
pub mod audit_topic;
pub mod auditor;
pub mod auditor_metrics;
pub mod auditor_role;
mod auditor_scan;
pub mod combine;
pub mod config;
pub mod dashboard;
pub mod ddl;
pub mod http;
pub mod kafka_check;
pub mod load;
pub mod logging;
pub mod probe;
pub mod signals;
pub mod topics;
