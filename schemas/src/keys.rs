//! Keys: master keyrings (consumers, auditor), agent keyrings (one host), and the
//! derivation between them.
//!
//! `agent_key = HKDF-SHA256(salt = "evd agent key v1", ikm = master[key_id], info = agent_id)`.
//! An agent is provisioned with its derived keys only, so a compromised host can seal
//! batches for its own agent id and no other.
//!
//! `control_key = HKDF-SHA256(salt = "evd control key v1", ikm = agent_key, info = agent_id)`
//! authenticates the agent's acks and audit records (`wire::control_tag`); its own label
//! keeps it distinct from every key that seals batches.
//!
//! Keyring files are TOML, format version 1:
//!
//! ```toml
//! version = 1
//! kind = "agent"          # or "master"
//! agent_id = "host-a"     # agent keyrings only
//! [[keys]]
//! id = 1
//! key_hex = "…64 hex digits…"
//! ```
//!
//! Agents seal with the highest key id they hold; readers accept every id they hold.
//! Rotation: add a new id to the master keyring, roll consumers, then re-derive agents.

use std::collections::BTreeMap;

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::toml_source::{SourceError, TomlSource};

pub const KEY_LEN: usize = 32;
const AGENT_KEY_SALT: &[u8] = b"evd agent key v1";
const CONTROL_KEY_SALT: &[u8] = b"evd control key v1";
const KEYRING_FORMAT_VERSION: u32 = 1;

/// A 256-bit symmetric key. `Debug` never prints the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub [u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Derives the agent key for `agent_id` from a master key.
    pub fn derive_agent_key(&self, agent_id: &str) -> Key {
        self.derive(AGENT_KEY_SALT, agent_id)
    }

    /// Derives the control key (acks, audit records) from this agent key.
    pub fn derive_control_key(&self, agent_id: &str) -> Key {
        self.derive(CONTROL_KEY_SALT, agent_id)
    }

    /// HKDF-SHA256 with `salt` over this key, `info` = the agent id.
    fn derive(&self, salt: &[u8], agent_id: &str) -> Key {
        let hk = Hkdf::<Sha256>::new(Some(salt), &self.0);
        let mut out = [0u8; KEY_LEN];
        hk.expand(agent_id.as_bytes(), &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Key(out)
    }

    fn from_hex(text: &str) -> Option<Key> {
        let raw = hex::decode(text.trim()).ok()?;
        Some(Key(raw.try_into().ok()?))
    }
}

/// Where a reader finds the key to open a batch sealed by `agent_id` under `key_id`.
pub trait KeySource {
    fn agent_key(&self, key_id: u32, agent_id: &str) -> Option<Key>;

    /// The newest key id this source can derive `agent_id`'s keys under: what a
    /// writer signs with.
    fn newest_key_id(&self, agent_id: &str) -> Option<u32>;
}

/// Master keys by id; held by consumers and the auditor only.
#[derive(Debug, Clone, Default)]
pub struct MasterKeyring {
    keys: BTreeMap<u32, Key>,
}

impl MasterKeyring {
    pub fn new(keys: impl IntoIterator<Item = (u32, Key)>) -> Self {
        MasterKeyring {
            keys: keys.into_iter().collect(),
        }
    }

    /// Derives an agent keyring holding every key id of this master keyring.
    pub fn derive_agent_keyring(&self, agent_id: &str) -> AgentKeyring {
        AgentKeyring {
            agent_id: agent_id.to_string(),
            keys: self
                .keys
                .iter()
                .map(|(&id, k)| (id, k.derive_agent_key(agent_id)))
                .collect(),
        }
    }

    pub fn key_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }

    /// Adds or replaces a key (rotation adds the next id).
    pub fn insert(&mut self, key_id: u32, key: Key) {
        self.keys.insert(key_id, key);
    }

    /// Parses a keyring file that must be of kind `master`.
    pub fn from_toml(origin: &str, text: &str) -> Result<Self> {
        let file = KeyringFile::parse(origin, text)?;
        if file.kind != KeyringKind::Master {
            return Err(Error::config(format!(
                "{origin}: key `kind`: expected \"master\", this is an agent keyring"
            )));
        }
        Ok(MasterKeyring { keys: file.keys })
    }

    pub fn to_toml(&self) -> String {
        KeyringFile::render(KeyringKind::Master, None, &self.keys)
    }
}

impl KeySource for MasterKeyring {
    fn agent_key(&self, key_id: u32, agent_id: &str) -> Option<Key> {
        self.keys.get(&key_id).map(|k| k.derive_agent_key(agent_id))
    }

    fn newest_key_id(&self, _agent_id: &str) -> Option<u32> {
        self.keys.keys().next_back().copied()
    }
}

/// One agent's derived keys.
#[derive(Debug, Clone)]
pub struct AgentKeyring {
    agent_id: String,
    keys: BTreeMap<u32, Key>,
}

impl AgentKeyring {
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The key new batches are sealed with: the highest key id held.
    pub fn sealing_key(&self) -> (u32, &Key) {
        let (&id, key) = self
            .keys
            .iter()
            .next_back()
            .expect("agent keyrings are never empty (checked on load)");
        (id, key)
    }

