//! Where a batch comes from: an agent id and its spool's incarnation
//! (`docs/wire-format.md` §0). Together with the batch seq they are a batch's identity.

use std::fmt;
use std::str::FromStr;

use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A spool incarnation: 64 random bits drawn when a spool is created, never reused.
/// `SpoolId::LEGACY` (0) is what records written before incarnations existed are read
/// as. Written in text as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpoolId(pub u64);

impl SpoolId {
    pub const LEGACY: SpoolId = SpoolId(0);

    /// A fresh incarnation from the OS's random source; never [`SpoolId::LEGACY`].
    pub fn random() -> SpoolId {
        loop {
            let id = OsRng.next_u64();
            if id != 0 {
                return SpoolId(id);
            }
        }
    }
}

impl fmt::Display for SpoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("spool id {0:?} is not 16 hex digits")]
pub struct BadSpoolId(String);

impl FromStr for SpoolId {
    type Err = BadSpoolId;
    fn from_str(s: &str) -> Result<SpoolId, BadSpoolId> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadSpoolId(s.chars().take(40).collect()));
        }
        u64::from_str_radix(s, 16)
            .map(SpoolId)
            .map_err(|_| BadSpoolId(s.to_string()))
    }
}

impl Serialize for SpoolId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpoolId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SpoolId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks an agent or consumer id: 1..=255 bytes of ASCII letters, digits, `.`, `_`
/// and `-`, not starting with `.`. Ids become object names (`/` would split the
/// closing protocol's paths), Kafka keys and Prometheus label values.
pub fn check_id(id: &str) -> Result<(), BadId> {
    let bad = |why| {
        Err(BadId {
            id: id.to_string(),
            why,
        })
    };
    if id.is_empty() || id.len() > 255 {
        return bad(IdFault::Length);
    }
    if id.starts_with('.') {
        return bad(IdFault::LeadingDot);
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => bad(IdFault::Char(c)),
        None => Ok(()),
    }
}

/// An agent or consumer id [`check_id`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{id:?} {why}")]
pub struct BadId {
    pub id: String,
    why: IdFault,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum IdFault {
    #[error("must be 1..=255 bytes")]
    Length,
    #[error("must not start with `.`")]
    LeadingDot,
    #[error("has {0:?}: use ASCII letters, digits, `.`, `_` and `-`")]
    Char(char),
}

/// One incarnation of one agent: the scope in which batch seqs are unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub agent_id: String,
    pub spool_id: SpoolId,
}

impl Origin {
    pub fn new(agent_id: impl Into<String>, spool_id: SpoolId) -> Origin {
        Origin {
            agent_id: agent_id.into(),
            spool_id,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (spool {})", self.agent_id, self.spool_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_ids_round_trip_as_hex_and_refuse_anything_else() {
        let id = SpoolId(0x0123_4567_89ab_cdef);
        assert_eq!(id.to_string(), "0123456789abcdef");
        assert_eq!("0123456789abcdef".parse::<SpoolId>(), Ok(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"0123456789abcdef\"");
        assert_eq!(serde_json::from_str::<SpoolId>(&json).unwrap(), id);
        for bad in [
            "",
            "123",
            "0123456789abcdeg",
            "+123456789abcdef",
            "00000000000000000",
        ] {
            assert!(bad.parse::<SpoolId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_safe_in_paths_keys_and_labels() {
        for ok in ["host-a", "c1", "ip-10-0-0-1.ec2.internal", "a_b"] {
            assert_eq!(check_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "..",
            ".hidden",
            "a b",
            "quote\"",
            "new\nline",
            "é",
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_id(&"x".repeat(256)).is_err());
    }

    #[test]
    fn random_ids_are_never_legacy_and_differ() {
        let a = SpoolId::random();
        let b = SpoolId::random();
        assert_ne!(a, SpoolId::LEGACY);
        assert_ne!(a, b);
    }
}
