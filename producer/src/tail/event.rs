//! How a tailed line becomes an event line (`docs/wire-format.md` §4).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::tailer::{LineKind, TailLine};
use crate::refusal::LineRefusal;
use evd_schemas::error::Reason;

/// How a source's lines become events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// Each line is a JSON event object. A missing `type` is the source's type, a
    /// missing `ts` the time the line was read.
    Json,
    /// Each line is wrapped as `{"type", "ts", "line", "file"}` (and `"partial": true`
    /// for a last line flushed without its newline); the type must define `line` and
    /// `file` as strings (and `partial` as a bool if partial lines are flushed).
    /// Bytes that are not UTF-8 become U+FFFD.
    Text,
}

/// The event line for `line`, carrying its position as `event_id` (a JSON line's own
/// `event_id`, if any, is replaced: in a file, the position is the identity).
pub fn event_body(
    line: &TailLine,
    event_type: &str,
    format: LineFormat,
    now_ms: i64,
) -> Result<Vec<u8>, LineRefusal> {
    let mut object = match format {
        LineFormat::Text => {
            let mut m = Map::new();
            m.insert("type".into(), event_type.into());
            m.insert("line".into(), String::from_utf8_lossy(&line.bytes).into());
            m.insert("file".into(), line.path.display().to_string().into());
            if line.kind == LineKind::Partial {
                m.insert("partial".into(), true.into());
            }
            m
        }
        LineFormat::Json => {
            let event_id = line.end.event_id();
            return match spliced(&line.bytes, event_type, now_ms, &event_id) {
                Some(body) => Ok(body),
                None => rebuilt(&line.bytes, event_type, now_ms, &event_id),
            };
        }
    };
    object.insert("ts".into(), now_ms.into());
    object.insert("event_id".into(), line.end.event_id().into());
    Ok(serde_json::to_vec(&object).expect("a JSON map always serialises"))
}

/// A JSON line's event, through a DOM: the general path.
fn rebuilt(
    bytes: &[u8],
    event_type: &str,
    now_ms: i64,
    event_id: &str,
) -> Result<Vec<u8>, LineRefusal> {
    let mut object = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(LineRefusal::new(Reason::Json, "not a JSON object")),
        Err(e) => {
            return Err(LineRefusal::new(
                Reason::Json,
                format!("not valid JSON: {e}"),
            ));
        }
    };
    object.entry("type").or_insert_with(|| event_type.into());
    object.entry("ts").or_insert_with(|| now_ms.into());
    object.insert("event_id".into(), event_id.into());
    Ok(serde_json::to_vec(&object).expect("a JSON map always serialises"))
}

/// A JSON line's event without rebuilding it: the line's own bytes with `event_id` (and
/// a missing `type` or `ts`) added before its closing brace. `None` when the line needs
/// the general path (not one object, a repeated key, or its own `event_id` to replace);
/// the result holds the same keys and values as that path's.
fn spliced(bytes: &[u8], event_type: &str, now_ms: i64, event_id: &str) -> Option<Vec<u8>> {
    let keys = evd_schemas::registry::envelope_keys(bytes)?;
    if keys.has_event_id {
        return None;
    }
    let end = bytes.iter().rposition(|&b| b == b'}')?;
    let mut out = Vec::with_capacity(end + 96);
    out.extend_from_slice(&bytes[..end]);
    let mut first = keys.count == 0;
    put_entry(&mut out, &mut first, "event_id", &event_id);
    if !keys.has_type {
        put_entry(&mut out, &mut first, "type", &event_type);
    }
    if !keys.has_ts {
        put_entry(&mut out, &mut first, "ts", &now_ms);
    }
    out.push(b'}');
    Some(out)
}

/// Appends `"key":value` to an object being written, after a comma unless `first`.
fn put_entry(out: &mut Vec<u8>, first: &mut bool, key: &str, value: &impl serde::Serialize) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    serde_json::to_writer(&mut *out, key).expect("a string serialises");
    out.push(b':');
    serde_json::to_writer(&mut *out, value).expect("a plain value serialises");
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::{rebuilt, spliced};

    /// The spliced event holds exactly what the DOM path builds, for every line it
    /// takes; the lines it leaves to the DOM path are the ones that need it.
    #[test]
    fn splicing_builds_what_the_dom_path_builds() {
        let lines: [(&str, bool); 12] = [
            (r#"{"type":"PageView","ts":5,"url":"/a"}"#, true),
            (r#"{"url":"/a"}"#, true),
            (r#"{}"#, true),
            (r#"  { "url" : "/a\u0022" , "n":[1,{"}":2}] }  "#, true),
            (r#"{"ts":"2026-01-01T00:00:00Z"}"#, true),
            (r#"{"event_id":"mine","url":"/a"}"#, false),
            (r#"{"url":"/a","url":"/b"}"#, false),
            (r#"[1,2]"#, false),
            (r#"{"url":"/a"} {"#, false),
            (r#"{"url":"/a""#, false),
            (r#"not json"#, false),
            (r#"{"type":"Other"}"#, true),
        ];
        for (line, takes) in lines {
            let fast = spliced(line.as_bytes(), "PageView", 7, "tail:1:2:3");
            assert_eq!(fast.is_some(), takes, "{line}");
            let slow = rebuilt(line.as_bytes(), "PageView", 7, "tail:1:2:3");
            if let Some(fast) = fast {
                let fast: Value = serde_json::from_slice(&fast).expect("spliced is JSON");
                let slow: Value =
                    serde_json::from_slice(&slow.expect("DOM path takes it")).unwrap();
                assert_eq!(fast, slow, "{line}");
            }
        }
    }
}
