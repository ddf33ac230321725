//! `evd agent` and `evd send`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use evd_ops::load;
use evd_producer::agent::{self, AgentParts, Reload};
use evd_producer::client::{Response, send_lines};
use evd_runtime::Stop as CancellationToken;

/// Reads an agent config; relative paths in it are resolved against its directory.
pub fn load_agent_config(path: &Path) -> Result<evd_producer::config::AgentConfig> {
    let (origin, text) = evd_ops::load::config_text(path)?;
    let mut config = evd_producer::config::AgentConfig::from_toml(&origin, &text)?;
    let agent_id = config.agent_id();
    evd_ops::kafka_check::check_clients(
        &origin,
        &text,
        &[
            evd_producer::kafka_clients::producer(&config.kafka),
            evd_producer::kafka_clients::acks_consumer(&config.kafka, &agent_id),
        ],
    )?;
    let base = path.parent().unwrap_or(Path::new("."));
    for p in [
        &mut config.registry_dir,
        &mut config.keyring_path,
        &mut config.socket.path,
        &mut config.spool.dir,
    ] {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    let tail_paths = config
        .sources
        .iter_mut()
        .flat_map(|s| s.include.iter_mut().chain(s.exclude.iter_mut()))
        .chain(config.tailer.checkpoint_path.as_mut());
    for p in tail_paths {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(config)
}

pub fn run_agent(config_path: &Path) -> Result<ExitCode> {
    let config = load_agent_config(config_path)?;
    let registry = load::registry_dir(&config.registry_dir)?;
    let keys = load::agent_keyring(&config.keyring_path)?;
    let registry_dir = config.registry_dir.clone();
    let reload = Reload {
        load: Box::new(move || load::registry_dir(&registry_dir).map_err(|e| e.to_string())),
        requested: Arc::new(tokio::sync::Notify::new()),
    };
    let stop = CancellationToken::new();
    let runtime = tokio::runtime::Runtime::new()?;
    let metrics = Arc::new(evd_producer::metrics::Metrics::default());
    let _guard = runtime.enter();
    runtime.block_on(evd_ops::http::start_role(
        config.metrics_listen.as_deref(),
        metrics.clone(),
    ))?;
    evd_ops::signals::cancel_on_terminate(stop.clone())?;
    evd_ops::signals::notify_on_hangup(reload.requested.clone())?;
    tracing::info!(
        agent_id = %config.agent_id(),
        socket = %config.socket.path.display(),
        spool = %config.spool.dir.display(),
        kafka = %config.kafka.bootstrap_servers,
        kafka_options = ?config.kafka.options.keys().collect::<Vec<_>>(),
        metrics = ?config.metrics_listen,
        "starting the agent"
    );
    let parts = AgentParts {
        config,
        registry,
        keys,
        clock: evd_producer::clock::system_or_test_clock(),
        reload: Some(reload),
        metrics,
    };
    runtime.block_on(agent::run(parts, stop))?;
    tracing::info!("agent stopped");
    Ok(ExitCode::SUCCESS)
}

/// `evd send`: stdin lines to the socket; prints errors (and acks unless `quiet`).
/// Exit code 1 if any line was refused or not answered.
pub fn run_send(socket: &Path, quiet: bool) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut refused = 0u64;
    let mut acked = 0u64;
    let result =
        runtime.block_on(send_lines(
            socket,
            tokio::io::stdin(),
            |_, response| match response {
                Response::Ok(seq) => {
                    acked += 1;
                    if !quiet {
                        println!("{{\"ok\":{seq}}}");
                    }
                }
                Response::Error { line, error, .. } => {
                    refused += 1;
                    eprintln!("line {line}: {error}");
                }
            },
        ));
    eprintln!("evd send: {acked} acked, {refused} refused");
    result.with_context(|| format!("sending to {}", socket.display()))?;
    Ok(if refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
