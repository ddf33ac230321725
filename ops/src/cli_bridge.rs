//! `evd bridge`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use evd_bridge::{BridgeConfig, BridgeParts, CancellationToken, Metrics};

pub fn load_bridge_config(path: &Path) -> Result<BridgeConfig> {
    let (origin, text) = evd_ops::load::config_text(path)?;
    let config = BridgeConfig::from_toml(&origin, &text)?;
    let routes = evd_bridge::routes(&config);
    let specs: Vec<_> = routes
        .iter()
        .flat_map(|r| {
            [
                evd_bridge::kafka_clients::consumer(r),
                evd_bridge::kafka_clients::producer(r),
            ]
        })
        .collect();
    evd_ops::kafka_check::check_clients(&origin, &text, &specs)?;
    Ok(config)
}

/// Runs until SIGTERM/SIGINT (deliver what was read, commit, exit 0) or a fatal error.
pub fn run_bridge(config_path: &Path) -> Result<ExitCode> {
    let config = load_bridge_config(config_path)?;
    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        evd_ops::http::start_role(config.metrics_listen.as_deref(), metrics.clone()).await?;
        evd_ops::signals::cancel_on_terminate(stop.clone())?;
        tracing::info!(
            edge = %config.edge.bootstrap_servers,
            central = %config.central.bootstrap_servers,
            group = %config.group_id,
            edge_options = ?config.edge.options.keys().collect::<Vec<_>>(),
            central_options = ?config.central.options.keys().collect::<Vec<_>>(),
            metrics = ?config.metrics_listen,
            "starting the bridge"
        );
        let parts = BridgeParts { config, metrics };
        tokio::task::spawn_blocking(move || evd_bridge::run(parts, stop)).await??;
        anyhow::Ok(())
    })?;
    tracing::info!("bridge stopped");
    Ok(ExitCode::SUCCESS)
}
