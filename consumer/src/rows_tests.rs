use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};

use super::*;
use crate::test_batches::{HOUR, opened, page_view, registry};

fn one(a: &mut Assembler) -> RecordBatch {
    let mut finished = a.take();
    assert_eq!(finished.len(), 1);
    finished.remove(0).batch
}

#[test]
fn fields_land_in_typed_columns_with_the_batch_metadata() {
    let mut a = Assembler::default();
    let full = r#"{"type":"PageView","ts":1700000000000,"user_id":"u1","url":"/x","n":-5,"extra":{"k":[1,2]}}"#;
    let sparse = r#"{"type":"PageView","ts":1700000000001,"user_id":"u2","url":null}"#;
    let pv = opened("host-a", 42, "PageView", HOUR, &[full, sparse]);
    let added = a.add(&registry(), &pv, HOUR).unwrap();
    assert_eq!(
        added,
        Added {
            rows: 2,
            rejected: vec![]
        }
    );
    let batch = one(&mut a);
    let ty = registry().get("PageView").unwrap().clone();
    assert_eq!(batch.schema().as_ref(), &ty.arrow_schema());
    let col = |name: &str| batch.column_by_name(name).unwrap().clone();
    assert_eq!(col("agent_id").as_string::<i32>().value(1), "host-a");
    assert_eq!(
        col("spool_id").as_string::<i32>().value(0),
        pv.header.meta.spool_id.to_string()
    );
    assert_eq!(
        col("batch_seq").as_primitive::<Int64Type>().values(),
        &[42, 42]
    );
    assert_eq!(
        col("event_seq").as_primitive::<Int64Type>().values(),
        &[1, 2]
    );
    let received = col("received_at")
        .as_primitive::<TimestampMicrosecondType>()
        .value(0);
    assert_eq!(received, HOUR.start_ms() * 1000);
    assert_eq!(col("user_id").as_string::<i32>().value(1), "u2");
    let url = col("url");
    assert_eq!(url.as_string::<i32>().value(0), "/x");
    assert!(url.is_null(1), "an explicit null is null");
    let n = col("n");
    assert_eq!(n.as_primitive::<Int64Type>().value(0), -5);
    assert!(n.is_null(1), "a missing optional field is null");
    let extra = col("extra");
    let json: serde_json::Value = serde_json::from_str(extra.as_string::<i32>().value(0)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"k": [1, 2]}),
        "a json field keeps its value as text"
    );
}

#[test]
fn a_bad_event_is_returned_and_its_neighbours_are_kept() {
    let mut a = Assembler::default();
    let missing = r#"{"type":"PageView","ts":1700000000000}"#;
    let wrong_type = r#"{"type":"PageView","ts":1700000000000,"user_id":7}"#;
    let other = r#"{"type":"Click","ts":1700000000000,"user_id":"u"}"#;
    let pv = opened(
        "a",
        3,
        "PageView",
        HOUR,
        &[missing, &page_view("ok"), wrong_type, "not json", other],
    );
    let added = a.add(&registry(), &pv, HOUR).unwrap();
    assert_eq!(added.rows, 1);
    let seqs: Vec<u64> = added.rejected.iter().map(|r| r.event_seq).collect();
    assert_eq!(seqs, vec![1, 3, 4, 5]);
    let r = &added.rejected[3];
    assert_eq!((r.batch_seq, r.origin.agent_id.as_str()), (3, "a"));
    assert!(
        r.reason.contains("inside a \"PageView\" batch"),
        "{}",
        r.reason
    );
    assert_eq!(r.body, other.as_bytes());
    assert!(
        added.rejected[0].reason.contains("user_id"),
        "{}",
        added.rejected[0].reason
    );
    assert_eq!(one(&mut a).num_rows(), 1);
}

