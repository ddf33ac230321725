//! The consumer's loop: Kafka → open → dedup → rows → flush (commit protocol) →
//! offsets → acks. Everything here is the thin async shell around `rows`, `ledger`
//! and `commit`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use evd_schemas::wire::batch;
use evd_schemas::{Hour, MasterKeyring, Origin, Registry, SeqRanges};
use futures::future::BoxFuture;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::acker::Acker;
use crate::commit::{CommitError, Fence, Output};
use crate::config::ConsumerConfig;
use crate::ledger::{
    AgentBatches, Delivered, FileEntry, Ledger, MANIFEST_VERSION, Manifest, OffsetEntry,
};
use crate::metrics::{self, Metrics};
use crate::parquet_out;
use crate::rows::{Assembler, RejectedEvent};
use crate::test_faults::crash_point;

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// Fix the configuration the message names.
    #[error("configuration: {0}")]
    Config(String),
    /// Kafka or object storage failed in a way the loop cannot ride out; restart
    /// (nothing uncommitted was acked, so nothing is lost).
    #[error("fatal: {0}")]
    Fatal(String),
}

impl From<CommitError> for ConsumerError {
    fn from(e: CommitError) -> Self {
        ConsumerError::Fatal(e.to_string())
    }
}

/// Notes that the assignment changed, so buffered data of revoked partitions is
/// abandoned (its offsets were never committed: the new owner reads it again).
/// The first assignment also makes the consumer ready (`Metrics::ready`).
struct RebalanceFlag(Arc<AtomicBool>, Arc<Metrics>);

impl ClientContext for RebalanceFlag {}

impl ConsumerContext for RebalanceFlag {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Error(_)) {
            self.0.store(true, Ordering::SeqCst);
        }
        if let Rebalance::Assign(partitions) = rebalance {
            if self.1.ready.swap(1, Ordering::Relaxed) == 0 {
                tracing::info!("ready: joined the group");
            }
            tracing::info!("assigned {} partitions", partitions.count());
        }
    }
}

pub struct ConsumerParts {
    pub config: ConsumerConfig,
    pub registry: Registry,
    pub keys: MasterKeyring,
    pub output: Output,
    pub metrics: Arc<Metrics>,
    /// Resolves when the consumer should flush and stop.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// What the current flush holds besides rows.
#[derive(Default)]
struct Pending {
    batches: BTreeMap<Origin, SeqRanges>,
    delivered: BTreeMap<(Origin, String, Hour), (u64, u64, SeqRanges)>,
    rejected: Vec<RejectedEvent>,
    quarantine: Vec<String>,
    offsets: BTreeMap<(String, i32), i64>,
    /// Offset of the first message of this flush, per partition.
    first_offsets: BTreeMap<(String, i32), i64>,
    oldest_received_us: Option<i64>,
    since: Option<tokio::time::Instant>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

pub async fn run(parts: ConsumerParts) -> Result<(), ConsumerError> {
    let ConsumerParts {
        config,
        registry,
        keys,
        output,
        metrics,
        mut shutdown,
    } = parts;
    let consumer_id = config.consumer_id();
    let topics: Vec<String> = if config.kafka.event_types.is_empty() {
        registry.types().map(|t| t.topic()).collect()
    } else {
        let mut topics = Vec::new();
        for name in &config.kafka.event_types {
            let ty = registry.get(name).ok_or_else(|| {
                ConsumerError::Config(format!("kafka.event_types: unknown type {name:?}"))
            })?;
            topics.push(ty.topic());
        }
        topics
    };
    let mut ledger = recover(&output, &config, &consumer_id, &metrics).await?;
    tracing::info!(
        %consumer_id,
        "ledger has {} manifests; consuming {} topics",
        ledger.manifests(),
        topics.len()
    );

    let rebalanced = Arc::new(AtomicBool::new(false));
    let cfg = client_config(crate::kafka_clients::batch_consumer(&config.kafka))?;
    let consumer: Arc<StreamConsumer<RebalanceFlag>> = Arc::new(
        cfg.create_with_context(RebalanceFlag(rebalanced.clone(), metrics.clone()))
            .map_err(|e| ConsumerError::Config(format!("kafka consumer: {e}")))?,
    );
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topic_refs)
        .map_err(|e| ConsumerError::Config(e.to_string()))?;
    let pcfg = client_config(crate::kafka_clients::acks_producer(&config.kafka))?;
    let acks_producer: FutureProducer = pcfg
        .create()
        .map_err(|e| ConsumerError::Config(format!("acks producer: {e}")))?;
    let acks = Acker::new(
        acks_producer,
        keys.clone(),
        config.kafka.acks_topic.clone(),
        metrics.clone(),
    );

