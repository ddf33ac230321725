//! rdkafka helpers for tests: topic creation, metadata probes, simple produce/consume.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

/// Quiet client config: errors surface through results, not log spam.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .set("broker.address.family", "v4");
    cfg
}

/// True when a broker at `bootstrap` answers a metadata request within `timeout`.
pub fn metadata_answers(bootstrap: &str, timeout: Duration) -> bool {
    let consumer: Result<BaseConsumer, _> = client_config(bootstrap).create();
    consumer.is_ok_and(|c| c.fetch_metadata(None, timeout).is_ok())
}

/// Creates a topic (replication 1); an existing topic is fine. Callable from sync code
/// and from inside a runtime (it blocks on a thread of its own).
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<()> {
    create_topic_with(client_config(bootstrap), name, partitions)
}

/// [`create_topic`] with a client config of the caller's (TLS settings, …).
pub fn create_topic_with(config: ClientConfig, name: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            anyhow::Ok(runtime.block_on(admin.create_topics([&topic], &opts))?)
        })
        .join()
        .expect("create_topic thread panicked")
    })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Commits `offset` for every partition `0..partitions` of `topics` in `group` (the
/// group must have no live members).
pub fn commit_offsets(
    bootstrap: &str,
    group: &str,
    topics: &[String],
    partitions: i32,
    offset: i64,
) -> Result<()> {
    let consumer: BaseConsumer = client_config(bootstrap).set("group.id", group).create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for t in topics {
        for p in 0..partitions {
            tpl.add_partition_offset(t, p, rdkafka::Offset::Offset(offset))?;
        }
    }
    consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync)?;
    Ok(())
}

/// An idempotent acks=all producer, as the agent uses.
pub fn reliable_producer(bootstrap: &str) -> Result<FutureProducer> {
    Ok(client_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()?)
}

/// Produces `values` to `topic` (keyed by index) and waits for every delivery.
pub async fn produce_all(producer: &FutureProducer, topic: &str, values: &[Vec<u8>]) -> Result<()> {
    let mut pending = Vec::with_capacity(values.len().min(5_000));
    for (i, value) in values.iter().enumerate() {
        let key = (i as u64).to_le_bytes();
        let mut record = FutureRecord::to(topic)
            .payload(value.as_slice())
            .key(&key[..]);
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => bail!("enqueue: {e}"),
            }
        };
        pending.push(delivery);
        // Bound what is queued in librdkafka.
        if pending.len() >= 5_000 {
            await_all(pending.drain(..)).await?;
        }
    }
    await_all(pending.drain(..)).await?;
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}

async fn await_all(deliveries: impl Iterator<Item = DeliveryFuture>) -> Result<()> {
    for delivery in deliveries {
        delivery
            .await
            .context("producer dropped")?
            .map_err(|(e, _)| e)
            .context("delivery")?;
    }
    Ok(())
}

/// Reads `topic` from the beginning with a fresh group until `want` messages arrived or
/// `timeout` passed; returns the payloads in arrival order.
pub fn consume_n(
    bootstrap: &str,
    topic: &str,
    want: usize,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>> {
    let group = format!("evd-test-{}", crate::free_port());
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(want.min(1 << 16));
    while out.len() < want && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(msg)) => out.push(msg.payload().unwrap_or_default().to_vec()),
            Some(Err(e)) => eprintln!("consume {topic}: {e} (retrying)"),
            None => {}
        }
    }
    Ok(out)
}
