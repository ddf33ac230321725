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
        LineFormat::Json => match serde_json::from_slice::<Value>(&line.bytes) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(LineRefusal::new(Reason::Json, "not a JSON object")),
            Err(e) => {
                return Err(LineRefusal::new(
                    Reason::Json,
                    format!("not valid JSON: {e}"),
                ));
            }
        },
    };
    object.entry("type").or_insert_with(|| event_type.into());
    object.entry("ts").or_insert_with(|| now_ms.into());
    object.insert("event_id".into(), line.end.event_id().into());
    Ok(serde_json::to_vec(&object).expect("a JSON map always serialises"))
}
