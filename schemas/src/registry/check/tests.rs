//! The one-pass check against the DOM path it stands in for.

use proptest::prelude::*;

use crate::event::{parse_event_line, parse_timestamp_us};
use crate::registry::FieldValue;
use crate::registry::{Registry, TailEnvelope};

fn registry() -> Registry {
    let text = r#"name = "Play"
version = 2
owner = "music"
tier = "normal"
[[fields]]
name = "track"
type = "string"
required = true
[[fields]]
name = "ms_played"
type = "int64"
[[fields]]
name = "ratio"
type = "float64"
[[fields]]
name = "skipped"
type = "bool"
[[fields]]
name = "ended_at"
type = "timestamp"
[[fields]]
name = "extra"
type = "json"
"#;
    Registry::from_sources([("play.toml", text)]).unwrap()
}

/// The DOM path's verdict: (type, event_id, ts) or the error text.
fn dom(reg: &Registry, line: &[u8]) -> Result<(String, Option<String>, i64), String> {
    let parsed = parse_event_line(line, 1 << 20).map_err(|e| e.to_string())?;
    let ty = reg.validate(&parsed).map_err(|e| e.to_string())?;
    Ok((ty.name.clone(), parsed.event_id, parsed.ts_us))
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("\"t\"".to_string()),
        Just("\"tr\\u0061ck\\n\"".to_string()),
        Just("\"2026-01-01T00:00:00Z\"".to_string()),
        Just("\"2026-13-01T00:00:00Z\"".to_string()),
        Just("1.5".to_string()),
        Just("-0".to_string()),
        Just("1e3".to_string()),
        Just("18446744073709551615".to_string()),
        Just("9223372036854775807".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("[1,{\"a\":[]}]".to_string()),
        Just("{\"x\":null}".to_string()),
        Just("\"\"".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("type"),
        Just("ts"),
        Just("event_id"),
        Just("track"),
        Just("tr\\u0061ck"),
        Just("ms_played"),
        Just("ratio"),
        Just("skipped"),
        Just("ended_at"),
        Just("extra"),
        Just("colour"),
    ]
    .prop_map(str::to_string)
}

/// Lines near the valid ones: mostly a valid Play envelope plus random fields, some
/// broken, so that both verdicts are common.
fn line() -> impl Strategy<Value = String> {
    let ty = prop_oneof![
        8 => Just(Some("\"Play\"")),
        1 => Just(Some("\"Nope\"")),
        1 => Just(Some("3")),
        1 => Just(None),
    ];
    let ts = prop_oneof![
        4 => Just(Some("1".to_string())),
        4 => Just(Some("\"2026-01-01T00:00:00.5+01:00\"".to_string())),
        2 => value().prop_map(Some),
        1 => Just(None),
    ];
    let track = prop_oneof![4 => Just(true), 1 => Just(false)];
    (
        ty,
        ts,
        track,
        prop::collection::vec((key(), value()), 0..5),
        0..6u8,
    )
        .prop_map(|(ty, ts, track, fields, damage)| {
            let mut parts = Vec::new();
            if let Some(ty) = ty {
                parts.push(format!("\"type\":{ty}"));
            }
            if let Some(ts) = ts {
                parts.push(format!("\"ts\":{ts}"));
            }
            if track {
                parts.push("\"track\":\"t\"".to_string());
            }
            for (k, v) in fields {
                parts.push(format!("\"{k}\":{v}"));
            }
            let mut line = format!("{{{}}}", parts.join(","));
            match damage {
                1 => line.push_str(" x"),
                2 => {
                    line.pop();
                }
                _ => {}
            }
            line
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn one_pass_agrees_with_the_dom_path(line in line()) {
        let reg = registry();
        let want = dom(&reg, line.as_bytes());
        let got = reg
            .check_line(line.as_bytes(), 1 << 20)
            .map(|a| (a.ty.name.clone(), a.event_id, a.ts_us))
            .map_err(|e| e.to_string());
        prop_assert_eq!(&got, &want);
        // The fast path is taken for every valid line without a repeated key.
        let repeated = {
            let keys: Vec<&str> = line.split(['{', ',']).filter_map(|p| p.split(':').next()).collect();
            (1..keys.len()).any(|i| keys[..i].contains(&keys[i])) || line.contains("\\u0061")
        };
        if want.is_ok() && !repeated {
            prop_assert!(reg.check_one_pass(line.as_bytes()).is_some(), "{line} fell back");
            // Every value read in one pass is the DOM's value, read as its field's type.
            let parsed = parse_event_line(line.as_bytes(), 1 << 20).unwrap();
            let ty = reg.get("Play").unwrap();
            let view = ty.read_line(line.as_bytes()).expect("valid, so read");
            prop_assert_eq!(view.ts_us, parsed.ts_us);
            for (spec, value) in ty.fields.iter().zip(&view.values) {
                let dom = parsed.fields.get(&spec.name).filter(|v| !v.is_null());
                let same = match (value, dom) {
                    (None, None) => true,
                    (Some(FieldValue::Str(s)), Some(v)) => v.as_str() == Some(s.as_ref()),
                    (Some(FieldValue::Int(n)), Some(v)) => v.as_i64() == Some(*n),
                    (Some(FieldValue::Float(x)), Some(v)) => v.as_f64() == Some(*x),
                    (Some(FieldValue::Bool(b)), Some(v)) => v.as_bool() == Some(*b),
                    (Some(FieldValue::TimestampUs(t)), Some(v)) => parse_timestamp_us(v) == Some(*t),
                    (Some(FieldValue::Json), Some(_)) => true,
                    _ => false,
                };
                prop_assert!(same, "{}: {:?} vs {:?} in {}", spec.name, value, dom, line);
            }
        }
    }
}

/// The event a tailed line becomes (the general path's way): the line's object with
/// `event_id` set and a missing `type` or `ts` filled in; `None` if it is not an object.
fn enveloped(line: &str, envelope: TailEnvelope<'_>) -> Option<String> {
    let serde_json::Value::Object(mut m) = serde_json::from_str(line).ok()? else {
        return None;
    };
    m.entry("type").or_insert(envelope.event_type.into());
    m.entry("ts").or_insert(envelope.now_ms.into());
    m.insert("event_id".into(), envelope.event_id.into());
    Some(serde_json::Value::Object(m).to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Checking a tailed line with its envelope in one pass gives the verdict of
    /// checking the event built from it, and is taken for every such valid event.
    #[test]
    fn envelope_check_agrees_with_checking_the_built_event(
        line in line(),
        default_type in prop_oneof![Just("Play"), Just("Nope")],
    ) {
        let reg = registry();
        let envelope = TailEnvelope { event_id: "tail:1.2.3.4:5", event_type: default_type, now_ms: 7 };
        let got = reg.check_with_envelope(line.as_bytes(), envelope);
        let built = enveloped(&line, envelope);
        let want = built.as_deref().map(|b| dom(&reg, b.as_bytes()));
        if let Some((keys, accepted)) = &got {
            prop_assert!(!keys.has_event_id);
            let want = want.clone().expect("an object").expect("valid when built");
            prop_assert_eq!((accepted.ty.name.clone(), accepted.event_id.clone(), accepted.ts_us), want);
        }
        let own_id = line.contains("\"event_id\"");
        let repeated = {
            let keys: Vec<&str> = line.split(['{', ',']).filter_map(|p| p.split(':').next()).collect();
            (1..keys.len()).any(|i| keys[..i].contains(&keys[i])) || line.contains("\\u0061")
        };
        if matches!(want, Some(Ok(_))) && !own_id && !repeated {
            prop_assert!(got.is_some(), "{line} fell back");
        }
    }
}

#[test]
fn typical_lines_take_the_one_pass_path() {
    let reg = registry();
    let line = br#"{"type":"Play","ts":"2026-01-01T00:00:00Z","event_id":"e1","track":"t","ms_played":3,"ratio":0.5,"skipped":false,"ended_at":1,"extra":{"a":[1,2]}}"#;
    let a = reg.check_one_pass(line).expect("one pass");
    assert_eq!(a.event_id.as_deref(), Some("e1"));
    assert_eq!(a.ts_us, 1_767_225_600_000_000);
    assert!(
        reg.check_one_pass(br#"{"type":"Play","ts":1,"track":"a","track":"b"}"#)
            .is_none()
    );
    assert!(
        reg.check_line(br#"{"type":"Play","ts":1,"track":"a","track":"b"}"#, 100)
            .is_ok()
    );
}
