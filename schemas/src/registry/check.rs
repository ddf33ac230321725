//! Checking an event line against the registry in one pass, without building a JSON
//! DOM: the agent's hot path (every line a client sends or a file yields).
//!
//! Contract: [`Registry::check_line`] gives the same verdict, type, `event_id` and
//! `ts` as [`parse_event_line`] followed by [`Registry::validate`] (a proptest holds
//! them together). The one-pass reader only ever says "valid" or "not sure"; a line it
//! is not sure of (invalid, or unusual such as a repeated key) goes through the DOM path,
//! which produces the precise error, so error messages are those of the DOM path.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{EventType, FieldType, Registry};
use crate::error::Result;
use crate::event::{MAX_EVENT_ID_BYTES, parse_event_line, parse_rfc3339_us};

/// What checking keeps of an accepted line.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted<'r> {
    pub ty: &'r Arc<EventType>,
    /// The client's idempotency key, if it sent one.
    pub event_id: Option<String>,
    /// The service's own timestamp, µs since the Unix epoch.
    pub ts_us: i64,
}

impl Registry {
    /// Parses and validates one line (without its newline). Rejections carry the
    /// reasons of [`parse_event_line`] and [`Registry::validate`], with their messages.
    pub fn check_line(&self, line: &[u8], max_len: usize) -> Result<Accepted<'_>> {
        if line.len() <= max_len
            && let Some(accepted) = self.check_one_pass(line)
        {
            return Ok(accepted);
        }
        let parsed = parse_event_line(line, max_len)?;
        let ty = self.validate(&parsed)?;
        Ok(Accepted {
            ty,
            event_id: parsed.event_id,
            ts_us: parsed.ts_us,
        })
    }

    /// `Some` only for a line that is certainly valid; `None` means "ask the DOM path".
    fn check_one_pass(&self, line: &[u8]) -> Option<Accepted<'_>> {
        let mut entries = Vec::with_capacity(16);
        let mut de = serde_json::Deserializer::from_slice(line);
        de.deserialize_map(EntriesVisitor(&mut entries)).ok()?;
        de.end().ok()?;
        if has_repeated_key(&entries) {
            return None;
        }
        let mut type_name = None;
        let mut ts_us = None;
        let mut event_id = None;
        let mut fields = Vec::with_capacity(entries.len());
        for (key, value) in &entries {
            match (key.as_ref(), value) {
                ("type", Scalar::Str(s)) => type_name = Some(s.as_ref()),
                ("type", _) => return None,
                ("ts", v) => ts_us = Some(v.timestamp_us()?),
                ("event_id", Scalar::Str(id))
                    if !id.is_empty() && id.len() <= MAX_EVENT_ID_BYTES =>
                {
                    event_id = Some(id.to_string())
                }
                ("event_id", _) => return None,
                (k, v) => fields.push((k, v)),
            }
        }
        let ty = self.get(type_name?)?;
        let ts_us = ts_us?;
        let mut required_present = 0;
        for (key, value) in fields {
            let spec = ty.field(key)?;
            match value {
                Scalar::Null => {}
                v if v.matches(spec.ty) => required_present += usize::from(spec.required),
                _ => return None,
            }
        }
        let required = ty.fields.iter().filter(|f| f.required).count();
        (required_present == required).then_some(Accepted {
            ty,
            event_id,
            ts_us,
        })
    }
}

/// Which envelope keys a line that is one JSON object holds at its top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeKeys {
    /// How many keys the object has.
    pub count: usize,
    pub has_type: bool,
    pub has_ts: bool,
    pub has_event_id: bool,
}

/// The top-level keys of `line` if it is exactly one JSON object with no repeated key
/// (whitespace around it allowed); `None` otherwise. Reads the line once, no DOM.
pub fn envelope_keys(line: &[u8]) -> Option<EnvelopeKeys> {
    let mut entries = Vec::with_capacity(16);
    let mut de = serde_json::Deserializer::from_slice(line);
    de.deserialize_map(EntriesVisitor(&mut entries)).ok()?;
    de.end().ok()?;
    if has_repeated_key(&entries) {
        return None;
    }
    let has = |name: &str| entries.iter().any(|(k, _)| k == name);
    Some(EnvelopeKeys {
        count: entries.len(),
        has_type: has("type"),
        has_ts: has("ts"),
        has_event_id: has("event_id"),
    })
}

/// Whether two entries share a key (the DOM keeps the last; the one-pass reader defers).
fn has_repeated_key(entries: &[(Cow<'_, str>, Scalar<'_>)]) -> bool {
    if entries.len() <= 24 {
        return entries
            .iter()
            .enumerate()
            .any(|(i, (k, _))| entries[..i].iter().any(|(seen, _)| seen == k));
    }
    let mut keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// What validation needs to know of a value.
#[derive(Debug)]
enum Scalar<'a> {
    Null,
    Bool,
    /// An integer that fits in i64.
    Int(i64),
    /// Any other number (a fraction, an exponent, or an integer beyond i64).
    OtherNumber,
    Str(Cow<'a, str>),
    /// An array or object (checked for syntax, not kept).
    Composite,
}

impl Scalar<'_> {
    fn matches(&self, ty: FieldType) -> bool {
        match ty {
            FieldType::String => matches!(self, Scalar::Str(_)),
            FieldType::Int64 => matches!(self, Scalar::Int(_)),
            FieldType::Float64 => matches!(self, Scalar::Int(_) | Scalar::OtherNumber),
            FieldType::Bool => matches!(self, Scalar::Bool),
            FieldType::Timestamp => self.timestamp_us().is_some(),
            FieldType::Json => true,
        }
    }

    /// As `event::parse_timestamp_us`: integer epoch ms or an RFC 3339 string.
    fn timestamp_us(&self) -> Option<i64> {
        match self {
            Scalar::Int(ms) => ms.checked_mul(1000),
            Scalar::Str(s) => parse_rfc3339_us(s),
            _ => None,
        }
    }
}

struct EntriesVisitor<'v, 'de>(&'v mut Vec<(Cow<'de, str>, Scalar<'de>)>);

impl<'de> Visitor<'de> for EntriesVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(StrSeed)? {
            let value = map.next_value_seed(ScalarSeed)?;
            self.0.push((key, value));
        }
        Ok(())
    }
}

/// A string, borrowed from the line unless it had escapes.
struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> std::result::Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_string()))
    }
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(Scalar::Bool)
    }

    fn visit_i64<E>(self, n: i64) -> std::result::Result<Self::Value, E> {
        Ok(Scalar::Int(n))
    }

    fn visit_u64<E>(self, n: u64) -> std::result::Result<Self::Value, E> {
        Ok(i64::try_from(n).map_or(Scalar::OtherNumber, Scalar::Int))
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(Scalar::OtherNumber)
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> std::result::Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_string())))
    }

    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Composite)
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Composite)
    }
}

#[cfg(test)]
mod tests;
