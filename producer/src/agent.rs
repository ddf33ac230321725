//! Wires the agent together: spool + writer thread, socket server, sender, acks
//! consumer, and signals (SIGTERM/SIGINT drain, SIGHUP reloads the
//! registry).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use evd_schemas::{AgentKeyring, Origin, Registry};
use tokio::signal::unix::{SignalKind, signal};

use crate::batcher::{BatchLimits, Batcher};
use crate::clock::Clock;
use crate::config::AgentConfig;
use crate::dedup::IdWindow;
use crate::metrics::Metrics;
use crate::sender::{Sender, SenderSettings};
use crate::socket::{self, SocketContext};
use crate::spool::{DirStore, Spool, SpoolError, SpoolLimits};
use crate::writer::{Writer, WriterMsg};
use crate::{acks, tail, writer};

/// Why the agent stopped, by what the operator does next.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration, keyring or spool does not fit: fix what the message names.
    #[error("configuration: {0}")]
    Config(String),
    /// Durability could not be guaranteed (spool I/O): the process must exit non-zero.
    #[error("fatal: {0}")]
    Fatal(String),
}

/// Reloads the registry on SIGHUP.
pub type RegistryLoader = Box<dyn Fn() -> Result<Registry, String> + Send + Sync>;

pub struct AgentParts {
    pub config: AgentConfig,
    pub registry: Registry,
    pub keys: AgentKeyring,
    pub clock: Arc<dyn Clock>,
    pub reload: Option<RegistryLoader>,
    /// Counters the caller may serve (`evd` serves them on `metrics_listen`).
    pub metrics: Arc<Metrics>,
}

