//! The auditor's pure core: what each agent published per (type, hour), what landed
//! in the Parquet files, which hours are due to close and how. The shell that feeds it
//! (Kafka audit topic, object-store scans) is `crate::auditor`.

pub mod catch_up;
pub mod histogram;
#[cfg(test)]
mod prune_tests;
#[cfg(test)]
mod settle_tests;
pub mod state;
#[cfg(test)]
mod tests;

pub use catch_up::CatchUp;
pub use histogram::Histogram;
pub use state::{
    AgentHour, AuditState, CellState, ClosePolicy, ClosedMarker, FileScan, HostReport, HourReport,
    IdentityAlarm, MarkerFile, StateSize,
};
