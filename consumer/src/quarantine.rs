//! Whole batches that cannot be delivered: kept raw under `_quarantine/<reason>/`.

use bytes::Bytes;
use evd_schemas::wire::batch;

use crate::commit::{CommitError, Output};

/// Where a batch was read from, for the quarantine note.
pub(crate) struct ReadFrom<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Keeps a batch that cannot be delivered: raw bytes plus a JSON note with the reason.
/// Stored once per batch: the name comes from the bytes (and, where the header parses,
/// the agent, spool and seq it claims, unauthenticated), so the retransmits of one
/// batch every `retransmit_after_ms` do not pile up. Returns the name when this call
/// stored it, `None` when it was there already.
pub(crate) async fn quarantine_batch(
    output: &Output,
    from: ReadFrom<'_>,
    payload: &[u8],
    reason: &str,
    detail: &str,
) -> Result<Option<String>, CommitError> {
    let base = quarantine_name(reason, payload);
    let bin = output.path(&format!("{base}.bin"));
    if !output.create(&bin, payload.to_vec()).await? {
        return Ok(None);
    }
    let note = serde_json::json!({
        "reason": reason,
        "error": detail,
        "topic": from.topic,
        "partition": from.partition,
        "offset": from.offset,
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
        Ok(h) if evd_schemas::origin::check_id(&h.meta.agent_id).is_ok() => {
            crate::layout::quarantined_batch(
                reason,
                Some((&h.meta.origin(), h.meta.batch_seq)),
                &digest,
            )
        }
        _ => crate::layout::quarantined_batch(reason, None, &digest),
    }
}
