//! The consumer's loop: Kafka → open → [`FlushBuilder`] (dedup, rows) → commit
//! protocol → offsets → acks. A thin async shell: what a flush holds and what it
//! commits is decided in `flush`; the commit steps are `commit`'s; group membership
//! is `group`'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use evd_runtime::Stop as CancellationToken;
use evd_runtime::kafka::client_config;
use evd_schemas::wire::batch;
use evd_schemas::{MasterKeyring, Registry};
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;

use crate::acker::Acker;
use crate::commit::{CommitError, Output};
use crate::config::ConsumerConfig;
use crate::flush::{DeliveryFaults, FlushBuilder, FlushLimits, Offered, Sealed};
use crate::group::{GroupConsumer, GroupFence, RebalanceFlag, commit_offsets, rewind};
use crate::ledger::Ledger;
use crate::metrics::{self, Metrics};
use crate::parquet_out;
use crate::quarantine::{ReadFrom, quarantine_batch};
use crate::test_faults::crash_point;

/// Why the consumer stopped: the role error every role shares.
pub type ConsumerError = evd_runtime::RoleError;

impl From<CommitError> for ConsumerError {
    fn from(e: CommitError) -> Self {
        ConsumerError::fatal("commit", e)
    }
}

pub struct ConsumerParts {
    pub config: ConsumerConfig,
    pub registry: Registry,
    pub keys: MasterKeyring,
    pub output: Output,
    pub metrics: Arc<Metrics>,
}

/// Consumes until `stop` is cancelled (then flushes what it holds, waits up to 10 s
/// for its acks and returns `Ok`) or a fatal error.
pub async fn run(parts: ConsumerParts, stop: CancellationToken) -> Result<(), ConsumerError> {
    let mut lp = ConsumerLoop::start(parts).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut kafka_errors_log = evd_schemas::log_limit::LogLimit::default();
    let consumer = lp.consumer.clone();
    loop {
        tokio::select! {
            msg = consumer.recv() => match msg {
                Ok(msg) => lp.on_message(&msg).await?,
                Err(e) => {
                    if let Some(held) = kafka_errors_log.allow(Instant::now()) {
                        tracing::warn!(held_back = held, "kafka: {e} (retrying)");
                    }
                }
            },
            _ = tick.tick() => lp.on_tick().await?,
            _ = stop.cancelled() => {
                lp.flush().await?;
                lp.acks.finish(Duration::from_secs(10)).await;
                return Ok(());
            }
        }
    }
}

/// Everything the loop owns between messages.
struct ConsumerLoop {
    consumer: Arc<GroupConsumer>,
    /// Set by the group context on every assignment change.
    rebalanced: Arc<AtomicBool>,
    acks: Acker,
    output: Output,
    config: ConsumerConfig,
    consumer_id: String,
    registry: Registry,
    keys: MasterKeyring,
    ledger: Ledger,
    flush: FlushBuilder,
    limits: FlushLimits,
    metrics: Arc<Metrics>,
    /// Own flushes committed since live manifests were last looked at.
    flushes_since_compaction: usize,
}

