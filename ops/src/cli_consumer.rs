//! `evd consumer`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use evd_consumer::config::ConsumerConfig;
use evd_consumer::metrics::Metrics;
use evd_consumer::run::{ConsumerParts, run};
use evd_consumer::storage::output_from_url;
use evd_ops::load;
use evd_runtime::Stop as CancellationToken;

/// Reads a consumer config; relative paths are resolved against its directory.
pub fn load_consumer_config(path: &Path) -> Result<ConsumerConfig> {
    let (origin, text) = evd_ops::load::config_text(path)?;
    let mut config = ConsumerConfig::from_toml(&origin, &text)?;
    evd_ops::kafka_check::check_clients(
        &origin,
        &text,
        &[
            evd_consumer::kafka_clients::batch_consumer(&config.kafka),
            evd_consumer::kafka_clients::acks_producer(&config.kafka),
        ],
    )?;
    let base = path.parent().unwrap_or(Path::new("."));
    for p in [&mut config.registry_dir, &mut config.keyring_path] {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(config)
}

pub fn run_consumer(config_path: &Path) -> Result<ExitCode> {
    let config = load_consumer_config(config_path)?;
    let registry = load::registry_dir(&config.registry_dir)?;
    let keys = load::master_keyring(&config.keyring_path)?;
    let output = output_from_url(&config.output_url).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    runtime.block_on(async {
        evd_ops::http::start_role(config.metrics_listen.as_deref(), metrics.clone()).await?;
        evd_ops::signals::cancel_on_terminate(stop.clone())?;
        tracing::info!(
            consumer_id = ?config.consumer_id,
            output = %config.output_url,
            kafka = %config.kafka.bootstrap_servers,
            group = %config.kafka.group_id,
            kafka_options = ?config.kafka.options.keys().collect::<Vec<_>>(),
            metrics = ?config.metrics_listen,
            "starting the consumer"
        );
        let parts = ConsumerParts {
            config,
            registry,
            keys,
            output,
            metrics,
        };
        run(parts, stop).await?;
        anyhow::Ok(())
    })?;
    tracing::info!("consumer stopped");
    Ok(ExitCode::SUCCESS)
}
