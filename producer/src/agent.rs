//! Wires the agent together: spool + writer thread, socket server, sender, acks
//! consumer. The caller owns signals: it cancels the stop token to drain and stop,
//! and notifies the reload to load the registry again (`evd agent`: SIGTERM/SIGINT
//! and SIGHUP).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use evd_runtime::Stop as CancellationToken;
use evd_runtime::kafka::client_config;
use evd_schemas::{AgentKeyring, Origin, Registry};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

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

/// Why the agent stopped: the role error every role shares.
pub type AgentError = evd_runtime::RoleError;

/// Loads the registry again.
pub type RegistryLoader = Box<dyn Fn() -> Result<Registry, String> + Send + Sync>;

/// Registry reloads: `load` runs at each notice on `requested`; a failed load keeps
/// the registry in use.
pub struct Reload {
    pub load: RegistryLoader,
    pub requested: Arc<Notify>,
}

pub struct AgentParts {
    pub config: AgentConfig,
    pub registry: Registry,
    pub keys: AgentKeyring,
    pub clock: Arc<dyn Clock>,
    pub reload: Option<Reload>,
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
            .map_err(|e| AgentError::fatal(format!("spool dir {}", dir.display()), e))?;
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
                return Err(AgentError::config("spool", e));
            }
            Err(other) => return Err(AgentError::fatal("spool", other)),
        }
    }
}

/// Runs the agent until `stop` is cancelled (clean drain: open batches sealed and
/// synced, the sender given up to 10 s; `Ok`) or a fatal error.
pub async fn run(parts: AgentParts, stop: CancellationToken) -> Result<(), AgentError> {
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
        let what = format!(
            "keyring is for agent {:?} but this agent is {agent_id:?}; derive one with `evd keys derive --agent {agent_id}`",
            keys.agent_id()
        );
        return Err(AgentError::config_msg(what));
    }
    let mut running = start(&config, registry, keys, clock, &metrics).await?;
    tracing::info!(
        %agent_id,
        "ready: listening on {}",
        config.socket.path.display()
    );
    let outcome = loop {
        tokio::select! {
            _ = stop.cancelled() => break None,
            load = reload_requested(&reload) => match load() {
                Ok(next) => {
                    tracing::info!("registry reloaded ({} types)", next.len());
                    *running.registry.write().expect("registry lock") = Arc::new(next);
                }
                Err(e) => tracing::warn!("registry reload failed, keeping the old one: {e}"),
            },
            done = &mut running.writer_thread => break Some(done),
            Some(done) = maybe(&mut running.tail_task) => match done {
                Ok(Ok(())) => running.tail_task = None,
                Ok(Err(e)) => return Err(AgentError::fatal("tailer", e)),
                Err(e) => return Err(AgentError::fatal("tailer panicked", e)),
            },
        }
    };
    running.drain(outcome, &config.socket.path).await
}

/// The writer's thread: it ends with the spool's last error, if any.
type WriterThread = JoinHandle<Result<(), SpoolError>>;

/// The agent's tasks and threads between `start` and `drain`.
struct Running {
    registry: Arc<RwLock<Arc<Registry>>>,
    to_writer: std::sync::mpsc::Sender<WriterMsg>,
    writer_thread: WriterThread,
    sender_task: JoinHandle<()>,
    acks_task: JoinHandle<Result<(), rdkafka::error::KafkaError>>,
    socket_task: JoinHandle<()>,
    tail_task: Option<JoinHandle<Result<(), String>>>,
    tail_stop: Arc<AtomicBool>,
}

