//! The auditor as a role, shaped like the agent, consumer and bridge:
//! `run(parts, stop)`. The caller binds the dashboard's listener first (a port in use
//! is a start-up error, not a log line) and owns signals.

use std::sync::Arc;

use evd_consumer::commit::Output;
use evd_runtime::Stop as CancellationToken;
use evd_schemas::MasterKeyring;
use tokio::net::TcpListener;

use crate::auditor::{OpsError, Shared, scan_and_close};
use crate::config::OpsConfig;

pub struct AuditorParts {
    pub config: OpsConfig,
    pub output: Output,
    pub shared: Arc<Shared>,
    pub keys: MasterKeyring,
    /// Where the dashboard, JSON API and `/metrics` are served (`config.listen`).
    pub listener: TcpListener,
}

/// Reads the audit topic, serves the dashboard, scans and closes hours and, with
/// `[combine] enabled`, combines closed hours (`crate::combine`), until
/// `stop` is cancelled. A failed audit-topic reader is logged and ends the reading,
/// not the role (the dashboard then shows the hosts' reports ageing).
pub async fn run(parts: AuditorParts, stop: CancellationToken) -> Result<(), OpsError> {
    let AuditorParts {
        config,
        output,
        shared,
        keys,
        listener,
    } = parts;
    let reader = {
        let (config, shared) = (config.clone(), shared.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::audit_topic::read_audit_topic(&config, shared, keys).await {
                tracing::error!(
                    "audit topic reader stopped: {}",
                    evd_runtime::error_chain(&e)
                );
            }
        })
    };
    let http = tokio::spawn(crate::http::serve(
        listener,
        crate::dashboard::router(shared.clone()),
    ));
    let combiner = config.combine.enabled.then(|| {
        let (config, output, shared, stop) =
            (config.clone(), output.clone(), shared.clone(), stop.clone());
        tokio::spawn(async move { crate::combine::run(&config, &output, shared, stop).await })
    });
    scan_and_close(&config, &output, shared, stop).await;
    if let Some(combiner) = combiner {
        combiner.abort();
    }
    reader.abort();
    http.abort();
    Ok(())
}
