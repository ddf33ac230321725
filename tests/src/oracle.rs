//! Load generation with unique ids, and a reader that finds them again in Kafka.
//!
//! Every event carries its id as `u<id>`: in `user_id` for the four example types that
//! have it, in `signature` for `ClientCrash`; the five types take turns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use evd_producer::client::{Response, send_lines};
use evd_schemas::wire::ack::Ack;
use evd_schemas::wire::batch;
use evd_schemas::{MasterKeyring, SeqRanges};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

pub const TYPES: [&str; 5] = [
    "PageView",
    "SearchViewResponse",
    "EndSong",
    "AdImpression",
    "ClientCrash",
];

/// The column holding the id of an event of `event_type`.
pub fn id_column(event_type: &str) -> &'static str {
    if event_type == "ClientCrash" {
        "signature"
    } else {
        "user_id"
    }
}

pub fn topic(ty: &str) -> String {
    format!("evd.events.{ty}")
}

/// A PageView line with id `id` whose url carries `pad` bytes of padding.
pub fn page_view_line(id: u64, pad: usize) -> String {
    format!(
        r#"{{"type":"PageView","ts":{},"user_id":"u{id}","url":"/home/{}","referrer":"/search","load_ms":{}}}"#,
        1_795_000_000_000u64 + id,
        "x".repeat(pad),
        id % 900
    )
}

/// A valid ~300-byte event line with id `id`.
pub fn event_line(id: u64) -> String {
    let ts = 1_795_000_000_000u64 + id;
    let pad = "x".repeat(120);
    match id % 5 {
        4 => format!(
            r#"{{"type":"ClientCrash","ts":{ts},"app_version":"8.9.{}","platform":"android","signature":"u{id}","details":{{"thread":"main","pad":"{pad}"}}}}"#,
            id % 40
        ),
        0 => page_view_line(id, pad.len()),
        1 => format!(
            r#"{{"type":"SearchViewResponse","ts":{ts},"user_id":"u{id}","query":"songs like {pad}","result_count":{},"latency_ms":12.5}}"#,
            id % 50
        ),
        2 => format!(
            r#"{{"type":"EndSong","ts":{ts},"user_id":"u{id}","track_id":"t{pad}","ms_played":{},"reason_end":"trackdone","offline":false}}"#,
            id % 300_000
        ),
        _ => format!(
            r#"{{"type":"AdImpression","ts":{ts},"user_id":"u{id}","ad_id":"ad-{pad}","campaign_id":"c7","price_micros":1200,"viewable":true}}"#
        ),
    }
}

/// `event_line(id)` with the client idempotency key `"event_id":"e<id>"`.
pub fn event_line_with_id(id: u64) -> String {
    format!("{{\"event_id\":\"e{id}\",{}", &event_line(id)[1..])
}

/// Sends `ids` (lines with event ids) until every one is acked, reconnecting across
/// agent restarts and refusals (`spool_full`); returns the acked ids.
pub async fn persistent_client(socket: PathBuf, ids: Vec<u64>) -> Vec<u64> {
    let mut acked = Vec::new();
    send_until_acked(&socket, ids, |got| acked.extend_from_slice(got)).await;
    acked
}