    let start_ms = unix_ms();
    let mut flush_counter = 0u64;
    let mut assembler = Assembler::default();
    let mut pending = Pending::default();
    let mut dup_acks: BTreeMap<Origin, SeqRanges> = BTreeMap::new();
    let flush_every = Duration::from_millis(config.flush_interval_ms);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut kafka_errors_log = evd_schemas::log_limit::LogLimit::default();

    loop {
        tokio::select! {
            msg = consumer.recv() => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        if let Some(held) = kafka_errors_log.allow(std::time::Instant::now()) {
                            tracing::warn!(held_back = held, "kafka: {e} (retrying)");
                        }
                        continue;
                    }
                };
                if rebalanced.swap(false, Ordering::SeqCst) {
                    // Abandon what belonged to the old assignment; reload what other
                    // consumers committed meanwhile.
                    assembler.clear();
                    pending = Pending::default();
                    ledger = recover(&output, &config, &consumer_id, &metrics).await?;
                }
                metrics::add(&metrics.batches_consumed, 1);
                handle(&msg, &registry, &keys, &output, &ledger, &mut assembler, &mut pending, &mut dup_acks, &metrics).await?;
                let (rows, bytes) = assembler.size();
                if rows >= config.flush_max_rows || bytes >= config.flush_max_bytes {
                    flush(&consumer, &acks, &output, &mut ledger, &mut assembler, &mut pending, &metrics, &consumer_id, start_ms, &mut flush_counter, &rebalanced).await?;
                }
            }
            _ = tick.tick() => {
                if pending.since.is_some_and(|t| t.elapsed() >= flush_every) {
                    flush(&consumer, &acks, &output, &mut ledger, &mut assembler, &mut pending, &metrics, &consumer_id, start_ms, &mut flush_counter, &rebalanced).await?;
                }
                if !dup_acks.is_empty() {
                    acks.send(std::mem::take(&mut dup_acks), "ledger");
                }
            }
            _ = shutdown.changed() => {
                flush(&consumer, &acks, &output, &mut ledger, &mut assembler, &mut pending, &metrics, &consumer_id, start_ms, &mut flush_counter, &rebalanced).await?;
                acks.finish(Duration::from_secs(10)).await;
                return Ok(());
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    msg: &BorrowedMessage<'_>,
    registry: &Registry,
    keys: &MasterKeyring,
    output: &Output,
    ledger: &Ledger,
    assembler: &mut Assembler,
    pending: &mut Pending,
    dup_acks: &mut BTreeMap<Origin, SeqRanges>,
    metrics: &Metrics,
) -> Result<(), ConsumerError> {
    let key = (msg.topic().to_string(), msg.partition());
    pending
        .first_offsets
        .entry(key.clone())
        .or_insert(msg.offset());
    pending.offsets.insert(key, msg.offset() + 1);
    pending.since.get_or_insert_with(tokio::time::Instant::now);
    let payload = msg.payload().unwrap_or_default();
    let opened = match batch::open(keys, payload) {
        Ok(b) => b,
        Err(e) => {
            let stored =
                quarantine_batch(output, msg, payload, e.reason_code(), &e.to_string()).await?;
            if let Some(name) = stored {
                pending.quarantine.push(name);
                metrics::add(&metrics.quarantined_batches, 1);
            }
            return Ok(());
        }
    };
    let meta = &opened.header.meta;
    let origin = meta.origin();
    if ledger.is_committed(&origin, meta.batch_seq) && !crate::test_faults::switches().skip_dedup {
        metrics::add(&metrics.duplicates_dropped, 1);
        dup_acks.entry(origin).or_default().insert(meta.batch_seq);
        return Ok(());
    }
    if pending
        .batches
        .get(&origin)
        .is_some_and(|s| s.contains(meta.batch_seq))
    {
        metrics::add(&metrics.duplicates_dropped, 1);
        return Ok(());
    }
    if crate::test_faults::switches().lose_batch_seq == Some(meta.batch_seq) {
        // Test-only consumer bug: the batch is recorded as delivered (ledger, manifest,
        // ack) but its rows are never written. The auditor must catch this.
        tracing::warn!("test switch: losing batch {}", meta.batch_seq);
        pending
            .batches
            .entry(origin)
            .or_default()
            .insert(meta.batch_seq);
        return Ok(());
    }
    let added = match assembler.add(registry, &opened, meta.bucket_hour) {
        Ok(a) => a,
        Err(why) => {
            let stored = quarantine_batch(output, msg, payload, "unknown_type", &why).await?;
            if let Some(name) = stored {
                pending.quarantine.push(name);
                metrics::add(&metrics.quarantined_batches, 1);
            }
            return Ok(());
        }
    };
    pending
        .batches
        .entry(origin.clone())
        .or_default()
        .insert(meta.batch_seq);
    let entry = pending
        .delivered
        .entry((origin, meta.event_type.clone(), meta.bucket_hour))
        .or_default();
    entry.0 += added.rows as u64;
    entry.1 += added.rejected.len() as u64;
    entry.2.insert(meta.batch_seq);
    metrics::add(&metrics.quarantined_events, added.rejected.len() as u64);
    pending.rejected.extend(added.rejected);
    if let Some(first) = opened.records().first() {
        let t = first.received_at_us;
        pending.oldest_received_us = Some(pending.oldest_received_us.map_or(t, |o| o.min(t)));
        metrics::set(
            &metrics.oldest_uncommitted_received_timestamp_seconds,
            (pending.oldest_received_us.unwrap_or(0) / 1_000_000) as u64,
        );
    }
    Ok(())
}

/// Keeps a batch that cannot be delivered: raw bytes plus a JSON note with the reason.
/// Stored once per batch: the name comes from the bytes (and, where the header parses,
/// the agent, spool and seq it claims, unauthenticated), so the retransmits of one
/// batch every `retransmit_after_ms` do not pile up. Returns the name when this call
/// stored it, `None` when it was there already.
async fn quarantine_batch(
    output: &Output,
    msg: &BorrowedMessage<'_>,
    payload: &[u8],
    reason: &str,
    detail: &str,
) -> Result<Option<String>, ConsumerError> {
    let base = quarantine_name(reason, payload);
    let bin = output.path(&format!("{base}.bin"));
    if !output.create(&bin, payload.to_vec()).await? {
        return Ok(None);
    }
    let note = serde_json::json!({
        "reason": reason,
        "error": detail,
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "bytes": payload.len(),
    });
    output
        .put(&format!("{base}.json"), Bytes::from(note.to_string()))
        .await?;
    tracing::warn!("quarantined {base}: {detail}");
    Ok(Some(base))
}

/// `_quarantine/<reason>/[<agent>-<spool>-<seq>-]<sha-256 of the bytes, 32 hex>`.
fn quarantine_name(reason: &str, payload: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(payload);
    let digest = hex::encode(&digest[..16]);
    match batch::peek_header(payload) {
        Ok(h) if evd_schemas::origin::check_id(&h.meta.agent_id).is_ok() => format!(
            "_quarantine/{reason}/{}-{}-{}-{digest}",
            h.meta.agent_id, h.meta.spool_id, h.meta.batch_seq
        ),
        _ => format!("_quarantine/{reason}/{digest}"),
    }
}

#[allow(clippy::too_many_arguments)]
async fn flush(
    consumer: &Arc<StreamConsumer<RebalanceFlag>>,
    acks: &Acker,
    output: &Output,
    ledger: &mut Ledger,
    assembler: &mut Assembler,
    pending: &mut Pending,
    metrics: &Metrics,
    consumer_id: &str,
    start_ms: i64,
    counter: &mut u64,
    rebalanced: &AtomicBool,
) -> Result<(), ConsumerError> {
    if pending.is_empty() {
        return Ok(());
    }
    if rebalanced.load(Ordering::SeqCst) {
        tracing::warn!("the group rebalanced since these batches were read; abandoning the flush");
        abandon(consumer, assembler, pending)?;
        return Ok(());
    }
    let started = std::time::Instant::now();
    *counter += 1;
    let flush_id = format!("{consumer_id}-{start_ms}-{:06}", *counter);
    let mut files = Vec::new();
    let mut staged = Vec::new();
    let mut rows_total = 0u64;
    for (n, finished) in assembler.take().into_iter().enumerate() {
        let bytes = parquet_out::encode(&finished.batch)
            .map_err(|e| ConsumerError::Fatal(format!("parquet: {e}")))?;
        let staging = format!("_evd/staging/{flush_id}/{n}.parquet");
        rows_total += finished.batch.num_rows() as u64;
        files.push(FileEntry {
            staging: staging.clone(),
            final_path: format!(
                "{}/{}/{flush_id}-{n}.parquet",
                finished.event_type,
                finished.hour.partition_path()
            ),
            event_type: finished.event_type,
            hour: finished.hour.0,
            rows: finished.batch.num_rows() as u64,
            bytes: bytes.len() as u64,
        });
        staged.push((staging, bytes));
    }
    let mut quarantine = std::mem::take(&mut pending.quarantine);
    if !pending.rejected.is_empty() {
        let name = format!("_quarantine/schema/{flush_id}.jsonl");
        let mut text = String::new();
        for r in pending.rejected.drain(..) {
            let line = serde_json::json!({
                "agent_id": r.origin.agent_id, "spool_id": r.origin.spool_id,
                "batch_seq": r.batch_seq, "event_seq": r.event_seq,
                "reason": r.reason, "body": String::from_utf8_lossy(&r.body),
            });
            text.push_str(&line.to_string());
            text.push('\n');
        }
        let bytes = Bytes::from(text);
        let mut attempt = 0;
        while let Err(e) = output.put(&name, bytes.clone()).await {
            store_backoff(&mut attempt, e, metrics).await?;
        }
        quarantine.push(name);
    }
    let mut manifest = Manifest {
        version: MANIFEST_VERSION,
        flush_id: flush_id.clone(),
        consumer_id: consumer_id.to_string(),
        created_at_ms: unix_ms(),
        files,
        batches: pending
            .batches
            .iter()
            .map(|(origin, set)| AgentBatches {
                agent_id: origin.agent_id.clone(),
                spool_id: origin.spool_id,
                ranges: set.iter().collect(),
            })
            .collect(),
        delivered: pending
            .delivered
            .iter()
            .map(
                |((origin, ty, hour), (events, quarantined, batches))| Delivered {
                    agent_id: origin.agent_id.clone(),
                    spool_id: origin.spool_id,
                    event_type: ty.clone(),
                    hour: hour.0,
                    events: *events,
                    quarantined: *quarantined,
                    batch_ranges: batches.iter().collect(),
                },
            )
            .collect(),
        quarantine,
        offsets: pending
            .offsets
            .iter()
            .map(|((topic, partition), next)| OffsetEntry {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next,
            })
            .collect(),
        aborted: false,
    };
    // Every step of a commit may be repeated (commit.rs), so a failed one is retried
    // whole: a write whose reply was lost is found again, never done twice.
    // The zombie fence (`fence`) is asked right before the commit point, after the
    // slow steps (encoding above, staging uploads).
    let mut attempt = 0;
    loop {
        let mut fence = GroupFence {
            consumer,
            first_offsets: &pending.first_offsets,
            rebalanced,
            output,
            ledger,
        };
        let fenced = output
            .commit_fenced(&mut manifest, staged.clone(), &mut fence)
            .await;
        match fenced {
            Ok(()) => break,
            Err(CommitError::Fenced(why)) => {
                tracing::warn!("not committing this flush: {why}; abandoning it");
                metrics::add(&metrics.flushes_fenced, 1);
                abandon(consumer, assembler, pending)?;
                // Reload what other consumers committed before consuming on.
                rebalanced.store(true, Ordering::SeqCst);
                return Ok(());
            }
            Err(e) => store_backoff(&mut attempt, e, metrics).await?,
        }
    }
    ledger.apply(&manifest);

    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in &pending.offsets {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
    }
    // A failed offset commit (e.g. a rebalance) only means the batches are read again
    // and dropped by the ledger.
    if let Err(e) = commit_offsets(consumer, tpl).await {
        tracing::warn!("offset commit failed (batches will be re-read and deduplicated): {e}");
    }
    crash_point("offsets");
    let batches = std::mem::take(&mut pending.batches);
    acks.send(batches, &output.manifest_rel(&manifest.flush_id));
    crash_point("acks");

    metrics::set(&metrics.store_retries, crate::store_retry::retries());
    metrics::add(&metrics.flushes, 1);
    metrics::add(&metrics.events_written, rows_total);
    metrics::add(&metrics.files_written, manifest.files.len() as u64);
    metrics::add(
        &metrics.bytes_written,
        manifest.files.iter().map(|f| f.bytes).sum(),
    );
    metrics.flush_seconds.observe_since(started);
    metrics::set(&metrics.oldest_uncommitted_received_timestamp_seconds, 0);
    *pending = Pending::default();
    Ok(())
}

/// The zombie fence (`crate::fence`): this member still owns the partitions, and no
/// manifest committed since the ledger was built holds the flush's batches.
struct GroupFence<'a> {
    consumer: &'a Arc<StreamConsumer<RebalanceFlag>>,
    first_offsets: &'a BTreeMap<(String, i32), i64>,
    rebalanced: &'a AtomicBool,
    output: &'a Output,
    ledger: &'a mut Ledger,
}