#[test]
fn a_type_this_registry_lacks_is_refused_whole() {
    let mut a = Assembler::default();
    let b = opened("a", 1, "Signup", HOUR, &[r#"{"type":"Signup","ts":1}"#]);
    let why = a.add(&registry(), &b, HOUR).unwrap_err();
    assert!(why.contains("Signup"), "{why}");
    assert_eq!(a.size(), (0, 0));
    assert!(a.take().is_empty());
}

#[test]
fn rows_are_grouped_by_type_and_hour_and_sized() {
    let mut a = Assembler::default();
    let (pv1, pv2) = (page_view("u1"), page_view("u2"));
    let click = r#"{"type":"Click","ts":1700000000000,"user_id":"u"}"#;
    a.add(
        &registry(),
        &opened("a", 1, "PageView", HOUR, &[&pv1]),
        HOUR,
    )
    .unwrap();
    // Late data may be redirected to another hour than the batch's own.
    a.add(
        &registry(),
        &opened("a", 2, "PageView", HOUR, &[&pv2]),
        HOUR.next(),
    )
    .unwrap();
    a.add(&registry(), &opened("b", 1, "Click", HOUR, &[click]), HOUR)
        .unwrap();
    // A batch whose every event is rejected leaves no empty file behind.
    a.add(
        &registry(),
        &opened("b", 2, "Click", HOUR.next(), &["{}"]),
        HOUR.next(),
    )
    .unwrap();
    assert_eq!(a.size(), (3, pv1.len() + pv2.len() + click.len()));
    let keys: Vec<(String, Hour, usize)> = a
        .take()
        .into_iter()
        .map(|f| (f.event_type, f.hour, f.batch.num_rows()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("Click".into(), HOUR, 1),
            ("PageView".into(), HOUR, 1),
            ("PageView".into(), HOUR.next(), 1),
        ]
    );
    assert_eq!(a.size(), (0, 0), "take empties the assembler");
    a.add(
        &registry(),
        &opened("a", 3, "PageView", HOUR, &[&pv1]),
        HOUR,
    )
    .unwrap();
    a.clear();
    assert!(a.take().is_empty());
}

/// The one-pass read and the DOM path build the same rows and refuse the same events
/// for the same reasons, across the kinds of lines the one pass hands over.
#[test]
fn one_pass_rows_equal_dom_rows() {
    let lines = [
        r#"{"type":"PageView","ts":1700000000000,"user_id":"u1","url":"/x","n":-5}"#,
        r#"{"type":"PageView","ts":"2026-01-01T10:00:00.25+02:00","user_id":"u\"2\u00e9","url":null}"#,
        r#"{"user_id":"u3","n":9223372036854775807,"ts":1,"type":"PageView","event_id":"e"}"#,
        r#"{"type":"PageView","ts":1,"user_id":"u4","extra":{"b":1,"a":[true,null]}}"#,
        r#"{"type":"PageView","ts":1,"user_id":"u5","user_id":"u5b"}"#,
        r#"{"type":"PageView","ts":1,"user_id":"u6","n":1.5}"#,
        r#"{"type":"PageView","ts":1,"user_id":"u7","n":18446744073709551615}"#,
        r#"{"type":"Click","ts":1,"user_id":"u8"}"#,
        r#"{"type":"PageView","ts":1}"#,
        r#"{"type":"PageView","ts":1,"user_id":"u9","colour":"red"}"#,
        r#"not json"#,
        r#"{"type":"PageView","ts":1,"user_id":"u10","extra":"plain"}"#,
    ];
    let pv = opened("host-a", 7, "PageView", HOUR, &lines);
    let mut fast = Assembler::default();
    let mut slow = Assembler {
        dom_only: true,
        ..Assembler::default()
    };
    let fast_added = fast.add(&registry(), &pv, HOUR).unwrap();
    let slow_added = slow.add(&registry(), &pv, HOUR).unwrap();
    assert_eq!(fast_added, slow_added);
    assert_eq!(fast_added.rows, 6, "{:?}", fast_added.rejected);
    assert_eq!(one(&mut fast), one(&mut slow));
}