/// The test clients' one send loop: sends `ids` (lines with event ids) in slices of at
/// most 5,000 over fresh connections until every one is acked, handing each slice's
/// acked ids to `acked` as they come. Returns how many sends came back short (a
/// refusal, a cut connection or a dead agent), each followed by a 50 ms pause.
pub async fn send_until_acked(socket: &Path, ids: Vec<u64>, mut acked: impl FnMut(&[u64])) -> u64 {
    let mut pending: BTreeSet<u64> = ids.into_iter().collect();
    let mut short = 0;
    while !pending.is_empty() {
        // In slices, so a kill interrupts only part of the work.
        let slice: Vec<u64> = pending.iter().copied().take(5_000).collect();
        let got = send_ids_as(socket, slice.iter().copied(), event_line_with_id)
            .await
            .unwrap_or_default();
        for id in &got {
            pending.remove(id);
        }
        if !got.is_empty() {
            acked(&got);
        }
        if got.len() < slice.len() {
            short += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    short
}

/// Sends events `ids` over one connection; returns the ids the agent acked.
pub async fn send_ids(socket: &Path, ids: impl Iterator<Item = u64>) -> Result<Vec<u64>> {
    send_ids_as(socket, ids, event_line).await
}

/// Like `send_ids`, with each line made by `line`.
pub async fn send_ids_as(
    socket: &Path,
    ids: impl Iterator<Item = u64>,
    line: fn(u64) -> String,
) -> Result<Vec<u64>> {
    let ids: Vec<u64> = ids.collect();
    let mut text = String::with_capacity(ids.len() * 320);
    for &id in &ids {
        text.push_str(&line(id));
        text.push('\n');
    }
    let mut acked = Vec::new();
    let result = send_lines(socket, std::io::Cursor::new(text.into_bytes()), |n, r| {
        if let Response::Ok(_) = r {
            acked.push(ids[n as usize - 1]);
        }
    })
    .await;
    // A dropped connection (agent killed) is expected in fault tests: keep what was
    // acked; the callers resend the rest.
    let _ = result;
    Ok(acked)
}

/// Reads the event topics, opens batches, records ids, and (optionally) acks every
/// batch back to its agent like a consumer would.
pub struct TestReader {
    consumer: BaseConsumer,
    acker: Option<BaseProducer>,
    acks_topic: String,
    keys: MasterKeyring,
    /// id → how many times it was seen (retransmits show up more than once).
    pub seen: BTreeMap<u64, u32>,
    pub batches: BTreeSet<(String, u64)>,
    pub bad_batches: u64,
}

impl TestReader {
    pub fn new(bootstrap: &str, keys: MasterKeyring, ack: bool) -> Result<TestReader> {
        let consumer: BaseConsumer = crate::kafka::client_config(bootstrap)
            .set(
                "group.id",
                format!("evd-test-reader-{}", crate::free_port()),
            )
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()?;
        let topics: Vec<String> = TYPES.iter().map(|t| topic(t)).collect();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&refs)?;
        let acker = if ack {
            Some(
                crate::kafka::client_config(bootstrap)
                    .set("linger.ms", "5")
                    .set("partitioner", evd_schemas::wire::ack_partition::PARTITIONER)
                    .create()?,
            )
        } else {
            None
        };
        Ok(TestReader {
            consumer,
            acker,
            acks_topic: "evd.acks".into(),
            keys,
            seen: BTreeMap::new(),
            batches: BTreeSet::new(),
            bad_batches: 0,
        })
    }

    /// Polls for up to `window`.
    pub fn poll_for(&mut self, window: Duration) {
        let until = Instant::now() + window;
        while Instant::now() < until {
            let Some(msg) = self.consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let Ok(msg) = msg else { continue };
            let Some(payload) = msg.payload() else {
                continue;
            };
            let opened = match batch::open(&self.keys, payload) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("test reader: bad batch: {e}");
                    self.bad_batches += 1;
                    continue;
                }
            };
            let meta = &opened.header.meta;
            self.batches.insert((meta.agent_id.clone(), meta.batch_seq));
            for rec in opened.records() {
                let v: serde_json::Value =
                    serde_json::from_slice(rec.body).expect("bodies are JSON");
                let id = v[id_column(&meta.event_type)]
                    .as_str()
                    .and_then(|u| u[1..].parse().ok())
                    .expect("id u<n>");
                *self.seen.entry(id).or_default() += 1;
            }
            if let Some(acker) = &self.acker {
                let ack = Ack {
                    agent_id: meta.agent_id.clone(),
                    spool_id: meta.spool_id,
                    committed_at_ms: 0,
                    committed_object: "test-reader".into(),
                    batch_seqs: SeqRanges::from_ranges([(meta.batch_seq, meta.batch_seq)]),
                }
                .encode(&self.keys)
                .expect("ack encodes");
                let record = BaseRecord::to(&self.acks_topic)
                    .key(meta.agent_id.as_bytes())
                    .payload(&ack);
                let _ = acker.send(record);
                acker.poll(Duration::ZERO);
            }
        }
        if let Some(acker) = &self.acker {
            let _ = acker.flush(Duration::from_secs(5));
        }
    }

    /// Polls until every id in `want` was seen or `timeout` passed; returns the missing.
    pub fn wait_for(&mut self, want: &[u64], timeout: Duration) -> Vec<u64> {
        let until = Instant::now() + timeout;
        loop {
            let missing: Vec<u64> = want
                .iter()
                .copied()
                .filter(|id| !self.seen.contains_key(id))
                .collect();
            if missing.is_empty() || Instant::now() > until {
                return missing;
            }
            self.poll_for(Duration::from_millis(500));
        }
    }
}

/// Creates every topic the agent uses on `bootstrap`.
pub fn create_pipeline_topics(bootstrap: &str, partitions: i32) -> Result<()> {
    create_pipeline_topics_with(|| crate::kafka::client_config(bootstrap), partitions)
}

/// [`create_pipeline_topics`] with client configs of the caller's (TLS settings, …).
pub fn create_pipeline_topics_with(
    config: impl Fn() -> rdkafka::ClientConfig,
    partitions: i32,
) -> Result<()> {
    for t in TYPES.iter().chain(&["LogLine"]) {
        crate::kafka::create_topic_with(config(), &topic(t), partitions)?;
    }
    crate::kafka::create_topic_with(config(), "evd.acks", 1)?;
    crate::kafka::create_topic_with(config(), "evd.audit", 1)?;
    Ok(())
}
