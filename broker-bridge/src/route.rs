//! One direction of the bridge: a consumer group on the source cluster, an
//! idempotent producer to the destination, and the [`Tracker`] between them. Records
//! are copied byte for byte (key, value, headers, timestamp); offsets are committed
//! only once the destination acknowledged (`acks=all`) every record before them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use evd_runtime::Stop as CancellationToken;
use evd_runtime::kafka::client_config;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::BridgeError;
use crate::config::{ClusterConfig, TuningConfig};
use crate::lag::{Shared, Watcher, committed_offset};
use crate::metrics::Metrics;
use crate::tracker::{Continuity, Tp, Tracker};

/// What one route carries, from where to where.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// `forward` or `reverse` (metric label, group suffix).
    pub name: &'static str,
    pub group_id: String,
    pub source: ClusterConfig,
    /// `edge` or `central`: where the source's settings are in the config file.
    pub source_side: &'static str,
    pub destination: ClusterConfig,
    pub destination_side: &'static str,
    /// Topic names, or one `^pattern`.
    pub topics: Vec<String>,
    pub topic_map: BTreeMap<String, String>,
    pub tuning: TuningConfig,
}

/// Starts the route's counters whose label sets are known now at 0, so the first
/// record forwarded, offset skipped or reset shows as an increase (a series that first
/// appears at 1 does not, to `increase()`). Topics given as a `^pattern` appear with
/// their first record.
fn zero_known_series(metrics: &Metrics, spec: &RouteSpec) {
    for topic in spec.topics.iter().filter(|t| !t.starts_with('^')) {
        for name in [
            "records_forwarded",
            "bytes_forwarded",
            "skipped_offsets",
            "offset_resets",
        ] {
            metrics.add(name, &[("route", spec.name), ("topic", topic)], 0);
        }
    }
    for name in ["source_errors", "commits"] {
        metrics.add(name, &[("route", spec.name)], 0);
    }
}

/// Delivery reports and client errors of the producer.
struct ProducerCtx {
    route: &'static str,
    tracker: Arc<Mutex<Tracker>>,
    metrics: Arc<Metrics>,
    /// A delivery that failed for good: the route stops (its offset is never
    /// committed, so a restart carries the record again).
    fatal: Arc<Mutex<Option<BridgeError>>>,
}

/// Which source record a produced record copies.
struct Origin {
    tp: Tp,
    offset: i64,
    bytes: u64,
    /// The source record's timestamp (ms), for the forward-lag histogram.
    source_ms: Option<i64>,
}

impl ClientContext for ProducerCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        let class = error_class(&error);
        self.metrics.add(
            "destination_errors",
            &[("route", self.route), ("class", &class)],
            1,
        );
        tracing::warn!(route = self.route, "destination: {error} ({reason})");
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = Box<Origin>;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: Box<Origin>) {
        match result {
            Ok(_) => {
                self.tracker
                    .lock()
                    .expect("tracker lock")
                    .delivered(&origin.tp, origin.offset);
                let labels = [("route", self.route), ("topic", origin.tp.0.as_str())];
                self.metrics.add("records_forwarded", &labels, 1);
                self.metrics.add("bytes_forwarded", &labels, origin.bytes);
                if let Some(t) = origin.source_ms {
                    self.metrics
                        .forward_lag_seconds
                        .observe_ms(evd_schemas::clock::unix_now_ms() - t);
                }
            }
            Err((e, _)) => {
                let class = error_class(e);
                self.metrics.add(
                    "destination_errors",
                    &[("route", self.route), ("class", &class)],
                    1,
                );
                let what = format!(
                    "{}: delivery of {}/{} offset {} failed for good",
                    self.route, origin.tp.0, origin.tp.1, origin.offset
                );
                *self.fatal.lock().expect("fatal lock") = Some(BridgeError::fatal(what, e.clone()));
            }
        }
    }
}

fn error_class(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "other".into(),
    }
}

type Dest = ThreadedProducer<ProducerCtx>;

/// Rebalance hook: before partitions leave, deliver what was read from them and
/// commit it, so the next owner starts where this one stopped.
struct ConsumerCtx {
    route: &'static str,
    tracker: Arc<Mutex<Tracker>>,
    producer: OnceLock<Arc<Dest>>,
    metrics: Arc<Metrics>,
}

impl ClientContext for ConsumerCtx {}

