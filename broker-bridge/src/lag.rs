//! Lag, measured off the forwarding path: a route publishes where it is (a cheap,
//! local call) and this watcher, with a client of its own, asks the source for
//! watermarks, sets the lag gauges, and asks the route to move a position that is
//! past its partition's end (a broker that does not answer OFFSET_OUT_OF_RANGE, e.g.
//! after a topic was recreated) back to the beginning. Broker round trips here never
//! hold up forwarding.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evd_runtime::Stop as CancellationToken;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::metrics::Metrics;
use crate::tracker::Tp;

/// What a route shares with its watcher.
#[derive(Debug, Default)]
pub struct Shared {
    /// Assigned partitions → the next offset to read (None before the first fetch).
    pub positions: BTreeMap<Tp, Option<i64>>,
    /// Timestamp (ms) of the last record read per partition.
    pub last_read_ms: BTreeMap<Tp, i64>,
    /// Partitions the route should read again from the beginning.
    pub rewind: BTreeSet<Tp>,
}

pub struct Watcher {
    pub route: &'static str,
    /// A client of the source cluster in the route's group (it never subscribes).
    pub client: BaseConsumer,
    pub shared: Arc<Mutex<Shared>>,
    pub metrics: Arc<Metrics>,
    pub interval: Duration,
}

impl Watcher {
    pub fn run(self, stop: &CancellationToken) {
        while !stop.is_cancelled() {
            self.check();
            let mut slept = Duration::ZERO;
            while slept < self.interval && !stop.is_cancelled() {
                std::thread::sleep(Duration::from_millis(100));
                slept += Duration::from_millis(100);
            }
        }
    }

    fn check(&self) {
        let (positions, last_read) = {
            let s = self.shared.lock().expect("lag lock");
            (s.positions.clone(), s.last_read_ms.clone())
        };
        self.forget_partitions_gone(&positions);
        let now_ms = evd_schemas::clock::unix_now_ms();
        for (tp, position) in positions {
            let Ok((low, high)) = self
                .client
                .fetch_watermarks(&tp.0, tp.1, Duration::from_secs(5))
            else {
                continue;
            };
            let next = position.or_else(|| self.committed(&tp)).unwrap_or(low);
            if next > high {
                tracing::warn!(
                    route = self.route,
                    "{}/{} is at offset {next}, past its end {high}: the topic was \
                     recreated or its offsets moved; reading it again from its beginning",
                    tp.0,
                    tp.1
                );
                self.shared
                    .lock()
                    .expect("lag lock")
                    .rewind
                    .insert(tp.clone());
            }
            let behind = (high - next).max(0);
            let p = tp.1.to_string();
            let labels = [
                ("route", self.route),
                ("topic", tp.0.as_str()),
                ("partition", p.as_str()),
            ];
            self.metrics.set("lag_offsets", &labels, behind as f64);
            let age = match last_read.get(&tp) {
                Some(ts) if behind > 0 => (now_ms - ts).max(0) as f64 / 1000.0,
                _ => 0.0,
            };
            self.metrics.set("lag_seconds", &labels, age);
        }
    }

    /// Drops this route's lag series of partitions it no longer owns (rebalance).
    fn forget_partitions_gone(&self, owned: &BTreeMap<Tp, Option<i64>>) {
        let still_owned = |labels: &[(&'static str, String)]| {
            let value = |key| {
                labels
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.as_str())
            };
            if value("route") != Some(self.route) {
                return true;
            }
            let (Some(topic), Some(partition)) = (value("topic"), value("partition")) else {
                return true;
            };
            let partition = partition.parse().unwrap_or(-1);
            owned.contains_key(&(topic.to_string(), partition))
        };
        for name in ["lag_offsets", "lag_seconds"] {
            self.metrics.retain_gauges(name, still_owned);
        }
    }

    fn committed(&self, tp: &Tp) -> Option<i64> {
        committed_offset(&self.client, tp)
    }
}

/// The group's committed offset of a partition, if any.
pub fn committed_offset<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tp: &Tp,
) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.0, tp.1);
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .ok()?;
    match got.find_partition(&tp.0, tp.1)?.offset() {
        Offset::Offset(n) => Some(n),
        _ => None,
    }
}