/// Opens the spool. A disk too full for a new segment (another process filled it) is
/// waited out, logged once: the socket is not served meanwhile, so nothing is acked.
async fn open_spool(
    dir: &std::path::Path,
    agent_id: &str,
    limits: SpoolLimits,
) -> Result<(Spool<DirStore>, crate::spool::Recovered), AgentError> {
    let mut logged = false;
    loop {
        let store = DirStore::open(dir)
            .map_err(|e| AgentError::Fatal(format!("spool dir {}: {e}", dir.display())))?;
        match Spool::open(store, agent_id, limits) {
            Ok(opened) => return Ok(opened),
            Err(e @ SpoolError::DiskFull { .. }) => {
                if !logged {
                    tracing::warn!("{e}: waiting for space on {} before serving", dir.display());
                    logged = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e @ (SpoolError::WrongAgent { .. } | SpoolError::MixedSpools { .. })) => {
                return Err(AgentError::Config(e.to_string()));
            }
            Err(other) => return Err(AgentError::Fatal(other.to_string())),
        }
    }
}

/// Runs the agent until SIGTERM/SIGINT (clean drain, `Ok`) or a fatal error.
pub async fn run(parts: AgentParts) -> Result<(), AgentError> {
    let AgentParts {
        config,
        registry,
        keys,
        clock,
        reload,
        metrics,
    } = parts;
    let agent_id = config.agent_id();
    if keys.agent_id() != agent_id {
        return Err(AgentError::Config(format!(
            "keyring is for agent {:?} but this agent is {agent_id:?}; derive one with `evd keys derive --agent {agent_id}`",
            keys.agent_id()
        )));
    }
    let limits = SpoolLimits {
        dedup_window_us: config.spool.dedup_window_ms as i64 * 1000,
        max_bytes: config.spool.max_bytes,
        segment_bytes: config.spool.segment_bytes,
    };
    let (spool, recovered) = open_spool(&config.spool.dir, &agent_id, limits).await?;
    let spool_id = spool.spool_id();
    tracing::info!(
        %agent_id,
        "spool {} is incarnation {spool_id}",
        config.spool.dir.display()
    );
    let report = &recovered.report;
    if report.torn_tail_bytes > 0 || report.corrupt_regions > 0 {
        tracing::warn!(
            "spool recovery: {} torn tail bytes (never acked), {} corrupt regions ({} bytes), {} events lost: {}",
            report.torn_tail_bytes,
            report.corrupt_regions,
            report.corrupt_bytes,
            report.lost_event_count(),
            report.lost_events
        );
    }
    Metrics::add(
        &metrics.spool_lost_events_at_recovery,
        report.lost_event_count(),
    );

    let registry = Arc::new(RwLock::new(Arc::new(registry)));
    let (to_sender, sender_rx) = tokio::sync::mpsc::unbounded_channel();
    let (to_writer, writer_rx) = std::sync::mpsc::channel::<WriterMsg>();
    let mut writer = Writer {
        spool,
        batcher: Batcher::new(BatchLimits {
            max_events: config.batch.max_events,
            max_bytes: config.batch.max_bytes,
            max_age_ms: config.batch.max_age_ms as i64,
        }),
        keys: keys.clone(),
        zstd_level: config.batch.zstd_level,
        group_commit_delay: Duration::from_millis(config.spool.group_commit_delay_ms),
        clock: clock.clone(),
        metrics: metrics.clone(),
        to_sender,
        ids: IdWindow::new(config.spool.dedup_window_ms as i64 * 1000),
        deferred: writer::Deferred::default(),
    };
    let tail_positions: Vec<_> = recovered
        .ids
        .iter()
        .filter(|r| evd_schemas::tail::is_tail_id(&r.event_id))
        .cloned()
        .collect();
    writer
        .resume(recovered.pending, recovered.ids)
        .map_err(|e| AgentError::Fatal(e.to_string()))?;
    let mut writer_thread = tokio::task::spawn_blocking(move || writer.run(writer_rx));

    let sender = Sender::new(
        SenderSettings {
            agent_id: agent_id.clone(),
            spool_id,
            keys: keys.clone(),
            producer_config: client_config(crate::kafka_clients::producer(&config.kafka))?,
            audit_topic: config.kafka.audit_topic.clone(),
            retransmit_after: Duration::from_millis(config.retransmit_after_ms),
            heartbeat_interval: Duration::from_millis(config.heartbeat_interval_ms),
            started_at_ms: clock.now_ms(),
        },
        registry.clone(),
        to_writer.clone(),
        clock.clone(),
        metrics.clone(),
    )
    .map_err(|e| AgentError::Config(format!("kafka producer: {e}")))?;
    let sender_task = tokio::spawn(sender.run(sender_rx));

    let acks_config = client_config(crate::kafka_clients::acks_consumer(
        &config.kafka,
        &agent_id,
    ))?;
    let acks_task = tokio::spawn(acks::run(
        acks_config,
        config.kafka.acks_topic.clone(),
        Origin::new(agent_id.clone(), spool_id),
        keys,
        to_writer.clone(),
        metrics.clone(),
    ));

    let listener = socket::bind(&config.socket.path, config.socket.mode)
        .await
        .map_err(|e| AgentError::Config(format!("socket {}: {e}", config.socket.path.display())))?;
    let ctx = Arc::new(SocketContext {
        registry: registry.clone(),
        to_writer: to_writer.clone(),
        max_line_bytes: config.socket.max_line_bytes,
        allowed_uids: config.socket.allowed_uids.clone(),
        allowed_gids: config.socket.allowed_gids.clone(),
        metrics: metrics.clone(),
    });
    let socket_task = tokio::spawn(socket::serve(listener, ctx));
    Metrics::set(&metrics.ready, 1);

    let tail_stop = Arc::new(AtomicBool::new(false));
    let mut tail_task = if config.sources.is_empty() {
        None
    } else {
        tail::shell::check_sources(&config.sources, &registry.read().expect("registry lock"))
            .map_err(AgentError::Config)?;
        let shell = tail::shell::TailShell {
            sources: config.sources.clone(),
            settings: config.tailer.clone(),
            checkpoint_path: config.checkpoint_path(),
            registry: registry.clone(),
            to_writer: to_writer.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            stop: tail_stop.clone(),
        };
        Some(tokio::task::spawn_blocking(move || {
            shell.run(&tail_positions)
        }))
    };
    tracing::info!(
        %agent_id,
        "ready: listening on {}",
        config.socket.path.display()
    );

    let mut term = signal(SignalKind::terminate()).map_err(|e| AgentError::Fatal(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| AgentError::Fatal(e.to_string()))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| AgentError::Fatal(e.to_string()))?;
    let outcome = loop {
        tokio::select! {
            _ = term.recv() => break None,
            _ = int.recv() => break None,
            _ = hup.recv() => match reload.as_ref().map(|f| f()) {
                Some(Ok(next)) => {
                    tracing::info!("registry reloaded ({} types)", next.len());
                    *registry.write().expect("registry lock") = Arc::new(next);
                }
                Some(Err(e)) => tracing::warn!("registry reload failed, keeping the old one: {e}"),
                None => {}
            },
            done = &mut writer_thread => break Some(done),
            Some(done) = maybe(&mut tail_task) => match done {
                Ok(Ok(())) => tail_task = None,
                Ok(Err(e)) => return Err(AgentError::Fatal(e)),
                Err(e) => return Err(AgentError::Fatal(format!("tailer panicked: {e}"))),
            },
        }
    };
    // The tailer stops first, so every line it handed over is answered.
    tail_stop.store(true, Ordering::Relaxed);
    if let Some(task) = tail_task {
        let _ = task.await;
    }
    socket_task.abort();
    let _ = std::fs::remove_file(&config.socket.path);
    let writer_result = match outcome {
        Some(done) => done,
        None => {
            // Clean drain: seal what is open, sync, give the sender a moment.
            let _ = to_writer.send(WriterMsg::Shutdown);
            writer_thread.await
        }
    };
    acks_task.abort();
    drop(to_writer);
    let _ = tokio::time::timeout(Duration::from_secs(10), sender_task).await;
    match writer_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(AgentError::Fatal(e.to_string())),
        Err(e) => Err(AgentError::Fatal(format!("writer thread panicked: {e}"))),
    }
}

/// Awaits a task that may not exist (then never ready).
async fn maybe<T>(
    task: &mut Option<tokio::task::JoinHandle<T>>,
) -> Option<Result<T, tokio::task::JoinError>> {
    match task {
        Some(t) => Some(t.await),
        None => std::future::pending().await,
    }
}

pub use writer::WriterStatus;

/// A client's librdkafka configuration from its layered settings.
fn client_config(
    spec: evd_schemas::kafka_client::ClientSpec<'_>,
) -> Result<rdkafka::ClientConfig, AgentError> {
    let settings = spec
        .settings()
        .map_err(|e| AgentError::Config(e.to_string()))?;
    Ok(settings.into_iter().collect())
}