impl ConsumerLoop {
    /// Recovers the ledger, joins the group and opens the acks producer.
    async fn start(parts: ConsumerParts) -> Result<ConsumerLoop, ConsumerError> {
        let ConsumerParts {
            config,
            registry,
            keys,
            output,
            metrics,
            ..
        } = parts;
        let consumer_id = config.consumer_id();
        config
            .parquet
            .check_columns(&registry)
            .map_err(|e| ConsumerError::config("parquet", e))?;
        let topics = topics(&config, &registry)?;
        let ledger = recover(&output, &config, &consumer_id, &metrics).await?;
        tracing::info!(
            %consumer_id,
            "ledger has {} manifests; consuming {} topics",
            ledger.manifests(),
            topics.len()
        );
        let rebalanced = Arc::new(AtomicBool::new(false));
        let cfg = client_config(&crate::kafka_clients::batch_consumer(&config.kafka))?;
        let consumer: Arc<GroupConsumer> = Arc::new(
            cfg.create_with_context(RebalanceFlag(rebalanced.clone(), metrics.clone()))
                .map_err(|e| ConsumerError::config("kafka consumer", e))?,
        );
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topic_refs)
            .map_err(|e| ConsumerError::config("subscribe", e))?;
        let pcfg = client_config(&crate::kafka_clients::acks_producer(&config.kafka))?;
        let acks_producer: FutureProducer = pcfg
            .create()
            .map_err(|e| ConsumerError::config("acks producer", e))?;
        let acks = Acker::new(
            acks_producer,
            keys.clone(),
            config.kafka.acks_topic.clone(),
            metrics.clone(),
        );
        let switches = crate::test_faults::switches();
        let faults = DeliveryFaults {
            skip_dedup: switches.skip_dedup,
            lose_batch_seq: switches.lose_batch_seq,
        };
        let limits = FlushLimits {
            max_rows: config.flush_max_rows,
            max_bytes: config.flush_max_bytes,
            max_age: Duration::from_millis(config.flush_interval_ms),
        };
        Ok(ConsumerLoop {
            flush: FlushBuilder::new(&consumer_id, evd_schemas::clock::unix_now_ms(), faults),
            consumer,
            rebalanced,
            acks,
            output,
            config,
            consumer_id,
            registry,
            keys,
            ledger,
            limits,
            metrics,
            flushes_since_compaction: 0,
        })
    }

    async fn on_message(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), ConsumerError> {
        if self.rebalanced.swap(false, Ordering::SeqCst) {
            self.on_rebalance().await?;
        }
        metrics::add(&self.metrics.batches_consumed, 1);
        let now = Instant::now();
        let partition = (msg.topic().to_string(), msg.partition());
        self.flush.note_message(partition, msg.offset(), now);
        let payload = msg.payload().unwrap_or_default();
        let offered = match batch::open(&self.keys, payload) {
            Ok(opened) => self.flush.offer(&self.ledger, &self.registry, &opened),
            Err(e) => Offered::Quarantine {
                reason: e.reason_code(),
                detail: e.to_string(),
            },
        };
        match offered {
            Offered::Committed | Offered::InFlush => {
                metrics::add(&self.metrics.duplicates_dropped, 1);
            }
            Offered::Added { rejected, .. } => {
                metrics::add(&self.metrics.quarantined_events, rejected as u64);
                if let Some(oldest) = self.flush.oldest_received_us() {
                    metrics::set(
                        &self.metrics.oldest_uncommitted_received_timestamp_seconds,
                        (oldest / 1_000_000) as u64,
                    );
                }
            }
            Offered::Quarantine { reason, detail } => {
                let from = ReadFrom {
                    topic: msg.topic(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                };
                let stored = quarantine_batch(&self.output, from, payload, reason, &detail).await?;
                if let Some(name) = stored {
                    self.flush.note_quarantined(name);
                    metrics::add(&self.metrics.quarantined_batches, 1);
                }
            }
        }
        if self.flush.due(&self.limits, now) {
            self.flush().await?;
        }
        Ok(())
    }

    async fn on_tick(&mut self) -> Result<(), ConsumerError> {
        if self.flush.due(&self.limits, Instant::now()) {
            self.flush().await?;
        }
        let reacks = self.flush.take_reacks();
        if !reacks.is_empty() {
            self.acks.send(reacks, "ledger");
        }
        Ok(())
    }

    /// Abandons what belonged to the old assignment (its offsets were never committed:
    /// the partitions' owner reads it again) and reloads what other consumers
    /// committed meanwhile.
    async fn on_rebalance(&mut self) -> Result<(), ConsumerError> {
        self.flush.abandon();
        self.ledger = recover(&self.output, &self.config, &self.consumer_id, &self.metrics).await?;
        Ok(())
    }

    /// Seals and commits the flush, then commits its offsets and sends its acks.
    async fn flush(&mut self) -> Result<(), ConsumerError> {
        if self.flush.is_empty() {
            return Ok(());
        }
        if self.rebalanced.load(Ordering::SeqCst) {
            tracing::warn!(
                "the group rebalanced since these batches were read; abandoning the flush"
            );
            let first = self.flush.abandon();
            return rewind(&self.consumer, &first).map_err(abandon_error);
        }
        let started = Instant::now();
        let sealed = self
            .flush
            .seal(evd_schemas::clock::unix_now_ms(), |batch| {
                parquet_out::encode_with(batch, &self.config.parquet)
            })
            .map_err(|e| ConsumerError::fatal("parquet", e))?;
        let Some(mut sealed) = sealed else {
            return Ok(());
        };
        if let Some((name, doc)) = &sealed.rejected {
            let mut attempt = 0;
            while let Err(e) = self.output.put(name, doc.clone()).await {
                store_backoff(&mut attempt, e, &self.metrics).await?;
            }
        }
        if !self.commit(&mut sealed).await? {
            return Ok(());
        }
        self.ledger.apply(&sealed.manifest);
        // A failed offset commit (e.g. a rebalance) only means the batches are read
        // again and dropped by the ledger.
        if let Err(e) = commit_offsets(&self.consumer, &sealed.offsets).await {
            tracing::warn!("offset commit failed (batches will be re-read and deduplicated): {e}");
        }
        crash_point("offsets");
        let manifest_rel = self.output.manifest_rel(&sealed.manifest.flush_id);
        self.acks
            .send(std::mem::take(&mut sealed.acks), &manifest_rel);
        crash_point("acks");
        self.count_flush(&sealed, started);
        self.compact_now_and_then().await;
        Ok(())
    }

    /// Every few flushes, folds finished manifests into a ledger snapshot when there
    /// are too many (`compaction::compact_finished`). A failure is only logged: the
    /// next look, or the next start-up, compacts.
    async fn compact_now_and_then(&mut self) {
        let compact_after = self.config.compact_after_manifests;
        self.flushes_since_compaction += 1;
        if self.flushes_since_compaction < crate::compaction::compaction_check_every(compact_after)
        {
            return;
        }
        self.flushes_since_compaction = 0;
        let now = evd_schemas::clock::unix_now_ms();
        match self
            .output
            .compact_finished(compact_after, &self.consumer_id, now)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!("folded {n} finished manifests into a ledger snapshot"),
            Err(e) => tracing::warn!("compaction failed (the next one retries): {e}"),
        }
    }

    /// Steps 1–4 of the commit protocol behind the zombie fence, repeated whole after
    /// a store error (every step may be repeated: a write whose reply was lost is found
    /// again, never done twice). `false` when the fence refused: the flush is
    /// abandoned and its partitions rewound.
    async fn commit(&mut self, sealed: &mut Sealed) -> Result<bool, ConsumerError> {
        let mut attempt = 0;
        loop {
            let mut fence = GroupFence {
                consumer: &self.consumer,
                first_offsets: &sealed.first_offsets,
                rebalanced: &self.rebalanced,
                output: &self.output,
                ledger: &mut self.ledger,
            };
            let committed = self
                .output
                .commit_fenced(&mut sealed.manifest, sealed.staged.clone(), &mut fence)
                .await;
            match committed {
                Ok(()) => return Ok(true),
                Err(CommitError::Fenced(why)) => {
                    tracing::warn!("not committing this flush: {why}; abandoning it");
                    metrics::add(&self.metrics.flushes_fenced, 1);
                    rewind(&self.consumer, &sealed.first_offsets).map_err(abandon_error)?;
                    // Reload what other consumers committed before consuming on.
                    self.rebalanced.store(true, Ordering::SeqCst);
                    return Ok(false);
                }
                Err(e) => store_backoff(&mut attempt, e, &self.metrics).await?,
            }
        }
    }

    fn count_flush(&self, sealed: &Sealed, started: Instant) {
        let m = &self.metrics;
        let files = &sealed.manifest.files;
        metrics::set(&m.store_retries, crate::store_retry::retries());
        metrics::add(&m.flushes, 1);
        metrics::add(&m.events_written, sealed.rows);
        metrics::add(&m.files_written, files.len() as u64);
        metrics::add(&m.bytes_written, files.iter().map(|f| f.bytes).sum());
        m.flush_seconds.observe_since(started);
        metrics::set(&m.oldest_uncommitted_received_timestamp_seconds, 0);
    }
}

