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

/// Whether a view keeps the values it reads or only checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Values {
    Keep,
    Check,
}

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
        let entries = read_entries(line)?;
        let type_name = entries.iter().find_map(|(k, v)| match (k.as_ref(), v) {
            ("type", Scalar::Str(name)) => Some(name.as_ref()),
            _ => None,
        })?;
        let ty = self.get(type_name)?;
        let view = ty.view_entries(entries, Values::Check)?;
        Some(Accepted {
            ty,
            event_id: view.event_id.map(Cow::into_owned),
            ts_us: view.ts_us,
        })
    }
}

/// A line read in one pass against one event type: valid for it, every value kept as
/// the type's field declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct LineView<'a> {
    pub type_name: Cow<'a, str>,
    /// The service's own timestamp, µs since the Unix epoch.
    pub ts_us: i64,
    pub event_id: Option<Cow<'a, str>>,
    /// One per field of the type, in its order; `None` when absent or null.
    pub values: Vec<Option<FieldValue<'a>>>,
}

impl LineView<'_> {
    /// Whether a `json` field has a value (whose text this view does not keep).
    pub fn has_json(&self) -> bool {
        self.values
            .iter()
            .any(|v| matches!(v, Some(FieldValue::Json)))
    }
}

/// A field's value as its declared type reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    TimestampUs(i64),
    /// A `json` field is present; its text is not kept.
    Json,
}

impl EventType {
    /// Reads `line` in one pass as an event of this type: `Some` only when it is
    /// certainly valid for it (its `type` may name another type: the caller compares);
    /// `None` means "ask the DOM path" ([`parse_event_line`] and
    /// [`EventType::validate_fields`]), which also gives the reason.
    pub fn read_line<'a>(&self, line: &'a [u8]) -> Option<LineView<'a>> {
        self.view_entries(read_entries(line)?, Values::Keep)
    }

    /// The line's view; with `Values::Check`, `values` is left empty (each value is
    /// still checked against its field): what checking alone needs, one allocation less.
    fn view_entries<'a>(
        &self,
        entries: Vec<(Cow<'a, str>, Scalar<'a>)>,
        keep: Values,
    ) -> Option<LineView<'a>> {
        let mut type_name = None;
        let mut ts_us = None;
        let mut event_id = None;
        let mut values: Vec<Option<FieldValue<'a>>> = match keep {
            Values::Keep => vec![None; self.fields.len()],
            Values::Check => Vec::new(),
        };
        let mut required_present = 0;
        for (key, value) in entries {
            match (key.as_ref(), value) {
                ("type", Scalar::Str(s)) => type_name = Some(s),
                ("type", _) => return None,
                ("ts", v) => ts_us = Some(v.timestamp_us()?),
                ("event_id", Scalar::Str(id))
                    if !id.is_empty() && id.len() <= MAX_EVENT_ID_BYTES =>
                {
                    event_id = Some(id)
                }
                ("event_id", _) => return None,
                (_, Scalar::Null) => {
                    self.field(&key)?;
                }
                (k, v) => {
                    let i = self.fields.iter().position(|f| f.name == k)?;
                    let spec = &self.fields[i];
                    let value = v.read_as(spec.ty)?;
                    if keep == Values::Keep {
                        values[i] = Some(value);
                    }
                    required_present += usize::from(spec.required);
                }
            }
        }
        let required = self.fields.iter().filter(|f| f.required).count();
        (required_present == required).then_some(LineView {
            type_name: type_name?,
            ts_us: ts_us?,
            event_id,
            values,
        })
    }
}

/// The entries of a line that is exactly one JSON object without a repeated key.
fn read_entries(line: &[u8]) -> Option<Vec<(Cow<'_, str>, Scalar<'_>)>> {
    let mut entries = Vec::with_capacity(16);
    let mut de = serde_json::Deserializer::from_slice(line);
    de.deserialize_map(EntriesVisitor(&mut entries)).ok()?;
    de.end().ok()?;
    (!has_repeated_key(&entries)).then_some(entries)
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
    read_entries(line).map(|entries| EnvelopeKeys::of(&entries))
}

