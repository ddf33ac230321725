//! How a tailed line becomes an event line (`docs/wire-format.md` §4).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::tailer::{LineKind, TailLine};
use crate::refusal::LineRefusal;
use crate::socket::check_line;
use crate::writer::Incoming;
use evd_schemas::Registry;
use evd_schemas::error::Reason;
use evd_schemas::registry::{EnvelopeKeys, TailEnvelope};

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

/// The event `line` becomes, checked against `registry`: what the agent spools for a
/// tailed line. A JSON line that is certainly valid is read once, its event spliced
/// from its bytes; any other line takes [`event_body`] and the full check, which give
/// the same event (and the refusal's reason).
pub fn tail_event(
    line: &TailLine,
    event_type: &str,
    format: LineFormat,
    now_ms: i64,
    registry: &Registry,
) -> Result<Incoming, LineRefusal> {
    let event_id = line.end.event_id();
    let envelope = TailEnvelope {
        event_id: &event_id,
        event_type,
        now_ms,
    };
    if format == LineFormat::Json
        && let Some(incoming) = checked_json(&line.bytes, envelope, registry)
    {
        return Ok(incoming);
    }
    body_with(line, format, envelope).and_then(|body| check_line(registry, body, usize::MAX))
}

/// A valid JSON line's event in one pass; `None` when it needs the general path.
fn checked_json(bytes: &[u8], envelope: TailEnvelope<'_>, registry: &Registry) -> Option<Incoming> {
    std::str::from_utf8(bytes).ok()?;
    let (keys, accepted) = registry.check_with_envelope(bytes, envelope)?;
    Some(Incoming {
        event_type: accepted.ty.name.clone(),
        event_id: accepted.event_id,
        body: splice(bytes, keys, envelope)?,
    })
}

/// The event line for `line`, carrying its position as `event_id` (a JSON line's own
/// `event_id`, if any, is replaced: in a file, the position is the identity).
pub fn event_body(
    line: &TailLine,
    event_type: &str,
    format: LineFormat,
    now_ms: i64,
) -> Result<Vec<u8>, LineRefusal> {
    let event_id = line.end.event_id();
    let envelope = TailEnvelope {
        event_id: &event_id,
        event_type,
        now_ms,
    };
    body_with(line, format, envelope)
}

/// [`event_body`] with the envelope already made.
fn body_with(
    line: &TailLine,
    format: LineFormat,
    envelope: TailEnvelope<'_>,
) -> Result<Vec<u8>, LineRefusal> {
    match format {
        LineFormat::Text => Ok(text_event(
            &line.bytes,
            &line.path,
            line.kind == LineKind::Partial,
            envelope,
        )),
        LineFormat::Json => match spliced(&line.bytes, envelope) {
            Some(body) => Ok(body),
            None => rebuilt(&line.bytes, envelope),
        },
    }
}

/// A text line's event, written directly: the bytes `serde_json` gives the same object
/// (its keys sorted, as its map sorts them).
fn text_event(bytes: &[u8], path: &Path, partial: bool, envelope: TailEnvelope<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 160);
    out.push(b'{');
    let mut first = true;
    put_entry(&mut out, &mut first, "event_id", &envelope.event_id);
    put_entry(&mut out, &mut first, "file", &path.to_string_lossy());
    put_entry(
        &mut out,
        &mut first,
        "line",
        &String::from_utf8_lossy(bytes),
    );
    if partial {
        put_entry(&mut out, &mut first, "partial", &true);
    }
    put_entry(&mut out, &mut first, "ts", &envelope.now_ms);
    put_entry(&mut out, &mut first, "type", &envelope.event_type);
    out.push(b'}');
    out
}

/// A JSON line's event, through a DOM: the general path.
fn rebuilt(bytes: &[u8], envelope: TailEnvelope<'_>) -> Result<Vec<u8>, LineRefusal> {
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
    object
        .entry("type")
        .or_insert_with(|| envelope.event_type.into());
    object.entry("ts").or_insert_with(|| envelope.now_ms.into());
    object.insert("event_id".into(), envelope.event_id.into());
    Ok(serde_json::to_vec(&object).expect("a JSON map always serialises"))
}

/// A JSON line's event without rebuilding it: the line's own bytes with `event_id` (and
/// a missing `type` or `ts`) added before its closing brace. `None` when the line needs
/// the general path (not one object, a repeated key, or its own `event_id` to replace);
/// the result holds the same keys and values as that path's.
fn spliced(bytes: &[u8], envelope: TailEnvelope<'_>) -> Option<Vec<u8>> {
    splice(
        bytes,
        evd_schemas::registry::envelope_keys(bytes)?,
        envelope,
    )
}

