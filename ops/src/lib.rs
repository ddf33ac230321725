//! evd operations: loading configuration from disk and, later, the auditor and the
//! dashboard. The `evd` binary (src/main.rs) is a thin shell over this library.

pub mod load;
pub mod metrics_http;