impl Fence for GroupFence<'_> {
    fn allow<'b>(&'b mut self, manifest: &'b Manifest) -> BoxFuture<'b, Result<(), String>> {
        Box::pin(async move {
            still_owner(self.consumer, self.first_offsets, self.rebalanced).await?;
            self.output.committed_elsewhere(manifest, self.ledger).await
        })
    }
}

/// The zombie fence's group half: a non-advancing offset
/// commit of where this flush began asks the group coordinator whether this member
/// still owns the partitions; a stale generation is refused.
async fn still_owner(
    consumer: &Arc<StreamConsumer<RebalanceFlag>>,
    first_offsets: &BTreeMap<(String, i32), i64>,
    rebalanced: &AtomicBool,
) -> Result<(), String> {
    if rebalanced.load(Ordering::SeqCst) {
        return Err("the group rebalanced since these batches were read".into());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), first) in first_offsets {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*first));
    }
    commit_offsets(consumer, tpl)
        .await
        .map_err(|e| format!("the group coordinator did not confirm this member ({e})"))
}

/// librdkafka's synchronous commit may wait indefinitely (e.g. for a coordinator):
/// this one gives up after this long. Giving up is always safe: a fence that is not
/// confirmed abandons the flush, and an offset not committed is read again.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(15);

async fn commit_offsets(
    consumer: &Arc<StreamConsumer<RebalanceFlag>>,
    tpl: TopicPartitionList,
) -> Result<(), String> {
    let c = consumer.clone();
    let commit = tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync));
    match tokio::time::timeout(COMMIT_TIMEOUT, commit).await {
        Ok(Ok(result)) => result.map_err(|e| e.to_string()),
        Ok(Err(panicked)) => Err(panicked.to_string()),
        Err(_) => Err(format!("no answer within {} s", COMMIT_TIMEOUT.as_secs())),
    }
}