impl ConsumerContext for ConsumerCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        if let Some(producer) = self.producer.get() {
            // Waits for the destination; if it does not answer, nothing is committed
            // and the next owner carries those records again (at least once).
            let _ = producer.flush(Duration::from_secs(30));
        }
        commit(
            consumer,
            &self.tracker,
            &self.metrics,
            self.route,
            CommitMode::Sync,
        );
        let mut tracker = self.tracker.lock().expect("tracker lock");
        for e in revoked.elements() {
            tracker.forget(&(e.topic().to_string(), e.partition()));
        }
    }
}

/// Commits every partition whose delivered prefix moved.
fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tracker: &Mutex<Tracker>,
    metrics: &Metrics,
    route: &'static str,
    mode: CommitMode,
) {
    let due = tracker.lock().expect("tracker lock").committable();
    if due.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in &due {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            let mut t = tracker.lock().expect("tracker lock");
            for (tp, next) in &due {
                t.mark_committed(tp, *next);
            }
            metrics.add("commits", &[("route", route)], 1);
        }
        Err(e) => {
            metrics.add("source_errors", &[("route", route)], 1);
            tracing::warn!(route, "offset commit failed (retried): {e}");
        }
    }
}

/// A running route: call `run` on its own thread.
pub struct Route {
    spec: RouteSpec,
    consumer: BaseConsumer<ConsumerCtx>,
    producer: Arc<Dest>,
    tracker: Arc<Mutex<Tracker>>,
    metrics: Arc<Metrics>,
    fatal: Arc<Mutex<Option<BridgeError>>>,
    shared: Arc<Mutex<Shared>>,
    watcher: Option<Watcher>,
}