    /// Parses a keyring file that must be of kind `agent`.
    pub fn from_toml(origin: &str, text: &str) -> Result<Self> {
        let file = KeyringFile::parse(origin, text)?;
        match (file.kind, file.agent_id) {
            (KeyringKind::Agent, Some(agent_id)) => Ok(AgentKeyring {
                agent_id,
                keys: file.keys,
            }),
            (KeyringKind::Agent, None) => Err(Error::config(format!(
                "{origin}: key `agent_id`: required for an agent keyring"
            ))),
            (KeyringKind::Master, _) => Err(Error::config(format!(
                "{origin}: key `kind`: expected \"agent\"; agents must not hold master keys"
            ))),
        }
    }

    pub fn to_toml(&self) -> String {
        KeyringFile::render(KeyringKind::Agent, Some(&self.agent_id), &self.keys)
    }
}

impl KeySource for AgentKeyring {
    fn agent_key(&self, key_id: u32, agent_id: &str) -> Option<Key> {
        if agent_id != self.agent_id {
            return None;
        }
        self.keys.get(&key_id).cloned()
    }

    fn newest_key_id(&self, agent_id: &str) -> Option<u32> {
        (agent_id == self.agent_id)
            .then(|| self.keys.keys().next_back().copied())
            .flatten()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum KeyringKind {
    Master,
    Agent,
}

/// The on-disk shape of a keyring file.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawKeyring {
    version: u32,
    kind: KeyringKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent_id: Option<String>,
    keys: Vec<RawKey>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: u32,
    key_hex: String,
}

struct KeyringFile {
    kind: KeyringKind,
    agent_id: Option<String>,
    keys: BTreeMap<u32, Key>,
}

impl KeyringFile {
    fn parse(origin: &str, text: &str) -> Result<Self> {
        let source = TomlSource::new(origin, text);
        let raw: RawKeyring = source.deserialize().map_err(Error::config)?;
        let fail = |key: String, why: &str| Error::config(source.error_at_key(&key, why));
        if raw.version != KEYRING_FORMAT_VERSION {
            return Err(fail(
                "version".into(),
                &format!(
                    "unsupported keyring format version {} (this build reads {KEYRING_FORMAT_VERSION})",
                    raw.version
                ),
            ));
        }
        if raw.keys.is_empty() {
            return Err(fail("keys".into(), "a keyring needs at least one key"));
        }
        let mut keys = BTreeMap::new();
        for (i, k) in raw.keys.iter().enumerate() {
            let key = Key::from_hex(&k.key_hex).ok_or_else(|| {
                fail(
                    format!("keys[{i}].key_hex"),
                    "must be exactly 64 hex digits (32 bytes)",
                )
            })?;
            if keys.insert(k.id, key).is_some() {
                return Err(fail(format!("keys[{i}].id"), "duplicate key id"));
            }
        }
        Ok(KeyringFile {
            kind: raw.kind,
            agent_id: raw.agent_id,
            keys,
        })
    }

    fn render(kind: KeyringKind, agent_id: Option<&str>, keys: &BTreeMap<u32, Key>) -> String {
        let raw = RawKeyring {
            version: KEYRING_FORMAT_VERSION,
            kind,
            agent_id: agent_id.map(str::to_string),
            keys: keys
                .iter()
                .map(|(&id, k)| RawKey {
                    id,
                    key_hex: hex::encode(k.0),
                })
                .collect(),
        };
        toml::to_string(&raw).expect("keyrings always serialize")
    }
}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        Error::config(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKeyring {
        MasterKeyring::new([(1, Key([7; 32])), (2, Key([9; 32]))])
    }

    #[test]
    fn agent_keys_differ_per_agent_and_key_id() {
        let m = master();
        let a1 = m.agent_key(1, "host-a").unwrap();
        assert_ne!(a1, m.agent_key(1, "host-b").unwrap());
        assert_ne!(a1, m.agent_key(2, "host-a").unwrap());
        assert_eq!(
            a1,
            m.derive_agent_keyring("host-a")
                .agent_key(1, "host-a")
                .unwrap()
        );
    }

    #[test]
    fn agent_keyring_round_trips_and_seals_with_newest_key() {
        let ring = master().derive_agent_keyring("host-a");
        let back = AgentKeyring::from_toml("a.toml", &ring.to_toml()).unwrap();
        assert_eq!(back.sealing_key().0, 2);
        assert!(
            back.agent_key(1, "host-b").is_none(),
            "only its own agent id"
        );
    }

    #[test]
    fn bad_key_names_file_line_and_key() {
        let text = "version = 1\nkind = \"master\"\n[[keys]]\nid = 1\nkey_hex = \"abc\"\n";
        let err = MasterKeyring::from_toml("ring.toml", text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("ring.toml:5"), "{msg}");
        assert!(msg.contains("keys[0].key_hex"), "{msg}");
    }

    #[test]
    fn agents_refuse_master_keyrings() {
        let err = AgentKeyring::from_toml("m.toml", &master().to_toml()).unwrap_err();
        assert!(err.to_string().contains("must not hold master keys"));
    }
}