/// Drops a flush's buffers and rewinds the partitions still assigned to where it began,
/// so nothing it held is skipped. Partitions no longer assigned are their new owner's.
fn abandon(
    consumer: &Arc<StreamConsumer<RebalanceFlag>>,
    assembler: &mut Assembler,
    pending: &mut Pending,
) -> Result<(), ConsumerError> {
    assembler.clear();
    let assigned = consumer.assignment().unwrap_or_default();
    for ((topic, partition), first) in &pending.first_offsets {
        if assigned.find_partition(topic, *partition).is_none() {
            continue;
        }
        consumer
            .seek(
                topic,
                *partition,
                Offset::Offset(*first),
                Duration::from_secs(10),
            )
            .map_err(|e| {
                ConsumerError::Fatal(format!(
                    "rewinding {topic}/{partition} to {first} after an abandoned flush: {e}"
                ))
            })?;
    }
    *pending = Pending::default();
    Ok(())
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

/// After a failed commit (its requests already retried, `store_retry`): waits (100 ms
/// doubling to 5 s) and returns Ok to repeat it, or the error once the repeats are
/// spent or when repeating cannot help.
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
    let wait = Duration::from_millis((100u64 << (*attempt - 1).min(6)).min(5_000));
    tracing::warn!("{error}; retry {attempt}/{STORE_RETRIES} in {wait:?}");
    tokio::time::sleep(wait).await;
    Ok(())
}

/// Wall-clock ms since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A client's librdkafka configuration from its layered settings.
fn client_config(
    spec: evd_schemas::kafka_client::ClientSpec<'_>,
) -> Result<ClientConfig, ConsumerError> {
    let settings = spec
        .settings()
        .map_err(|e| ConsumerError::Config(e.to_string()))?;
    Ok(settings.into_iter().collect())
}