/// Recovers the spool, then starts the writer thread, the sender, the acks consumer,
/// the socket server and the tailer, in that order (nothing is served before the
/// spool's recovered batches are queued for sending).
///
/// Long on purpose: it is the agent's wiring, one block per part in start order, and
/// the order is the contract; the parts with logic of their own are functions.
async fn start(
    config: &AgentConfig,
    registry: Registry,
    keys: AgentKeyring,
    clock: Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
) -> Result<Running, AgentError> {
    let agent_id = config.agent_id();
    let (spool, recovered) = recover_spool(config, &agent_id, metrics).await?;
    let spool_id = spool.spool_id();
    let registry = Arc::new(RwLock::new(Arc::new(registry)));
    let (to_sender, sender_rx) = tokio::sync::mpsc::unbounded_channel();
    let (to_writer, writer_rx) = std::sync::mpsc::channel::<WriterMsg>();
    let writer = Writer {
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
    let (writer_thread, tail_positions) = start_writer(writer, recovered, writer_rx)?;

    let sender = Sender::new(
        SenderSettings {
            agent_id: agent_id.clone(),
            spool_id,
            keys: keys.clone(),
            producer_config: client_config(&crate::kafka_clients::producer(&config.kafka))?,
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
    .map_err(|e| AgentError::config("kafka producer", e))?;
    let sender_task = tokio::spawn(sender.run(sender_rx));
    let acks_config = client_config(&crate::kafka_clients::acks_consumer(
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

    let ctx = Arc::new(SocketContext {
        registry: registry.clone(),
        to_writer: to_writer.clone(),
        max_line_bytes: config.socket.max_line_bytes,
        allowed_uids: config.socket.allowed_uids.clone(),
        allowed_gids: config.socket.allowed_gids.clone(),
        metrics: metrics.clone(),
    });
    let socket_task = start_socket(config, ctx).await?;
    Metrics::set(&metrics.ready, 1);
    let tail_stop = Arc::new(AtomicBool::new(false));
    let tail_task = if config.sources.is_empty() {
        None
    } else {
        let shell = tail::shell::TailShell {
            sources: config.sources.clone(),
            settings: config.tailer.clone(),
            checkpoint_path: config.checkpoint_path(),
            registry: registry.clone(),
            to_writer: to_writer.clone(),
            clock,
            metrics: metrics.clone(),
            stop: tail_stop.clone(),
        };
        Some(start_tail(shell, tail_positions)?)
    };
    Ok(Running {
        registry,
        to_writer,
        writer_thread,
        sender_task,
        acks_task,
        socket_task,
        tail_task,
        tail_stop,
    })
}

/// Binds the socket (a path in use is a configuration error) and serves it.
async fn start_socket(
    config: &AgentConfig,
    ctx: Arc<SocketContext>,
) -> Result<JoinHandle<()>, AgentError> {
    let listener = socket::bind(&config.socket.path, config.socket.mode)
        .await
        .map_err(|e| AgentError::config(format!("socket {}", config.socket.path.display()), e))?;
    Ok(tokio::spawn(socket::serve(listener, ctx)))
}

/// Checks the tailed sources against the registry and starts the tailer's thread,
/// resuming from the read positions the spool holds.
fn start_tail(
    shell: tail::shell::TailShell,
    positions: Vec<crate::spool::RecoveredId>,
) -> Result<JoinHandle<Result<(), String>>, AgentError> {
    tail::shell::check_sources(
        &shell.sources,
        &shell.registry.read().expect("registry lock"),
    )
    .map_err(|e| AgentError::config("sources", e))?;
    Ok(tokio::task::spawn_blocking(move || shell.run(&positions)))
}

/// Hands the writer what recovery found and starts its thread. Returns the thread and
/// the tailed read positions the spool holds (where the tailer resumes).
fn start_writer(
    mut writer: Writer<DirStore>,
    recovered: crate::spool::Recovered,
    rx: std::sync::mpsc::Receiver<WriterMsg>,
) -> Result<(WriterThread, Vec<crate::spool::RecoveredId>), AgentError> {
    let tail_positions: Vec<_> = recovered
        .ids
        .iter()
        .filter(|r| evd_schemas::tail::is_tail_id(&r.event_id))
        .cloned()
        .collect();
    writer
        .resume(recovered.pending, recovered.ids)
        .map_err(|e| AgentError::fatal("spool resume", e))?;
    Ok((
        tokio::task::spawn_blocking(move || writer.run(rx)),
        tail_positions,
    ))
}

/// Opens the spool and reports what its recovery found.
async fn recover_spool(
    config: &AgentConfig,
    agent_id: &str,
    metrics: &Metrics,
) -> Result<(Spool<DirStore>, crate::spool::Recovered), AgentError> {
    let limits = SpoolLimits {
        dedup_window_us: config.spool.dedup_window_ms as i64 * 1000,
        max_bytes: config.spool.max_bytes,
        segment_bytes: config.spool.segment_bytes,
    };
    let (spool, recovered) = open_spool(&config.spool.dir, agent_id, limits).await?;
    tracing::info!(
        %agent_id,
        "spool {} is incarnation {}",
        config.spool.dir.display(),
        spool.spool_id()
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
    Ok((spool, recovered))
}

impl Running {
    /// Stops everything in the order that keeps the promises: the tailer first (every
    /// line it handed over is answered), then the socket; on a clean stop (`outcome`
    /// `None`) the writer seals what is open and syncs; the sender gets up to 10 s.
    async fn drain(
        self,
        outcome: Option<Result<Result<(), SpoolError>, tokio::task::JoinError>>,
        socket_path: &std::path::Path,
    ) -> Result<(), AgentError> {
        self.tail_stop.store(true, Ordering::Relaxed);
        if let Some(task) = self.tail_task {
            let _ = task.await;
        }
        self.socket_task.abort();
        let _ = std::fs::remove_file(socket_path);
        let writer_result = match outcome {
            Some(done) => done,
            None => {
                let _ = self.to_writer.send(WriterMsg::Shutdown);
                self.writer_thread.await
            }
        };
        self.acks_task.abort();
        drop(self.to_writer);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.sender_task).await;
        match writer_result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AgentError::fatal("writer", e)),
            Err(e) => Err(AgentError::fatal("writer thread panicked", e)),
        }
    }
}

/// The loader, once a reload is requested (never without reloads).
async fn reload_requested(reload: &Option<Reload>) -> &RegistryLoader {
    match reload {
        Some(r) => {
            r.requested.notified().await;
            &r.load
        }
        None => std::future::pending().await,
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