impl EnvelopeKeys {
    fn of(entries: &[(Cow<'_, str>, Scalar<'_>)]) -> EnvelopeKeys {
        let has = |name: &str| entries.iter().any(|(k, _)| k == name);
        EnvelopeKeys {
            count: entries.len(),
            has_type: has("type"),
            has_ts: has("ts"),
            has_event_id: has("event_id"),
        }
    }
}

/// The envelope the file tailer adds to a JSON line: its `event_id`, and the `type` and
/// `ts` the line lacks.
#[derive(Debug, Clone, Copy)]
pub struct TailEnvelope<'e> {
    pub event_id: &'e str,
    /// The source's event type, for a line without `type`.
    pub event_type: &'e str,
    /// The read time, for a line without `ts`.
    pub now_ms: i64,
}

impl Registry {
    /// Checks, in one pass over `line`, the event it becomes once `envelope` is added
    /// before its closing brace: the same verdict as [`Registry::check_line`] on that
    /// event. `Some` only when `line` is one JSON object without its own `event_id` or a
    /// repeated key and the event is certainly valid; `None` means "build the event and
    /// check it", which also gives the reason.
    pub fn check_with_envelope(
        &self,
        line: &[u8],
        envelope: TailEnvelope<'_>,
    ) -> Option<(EnvelopeKeys, Accepted<'_>)> {
        let mut entries = read_entries(line)?;
        let keys = EnvelopeKeys::of(&entries);
        if keys.has_event_id {
            return None;
        }
        let type_name = match entries.iter().find(|(k, _)| k == "type") {
            Some((_, Scalar::Str(name))) => name.clone(),
            Some(_) => return None,
            None => Cow::Borrowed(envelope.event_type),
        };
        let ty = self.get(&type_name)?;
        if !keys.has_type {
            entries.push(("type".into(), Scalar::Str(type_name)));
        }
        if !keys.has_ts {
            entries.push(("ts".into(), Scalar::Int(envelope.now_ms)));
        }
        entries.push(("event_id".into(), Scalar::Str(envelope.event_id.into())));
        let view = ty.view_entries(entries, Values::Check)?;
        Some((
            keys,
            Accepted {
                ty,
                event_id: view.event_id.map(Cow::into_owned),
                ts_us: view.ts_us,
            },
        ))
    }
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
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// An integer beyond i64.
    BigUint(u64),
    /// A number with a fraction or an exponent.
    Float(f64),
    Str(Cow<'a, str>),
    /// An array or object (checked for syntax, not kept).
    Composite,
}

impl<'a> Scalar<'a> {
    /// The value as a field of type `ty` reads it (as `serde_json::Value`'s `as_i64`,
    /// `as_f64`, … do); `None` when it is not of that type.
    fn read_as(self, ty: FieldType) -> Option<FieldValue<'a>> {
        Some(match (ty, self) {
            (FieldType::String, Scalar::Str(s)) => FieldValue::Str(s),
            (FieldType::Int64, Scalar::Int(n)) => FieldValue::Int(n),
            (FieldType::Float64, Scalar::Int(n)) => FieldValue::Float(n as f64),
            (FieldType::Float64, Scalar::BigUint(n)) => FieldValue::Float(n as f64),
            (FieldType::Float64, Scalar::Float(x)) => FieldValue::Float(x),
            (FieldType::Bool, Scalar::Bool(b)) => FieldValue::Bool(b),
            (FieldType::Timestamp, v) => FieldValue::TimestampUs(v.timestamp_us()?),
            (FieldType::Json, _) => FieldValue::Json,
            _ => return None,
        })
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

    fn visit_bool<E>(self, b: bool) -> std::result::Result<Self::Value, E> {
        Ok(Scalar::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> std::result::Result<Self::Value, E> {
        Ok(Scalar::Int(n))
    }

    fn visit_u64<E>(self, n: u64) -> std::result::Result<Self::Value, E> {
        Ok(i64::try_from(n).map_or(Scalar::BigUint(n), Scalar::Int))
    }

    fn visit_f64<E>(self, x: f64) -> std::result::Result<Self::Value, E> {
        Ok(Scalar::Float(x))
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