fn abandon_error(e: crate::group::RewindError) -> ConsumerError {
    ConsumerError::fatal("after an abandoned flush", e)
}

/// The topics of the configured event types (every registered type by default).
fn topics(config: &ConsumerConfig, registry: &Registry) -> Result<Vec<String>, ConsumerError> {
    if config.kafka.event_types.is_empty() {
        return Ok(registry.types().map(|t| t.topic()).collect());
    }
    config
        .kafka
        .event_types
        .iter()
        .map(|name| {
            registry.get(name).map(|ty| ty.topic()).ok_or_else(|| {
                let what = format!("kafka.event_types: unknown type {name:?}");
                ConsumerError::config_msg(what)
            })
        })
        .collect()
}

/// Recovery (at start and after a rebalance), repeated after store errors like a
/// commit.
async fn recover(
    output: &Output,
    config: &ConsumerConfig,
    consumer_id: &str,
    metrics: &Metrics,
) -> Result<Ledger, ConsumerError> {
    let mut attempt = 0;
    loop {
        match output
            .recover(config.compact_after_manifests, consumer_id)
            .await
        {
            Ok(ledger) => {
                metrics::add(
                    &metrics.corrupt_manifests,
                    ledger.corrupt_manifests() as u64,
                );
                return Ok(ledger);
            }
            Err(e) => store_backoff(&mut attempt, e, metrics).await?,
        }
    }
}

/// Commits repeated in a row after a store error the request retries did not cure.
const STORE_RETRIES: u32 = 10;

/// After a failed commit (its requests already retried, `store_retry`): waits (from
/// 100 ms, doubling to 5 s, with jitter) and returns Ok to repeat it, or the error
/// once the repeats are spent or when repeating cannot help.
async fn store_backoff(
    attempt: &mut u32,
    error: CommitError,
    metrics: &Metrics,
) -> Result<(), ConsumerError> {
    *attempt += 1;
    if !matches!(error, CommitError::Store(_)) || *attempt > STORE_RETRIES {
        return Err(error.into());
    }
    crate::store_retry::count_retry();
    metrics::set(&metrics.store_retries, crate::store_retry::retries());
    let wait = evd_runtime::backoff::delays(Duration::from_millis(100), Duration::from_secs(5))
        .nth(*attempt as usize - 1)
        .unwrap_or(Duration::from_secs(5));
    tracing::warn!("{error}; retry {attempt}/{STORE_RETRIES} in {wait:?}");
    tokio::time::sleep(wait).await;
    Ok(())
}
