//! The event line a service sends: one JSON object with `type`, `ts` and its fields.
//! See `docs/wire-format.md` §4.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Reason, Result};

/// Default for one event line, newline excluded: 900 KiB, so that a batch holding one
/// such line, sealed, still fits librdkafka's default `message.max.bytes` (1,000,000)
/// and Kafka's default topic limit.
pub const DEFAULT_MAX_LINE_BYTES: usize = 900 << 10;

/// Longest client idempotency key (`event_id`), in bytes.
pub const MAX_EVENT_ID_BYTES: usize = 128;

/// A parsed event line. `fields` holds every key except `type`, `ts` and `event_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLine {
    pub type_name: String,
    /// The service's own timestamp, µs since the Unix epoch.
    pub ts_us: i64,
    /// The client's idempotency key, if it sent one.
    pub event_id: Option<String>,
    pub fields: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
enum LineError {
    #[error("line is {len} bytes, the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("not a JSON object")]
    NotObject,
    #[error("missing `type` (the event type name, a string)")]
    MissingType,
    #[error("missing `ts` (RFC 3339 string or epoch milliseconds)")]
    MissingTs,
    #[error("`ts` is {0}, expected an RFC 3339 string or integer epoch milliseconds")]
    BadTs(String),
    #[error("`event_id` is {0}, expected a string of 1 to {MAX_EVENT_ID_BYTES} bytes")]
    BadEventId(String),
}

/// Parses one line (without its newline). Rejections carry `Json` or `TooLarge`.
pub fn parse_event_line(line: &[u8], max_len: usize) -> Result<EventLine> {
    if line.len() > max_len {
        return Err(Error::rejected(
            Reason::TooLarge,
            LineError::TooLong {
                len: line.len(),
                max: max_len,
            },
        ));
    }
    let json = |e: LineError| Error::rejected(Reason::Json, e);
    let value: Value = serde_json::from_slice(line).map_err(|e| json(LineError::Json(e)))?;
    let Value::Object(mut fields) = value else {
        return Err(json(LineError::NotObject));
    };
    let type_name = match fields.remove("type") {
        Some(Value::String(s)) => s,
        _ => return Err(json(LineError::MissingType)),
    };
    let ts = fields.remove("ts").ok_or(json(LineError::MissingTs))?;
    let ts_us = parse_timestamp_us(&ts).ok_or_else(|| json(LineError::BadTs(describe(&ts))))?;
    let event_id = match fields.remove("event_id") {
        None => None,
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_EVENT_ID_BYTES => Some(id),
        Some(other) => return Err(json(LineError::BadEventId(describe(&other)))),
    };
    Ok(EventLine {
        type_name,
        ts_us,
        event_id,
        fields,
    })
}

/// The `event_id` of a stored event line, if it has one: what spool recovery needs,
/// without parsing lines that cannot hold one.
pub fn event_id_of(line: &[u8]) -> Option<String> {
    if !line.windows(10).any(|w| w == b"\"event_id\"") {
        return None;
    }
    parse_event_line(line, usize::MAX).ok()?.event_id
}

/// A timestamp as µs since the epoch: an RFC 3339 string or integer epoch milliseconds.
pub fn parse_timestamp_us(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64()?.checked_mul(1000),
        Value::String(s) => parse_rfc3339_us(s),
        _ => None,
    }
}

/// An RFC 3339 timestamp as µs since the epoch.
pub fn parse_rfc3339_us(s: &str) -> Option<i64> {
    let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(dt.unix_timestamp_nanos() / 1000).ok()
}

/// A short description of a JSON value for error messages (never the whole value).
pub(crate) fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".into(),
        Value::Bool(b) => return format!("bool {b}"),
        Value::Number(n) => return format!("number {n}"),
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let mut text = value.to_string();
    if text.len() > 40 {
        let cut = (0..=40)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    format!("{kind} {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_epoch_ms() {
        let a =
            parse_event_line(br#"{"type":"T","ts":"1970-01-01T00:00:01.5Z","x":1}"#, 100).unwrap();
        assert_eq!(a.ts_us, 1_500_000);
        assert_eq!(a.type_name, "T");
        assert_eq!(a.fields.len(), 1);
        let b = parse_event_line(br#"{"type":"T","ts":1500}"#, 100).unwrap();
        assert_eq!(b.ts_us, 1_500_000);
        assert_eq!(b.event_id, None);
    }

    #[test]
    fn event_ids_are_envelope_keys_and_checked() {
        let line = br#"{"type":"T","ts":1,"event_id":"e-1","x":1}"#;
        let e = parse_event_line(line, 100).unwrap();
        assert_eq!(e.event_id.as_deref(), Some("e-1"));
        assert!(!e.fields.contains_key("event_id"));
        assert_eq!(event_id_of(line).as_deref(), Some("e-1"));
        assert_eq!(event_id_of(br#"{"type":"T","ts":1}"#), None);
        let long = format!("\"{}\"", "x".repeat(129));
        for bad in ["\"\"", "7", long.as_str()] {
            let line = format!(r#"{{"type":"T","ts":1,"event_id":{bad}}}"#);
            let err = parse_event_line(line.as_bytes(), 1000).unwrap_err();
            assert!(err.to_string().contains("`event_id` is"), "{err}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases: [(&[u8], &str); 5] = [
            (b"{not json", "not valid JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"ts":1}"#, "missing `type`"),
            (br#"{"type":"T"}"#, "missing `ts`"),
            (br#"{"type":"T","ts":true}"#, "`ts` is bool true"),
        ];
        for (line, want) in cases {
            let err = parse_event_line(line, 100).unwrap_err();
            assert_eq!(err.reason_code(), "json");
            assert!(err.to_string().contains(want), "{err} lacks {want}");
        }
        let err = parse_event_line(&[b' '; 101], 100).unwrap_err();
        assert_eq!(err.reason_code(), "too_large");
    }
}