impl Route {
    pub fn new(spec: RouteSpec, metrics: Arc<Metrics>) -> Result<Route, BridgeError> {
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let fatal = Arc::new(Mutex::new(None));
        let pcfg = client_config(&crate::kafka_clients::producer(&spec))?;
        let producer: Dest = pcfg
            .create_with_context(ProducerCtx {
                route: spec.name,
                tracker: tracker.clone(),
                metrics: metrics.clone(),
                fatal: fatal.clone(),
            })
            .map_err(|e| BridgeError::config(format!("{} producer", spec.name), e))?;
        let producer = Arc::new(producer);

        let ccfg = client_config(&crate::kafka_clients::consumer(&spec))?;
        let ctx = ConsumerCtx {
            route: spec.name,
            tracker: tracker.clone(),
            producer: OnceLock::new(),
            metrics: metrics.clone(),
        };
        let _ = ctx.producer.set(producer.clone());
        let consumer: BaseConsumer<ConsumerCtx> = ccfg
            .create_with_context(ctx)
            .map_err(|e| BridgeError::config(format!("{} consumer", spec.name), e))?;
        let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| BridgeError::config(format!("{} subscribe", spec.name), e))?;
        zero_known_series(&metrics, &spec);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let client: BaseConsumer = ccfg
            .create()
            .map_err(|e| BridgeError::config(format!("{} lag client", spec.name), e))?;
        let watcher = Watcher {
            route: spec.name,
            client,
            shared: shared.clone(),
            metrics: metrics.clone(),
            interval: Duration::from_secs(5),
        };
        Ok(Route {
            spec,
            consumer,
            producer,
            tracker,
            metrics,
            fatal,
            shared,
            watcher: Some(watcher),
        })
    }

    /// Carries records until `stop` is set (then delivers what was read, commits and
    /// returns) or a delivery fails for good.
    pub fn run(mut self, stop: &CancellationToken) -> Result<(), BridgeError> {
        let watcher = self.watcher.take().expect("run once");
        std::thread::scope(|scope| {
            scope.spawn(|| watcher.run(stop));
            let result = self.forward_until(stop);
            if result.is_err() {
                stop.cancel();
            }
            result
        })
    }

    fn forward_until(&self, stop: &CancellationToken) -> Result<(), BridgeError> {
        let interval = Duration::from_millis(self.spec.tuning.commit_interval_ms);
        let mut last_commit = Instant::now();
        while !stop.is_cancelled() {
            if let Some(e) = self.fatal.lock().expect("fatal lock").take() {
                return Err(e);
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(msg)) => {
                    if let Some(ts) = msg.timestamp().to_millis() {
                        let tp = (msg.topic().to_string(), msg.partition());
                        self.shared
                            .lock()
                            .expect("lag lock")
                            .last_read_ms
                            .insert(tp, ts);
                    }
                    self.forward(&msg, stop)?;
                }
                Some(Err(e)) => self.source_error(&e),
                None => {}
            }
            if last_commit.elapsed() >= interval {
                commit(
                    &self.consumer,
                    &self.tracker,
                    &self.metrics,
                    self.spec.name,
                    CommitMode::Async,
                );
                self.share_positions();
                last_commit = Instant::now();
            }
        }
        // Clean stop: everything read is delivered, then committed.
        self.producer
            .flush(Duration::from_secs(30))
            .map_err(|e| BridgeError::fatal(format!("{}: final flush", self.spec.name), e))?;
        commit(
            &self.consumer,
            &self.tracker,
            &self.metrics,
            self.spec.name,
            CommitMode::Sync,
        );
        Ok(())
    }

    /// Publishes positions for the watcher (local calls only) and carries out the
    /// rewinds it asked for.
    fn share_positions(&self) {
        let assigned = self.consumer.assignment().unwrap_or_default();
        let positions = self.consumer.position().unwrap_or_default();
        let mut now = BTreeMap::new();
        for e in assigned.elements() {
            let position = match positions
                .find_partition(e.topic(), e.partition())
                .map(|p| p.offset())
            {
                Some(Offset::Offset(n)) => Some(n),
                _ => None,
            };
            now.insert((e.topic().to_string(), e.partition()), position);
        }
        let rewind = {
            let mut s = self.shared.lock().expect("lag lock");
            s.positions = now;
            std::mem::take(&mut s.rewind)
        };
        for tp in rewind {
            let _ = self
                .consumer
                .seek(&tp.0, tp.1, Offset::Beginning, Duration::from_secs(5));
        }
    }

    fn forward(
        &self,
        msg: &BorrowedMessage<'_>,
        stop: &CancellationToken,
    ) -> Result<(), BridgeError> {
        let tp: Tp = (msg.topic().to_string(), msg.partition());
        let offset = msg.offset();
        let committed = if self.tracker.lock().expect("tracker lock").needs_start(&tp) {
            committed_offset(&self.consumer, &tp)
        } else {
            None
        };
        let continuity = self
            .tracker
            .lock()
            .expect("tracker lock")
            .observe(&tp, offset, committed);
        self.report_continuity(&tp, continuity);
        let dest_topic = self
            .spec
            .topic_map
            .get(&tp.0)
            .map_or(tp.0.as_str(), String::as_str);
        let payload = msg.payload();
        let origin = Box::new(Origin {
            tp: tp.clone(),
            offset,
            bytes: payload.map_or(0, |p| p.len() as u64),
            source_ms: msg.timestamp().to_millis(),
        });
        let mut record = BaseRecord::with_opaque_to(dest_topic, origin);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        if let Some(h) = msg.headers() {
            record = record.headers(h.detach());
        }
        if let Some(ts) = msg.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        self.tracker.lock().expect("tracker lock").sent(&tp, offset);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The destination is slow or down: wait for room, never drop.
                    record = back;
                    if stop.is_cancelled() {
                        return Ok(()); // not sent: never committed, carried again later
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    let what = format!("{}: producing to {dest_topic}", self.spec.name);
                    return Err(BridgeError::fatal(what, e));
                }
            }
        }
    }

    fn report_continuity(&self, tp: &Tp, c: Continuity) {
        let labels = [("route", self.spec.name), ("topic", tp.0.as_str())];
        match c {
            Continuity::InOrder => {}
            Continuity::Skipped { expected, got } => {
                self.metrics
                    .add("skipped_offsets", &labels, (got - expected) as u64);
                tracing::error!(
                    route = self.spec.name,
                    "SKIPPED {} records of {}/{}: expected offset {expected}, the source gave {got}. \
                     They were never forwarded (deleted by retention before the bridge read them, or the offset was reset).",
                    got - expected,
                    tp.0,
                    tp.1
                );
            }
            Continuity::Reset { expected, got } => {
                self.metrics.add("offset_resets", &labels, 1);
                tracing::error!(
                    route = self.spec.name,
                    "RESET of {}/{}: offsets went back from {expected} to {got}. \
                     The topic was deleted and recreated (or its offsets reset); records of the old topic \
                     the bridge had not read are gone.",
                    tp.0,
                    tp.1
                );
            }
        }
    }

    fn source_error(&self, e: &KafkaError) {
        self.metrics
            .add("source_errors", &[("route", self.spec.name)], 1);
        let code = e.rdkafka_error_code();
        if matches!(
            code,
            Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
        ) {
            // The record-by-record check will count the offsets this skipped.
            tracing::error!(
                route = self.spec.name,
                "OFFSET RESET by the source cluster: {e}"
            );
        } else {
            tracing::warn!(route = self.spec.name, "source: {e}");
        }
    }
}
