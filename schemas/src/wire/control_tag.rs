//! The authentication trailer of acks and audit records (`docs/wire-format.md` §2.1):
//! `key_id` (u32) then a 32-byte HMAC-SHA256 tag, under the control key of the
//! record's agent, over every byte before the tag.
//!
//! Contract: a decoder reads the signed part with [`signed_body`], then calls
//! [`verify`] (constant time) before it returns anything, so a caller never acts on a
//! field of a forged record.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::codec::{self, CodecError, Reader};
use crate::error::{Error, Reason, Result};
use crate::keys::{Key, KeySource};

/// `key_id` + tag.
pub const TRAILER_LEN: usize = 4 + TAG_LEN;
const TAG_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("control record of agent {agent_id:?}: tag does not verify under key id {key_id}")]
struct BadTag {
    agent_id: String,
    key_id: u32,
}

fn mac(agent_key: &Key, agent_id: &str) -> Hmac<Sha256> {
    let control = agent_key.derive_control_key(agent_id);
    Hmac::<Sha256>::new_from_slice(&control.0).expect("HMAC takes any key length")
}

/// Appends `key_id` and the tag over `out` as it stands, under the newest key
/// `keys` hold for `agent_id`.
pub(crate) fn sign(out: &mut Vec<u8>, keys: &dyn KeySource, agent_id: &str) -> Result<()> {
    let key_id = keys
        .newest_key_id(agent_id)
        .ok_or(Error::UnknownKey { key_id: 0 })?;
    let agent_key = keys
        .agent_key(key_id, agent_id)
        .ok_or(Error::UnknownKey { key_id })?;
    out.extend_from_slice(&key_id.to_le_bytes());
    let mut mac = mac(&agent_key, agent_id);
    mac.update(out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    Ok(())
}

/// Checks `bytes`' magic and version (first, so an old or foreign record is named as
/// such), then splits off the trailer. Returns a reader over the signed part positioned
/// after the header, the signed part, and the trailer for [`verify`].
pub(crate) fn signed_body<'a>(
    bytes: &'a [u8],
    magic: &[u8; 4],
    reads: &[u8],
) -> Result<(Reader<'a>, &'a [u8], &'a [u8]), CodecError> {
    codec::expect_header(&mut Reader::new(bytes), magic, reads)?;
    let (signed, trailer) = split(bytes)?;
    let mut r = Reader::new(signed);
    codec::expect_header(&mut r, magic, reads)?;
    Ok((r, signed, trailer))
}

/// Splits a signed record into its body (everything before `key_id`) and trailer.
fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), CodecError> {
    if bytes.len() < TRAILER_LEN {
        return Err(CodecError::Short {
            field: "key_id and tag",
            at: 0,
            need: TRAILER_LEN - bytes.len(),
        });
    }
    Ok(bytes.split_at(bytes.len() - TRAILER_LEN))
}

/// Verifies the trailer of `body` for `agent_id`: `UnknownKey` when `keys` cannot
/// derive the key id it names, `Rejected(BadTag)` when the tag does not match.
pub(crate) fn verify(
    body: &[u8],
    trailer: &[u8],
    keys: &dyn KeySource,
    agent_id: &str,
) -> Result<()> {
    let (key_id, tag) = trailer.split_at(4);
    let key_id = u32::from_le_bytes(key_id.try_into().expect("4 bytes"));
    let agent_key = keys
        .agent_key(key_id, agent_id)
        .ok_or(Error::UnknownKey { key_id })?;
    let mut mac = mac(&agent_key, agent_id);
    mac.update(body);
    mac.update(&key_id.to_le_bytes());
    mac.verify_slice(tag).map_err(|_| {
        Error::rejected(
            Reason::BadTag,
            BadTag {
                agent_id: agent_id.to_string(),
                key_id,
            },
        )
    })
}
