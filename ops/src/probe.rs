//! `evd validate --connect`: after the offline checks, touch what the config names.
//!
//! - The **object store** (consumer and auditor): put a probe object create-only,
//!   put it create-only again and expect "already exists", read it back, delete it.
//!   The commit protocol's commit point is a create-only put; a store (or an
//!   S3-compatible gateway) that overwrites instead would let two consumers both
//!   commit the same batches, so this is refused before start.
//! - The **Kafka cluster** (every role): fetch its metadata with the role's own
//!   client settings (TLS, SASL), then check the role's topics exist.

use std::time::Duration;

use evd_consumer::commit::Output;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// Probes `output`; one line per step passed, or the step that failed and why.
pub async fn probe_store(output: &Output) -> Result<Vec<String>, String> {
    let nonce: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let path = output.path(&evd_consumer::layout::probe(nonce));
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let body = format!("evd probe {nonce:x}\n");
    let mut steps = Vec::new();
    output
        .store
        .put_opts(&path, PutPayload::from(body.clone().into_bytes()), create())
        .await
        .map_err(|e| format!("create-only put of {path}: {e}"))?;
    steps.push(format!("write {path}: ok"));
    match output
        .store
        .put_opts(&path, PutPayload::from(b"second".to_vec()), create())
        .await
    {
        Err(object_store::Error::AlreadyExists { .. }) => {
            steps.push("a second create-only put is refused (already exists): ok".into())
        }
        Ok(_) => {
            let _ = output.store.delete(&path).await;
            return Err(format!(
                "the store overwrote {path} on a create-only put: it does not honour \
                 create-only puts (If-None-Match), which the commit protocol needs"
            ));
        }
        Err(e) => return Err(format!("second create-only put of {path}: {e}")),
    }
    let read = output
        .store
        .get(&path)
        .await
        .map_err(|e| format!("read back {path}: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("read back {path}: {e}"))?;
    if read.as_ref() != body.as_bytes() {
        return Err(format!("{path} read back different bytes"));
    }
    steps.push("read back: ok".into());
    output
        .store
        .delete(&path)
        .await
        .map_err(|e| format!("delete {path}: {e}"))?;
    steps.push("delete: ok".into());
    Ok(steps)
}

/// The cluster's broker count, with the role's client settings.
pub fn probe_kafka(config: &ClientConfig) -> Result<usize, String> {
    let consumer: BaseConsumer = config.create().map_err(|e| format!("kafka client: {e}"))?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(15))
        .map_err(|e| format!("kafka cluster metadata: {e}"))?;
    Ok(metadata.brokers().len())
}