/// `bytes` (one JSON object whose top-level keys are `keys`) with `envelope` added
/// before its closing brace; `None` if the object has its own `event_id`.
fn splice(bytes: &[u8], keys: EnvelopeKeys, envelope: TailEnvelope<'_>) -> Option<Vec<u8>> {
    if keys.has_event_id {
        return None;
    }
    let end = bytes.iter().rposition(|&b| b == b'}')?;
    let mut out = Vec::with_capacity(end + 96);
    out.extend_from_slice(&bytes[..end]);
    let mut first = keys.count == 0;
    put_entry(&mut out, &mut first, "event_id", &envelope.event_id);
    if !keys.has_type {
        put_entry(&mut out, &mut first, "type", &envelope.event_type);
    }
    if !keys.has_ts {
        put_entry(&mut out, &mut first, "ts", &envelope.now_ms);
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
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use evd_schemas::registry::TailEnvelope;
    use serde_json::Value;

    use super::{checked_json, rebuilt, spliced, text_event};
    use crate::socket::check_line;

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
            let envelope = TailEnvelope {
                event_id: "tail:1:2:3",
                event_type: "PageView",
                now_ms: 7,
            };
            let fast = spliced(line.as_bytes(), envelope);
            assert_eq!(fast.is_some(), takes, "{line}");
            let slow = rebuilt(line.as_bytes(), envelope);
            if let Some(fast) = fast {
                let fast: Value = serde_json::from_slice(&fast).expect("spliced is JSON");
                let slow: Value =
                    serde_json::from_slice(&slow.expect("DOM path takes it")).unwrap();
                assert_eq!(fast, slow, "{line}");
            }
        }
    }

    /// A line checked in one pass becomes the event the general path builds and
    /// accepts; a line the general path refuses is never taken by the one pass.
    #[test]
    fn the_one_pass_event_is_the_general_paths_event() {
        let text = "name = \"PageView\"\nversion = 1\nowner = \"web\"\ntier = \"normal\"\n\
                    [[fields]]\nname = \"url\"\ntype = \"string\"\nrequired = true\n";
        let registry = evd_schemas::Registry::from_sources([("pv.toml", text)]).unwrap();
        let lines = [
            (r#"{"type":"PageView","ts":5,"url":"/a"}"#, true),
            (r#"{"url":"/a"}"#, true),
            (r#"  { "url" : "/a\u0022" }  "#, true),
            (r#"{"ts":"2026-01-01T00:00:00Z","url":"/b"}"#, true),
            (r#"{"ts":"yesterday","url":"/b"}"#, false),
            (r#"{}"#, false),
            (r#"{"url":5}"#, false),
            (r#"{"url":"/a","colour":"red"}"#, false),
            (r#"{"event_id":"mine","url":"/a"}"#, false),
            (r#"{"url":"/a","url":"/b"}"#, false),
            (r#"{"type":"Other","url":"/a"}"#, false),
            (r#"{"url":"/a"} {"#, false),
        ];
        for (line, fast) in lines {
            let id = "tail:1.2.3.4:5";
            let envelope = TailEnvelope {
                event_id: id,
                event_type: "PageView",
                now_ms: 7,
            };
            let one_pass = checked_json(line.as_bytes(), envelope, &registry);
            assert_eq!(one_pass.is_some(), fast, "{line}");
            let general = spliced(line.as_bytes(), envelope)
                .map_or_else(|| rebuilt(line.as_bytes(), envelope), Ok)
                .and_then(|body| check_line(&registry, body, usize::MAX));
            if let Some(got) = one_pass {
                let want = general.expect("the general path accepts it");
                assert_eq!(
                    (&got.event_type, &got.event_id, &got.body),
                    (&want.event_type, &want.event_id, &want.body),
                    "{line}"
                );
            }
        }
    }

    /// A text line's event is the object `serde_json` writes for the same map,
    /// byte for byte.
    #[test]
    fn text_events_are_what_serde_json_writes() {
        let cases: [(&[u8], &[u8], bool); 4] = [
            (b"plain line", b"/var/log/app.log", false),
            (
                b"quote \" and \\ and \t tab \x01",
                b"/var/log/a b.log",
                true,
            ),
            (b"not utf-8: \xff\xfe end", b"/var/log/\xffodd.log", false),
            (b"", b"/x", true),
        ];
        for (bytes, path, partial) in cases {
            let path = Path::new(std::ffi::OsStr::from_bytes(path));
            let envelope = TailEnvelope {
                event_id: "tail:1.2.3.4:5",
                event_type: "LogLine",
                now_ms: 7,
            };
            let mut want = serde_json::json!({
                "type": "LogLine",
                "line": String::from_utf8_lossy(bytes),
                "file": path.display().to_string(),
                "ts": 7,
                "event_id": "tail:1.2.3.4:5",
            });
            if partial {
                want["partial"] = true.into();
            }
            let got = text_event(bytes, path, partial, envelope);
            assert_eq!(
                String::from_utf8(got).unwrap(),
                serde_json::to_string(&want).unwrap()
            );
        }
    }
}
