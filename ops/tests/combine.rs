//! The closed-hours combiner on a local store: an hour's files become one file with
//! every row in the marker's order, written whole or not at all, never twice; files
//! that cannot go together leave nothing behind. (`tests/tests/closed_hours.rs` runs
//! it in the auditor, behind real consumers, and reads the result with DuckDB.)

mod support;

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use evd_consumer::commit::Output;
use evd_consumer::layout;
use evd_ops::audit::{CellState, MarkerFile};
use evd_ops::combine::hour::{Outcome, combine_hour, combine_hour_in_parts};
use evd_ops::combine::queue::Job;
use evd_ops::config::CombineConfig;
use evd_schemas::Hour;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const H: Hour = Hour(493_127);

fn rows(from: i64, n: i64, extra_column: bool) -> RecordBatch {
    let mut fields = vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("user", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(from..from + n)),
        Arc::new(StringArray::from_iter_values(
            (from..from + n).map(|i| format!("user-{i}-{}", i * 7919 % 104_729)),
        )),
    ];
    if extra_column {
        fields.push(Field::new("country", DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from_iter_values(
            (0..n).map(|_| "se"),
        )));
    }
    let schema = Schema::new(fields).with_metadata(type_metadata());
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

/// The schema metadata a consumer's file carries (`EventType::arrow_schema`).
fn type_metadata() -> std::collections::HashMap<String, String> {
    [("evd.event_type", "PageView"), ("evd.version", "1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Puts each file under the hour's folder and returns the job its marker would make.
async fn hour_of(output: &Output, files: Vec<Bytes>) -> Job {
    let mut listed = Vec::new();
    for (n, bytes) in files.into_iter().enumerate() {
        let path = layout::data_file("PageView", H, "c-1-000001", n);
        listed.push(MarkerFile {
            path: path.clone(),
            bytes: bytes.len() as u64,
        });
        output
            .store
            .put(&output.path(&path), bytes.into())
            .await
            .unwrap();
    }
    Job {
        event_type: "PageView".into(),
        hour: H,
        state: CellState::Complete,
        files: listed,
    }
}

fn encode(batch: &RecordBatch) -> Bytes {
    evd_consumer::parquet_out::encode(batch).unwrap()
}

/// The combined file's bytes, if it exists.
async fn combined_file(output: &Output) -> Option<Bytes> {
    let path = output.path(&layout::closed_hour_file("PageView", H));
    Some(output.store.get(&path).await.ok()?.bytes().await.unwrap())
}

/// The combined file's rows (`seq` column) and key-value metadata.
async fn combined(output: &Output) -> Option<(Vec<i64>, Vec<(String, String)>)> {
    let bytes = combined_file(output).await?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let metadata = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|kv| kv.key.starts_with("evd.closed") || kv.key == "evd.combined_files")
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect();
    let mut seqs = Vec::new();
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        seqs.extend(column.values().iter().copied());
    }
    Some((seqs, metadata))
}

#[tokio::test]
async fn every_row_once_in_the_markers_order_and_never_written_twice() {
    let dir = tempfile::tempdir().unwrap();
    let output = support::output(dir.path());
    let files = vec![
        encode(&rows(0, 30_000, false)),
        encode(&rows(30_000, 5, false)),
        encode(&rows(30_005, 0, false)),
        encode(&rows(30_005, 70_000, false)),
    ];
    let job = hour_of(&output, files).await;
    // Small parts, so the upload goes in many parts (a multipart upload).
    let outcome = combine_hour_in_parts(&output, &job, &CombineConfig::default(), 64 << 10)
        .await
        .unwrap();
    let Outcome::Written { files, rows, bytes } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((files, rows), (4, 100_005));
    let on_disk = std::fs::metadata(dir.path().join(layout::closed_hour_file("PageView", H)))
        .unwrap()
        .len();
    assert_eq!(bytes, on_disk);
    let (seqs, metadata) = combined(&output).await.unwrap();
    assert_eq!(seqs, (0..100_005).collect::<Vec<i64>>());
    assert_eq!(
        metadata,
        vec![
            (
                "evd.closed_marker".to_string(),
                layout::closed_marker("PageView", H)
            ),
            ("evd.closed_state".to_string(), "complete".to_string()),
            ("evd.combined_files".to_string(), "4".to_string()),
        ]
    );
    // The files' schema metadata (type, version) is the combined file's.
    let bytes = combined_file(&output).await.expect("the combined file");
    let schema = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .schema()
        .clone();
    for (key, value) in type_metadata() {
        assert_eq!(schema.metadata().get(&key), Some(&value), "{key}");
    }
    // A second attempt (a restart, or a second auditor) leaves the file alone.
    let again = combine_hour(&output, &job, &CombineConfig::default()).await;
    assert_eq!(again.unwrap(), Outcome::AlreadyThere);
}

/// The registry gained an optional field mid-hour: files before it lack the column.
/// The hour still combines, with the widest files' columns and nulls in older rows.
#[tokio::test]
async fn an_optional_column_added_within_the_hour_is_null_in_the_older_rows() {
    let dir = tempfile::tempdir().unwrap();
    let output = support::output(dir.path());
    let files = vec![
        encode(&rows(0, 10, false)),
        encode(&rows(10, 10, true)),
        encode(&rows(20, 5, false)),
    ];
    let job = hour_of(&output, files).await;
    let outcome = combine_hour(&output, &job, &CombineConfig::default()).await;
    assert!(
        matches!(
            outcome,
            Ok(Outcome::Written {
                files: 3,
                rows: 25,
                ..
            })
        ),
        "{outcome:?}"
    );
    let (seqs, _) = combined(&output).await.unwrap();
    assert_eq!(seqs, (0..25).collect::<Vec<i64>>());
    let bytes = combined_file(&output).await.expect("the combined file");
    let mut countries = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
    {
        let batch = batch.unwrap();
        let column = batch.column_by_name("country").expect("the added column");
        let column = column.as_any().downcast_ref::<StringArray>().unwrap();
        countries.extend(column.iter().map(|v| v.map(str::to_string)));
    }
    let mut want = vec![None; 10];
    want.extend(vec![Some("se".to_string()); 10]);
    want.extend(vec![None; 5]);
    assert_eq!(countries, want);
}

#[tokio::test]
async fn files_that_cannot_go_together_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = support::output(dir.path());
    let options = CombineConfig::default();

    // A column whose type changed: another version of the type, not combined.
    let retyped = {
        let fields = vec![
            Field::new("seq", DataType::Int64, false),
            Field::new("user", DataType::Int64, false),
        ];
        let schema = Arc::new(Schema::new(fields).with_metadata(type_metadata()));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(10..20)),
            Arc::new(Int64Array::from_iter_values(0..10)),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    };
    let job = hour_of(&output, vec![encode(&rows(0, 10, false)), encode(&retyped)]).await;
    match combine_hour_in_parts(&output, &job, &options, 1024)
        .await
        .unwrap()
    {
        Outcome::NotCombinable(why) => assert!(why.contains("another type"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(combined(&output).await.is_none());

    // The same columns, but another version of the type.
    let version_2 = {
        let batch = rows(10, 10, false);
        let mut metadata = type_metadata();
        metadata.insert("evd.version".into(), "2".into());
        let schema = Schema::new(batch.schema().fields().clone()).with_metadata(metadata);
        RecordBatch::try_new(Arc::new(schema), batch.columns().to_vec()).unwrap()
    };
    let job = hour_of(
        &output,
        vec![encode(&rows(0, 10, false)), encode(&version_2)],
    )
    .await;
    match combine_hour(&output, &job, &options).await.unwrap() {
        Outcome::NotCombinable(why) => assert!(why.contains("c-1-000001-1"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(combined(&output).await.is_none());

    let job = hour_of(
        &output,
        vec![encode(&rows(0, 10, false)), Bytes::from_static(b"PAR1 cut")],
    )
    .await;
    match combine_hour(&output, &job, &options).await.unwrap() {
        Outcome::NotCombinable(why) => assert!(why.contains("c-1-000001-1"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(combined(&output).await.is_none());

    // An object whose last bytes claim a footer larger than any consumer's file has:
    // refused before the footer is read.
    let mut stray = vec![0u8; (16 << 20) + 100];
    let claimed = (16u32 << 20) + 1;
    let end = stray.len();
    stray[end - 8..end - 4].copy_from_slice(&claimed.to_le_bytes());
    stray[end - 4..].copy_from_slice(b"PAR1");
    let job = hour_of(
        &output,
        vec![encode(&rows(0, 10, false)), Bytes::from(stray)],
    )
    .await;
    match combine_hour(&output, &job, &options).await.unwrap() {
        Outcome::NotCombinable(why) => assert!(why.contains("a footer of"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(combined(&output).await.is_none());

    // A listed file the store does not have: a store error, retried later.
    let mut job = hour_of(&output, vec![encode(&rows(0, 10, false))]).await;
    job.files.push(MarkerFile {
        path: layout::data_file("PageView", H, "gone", 0),
        bytes: 1,
    });
    assert!(combine_hour(&output, &job, &options).await.is_err());
    assert!(combined(&output).await.is_none());

    // A file over the size limit (a foreign object, say) is not read.
    let job = hour_of(&output, vec![encode(&rows(0, 1_000, false))]).await;
    let small = CombineConfig {
        max_file_bytes: 100,
        ..CombineConfig::default()
    };
    match combine_hour(&output, &job, &small).await.unwrap() {
        Outcome::NotCombinable(why) => assert!(why.contains("max_file_bytes"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(combined(&output).await.is_none());

    let empty = Job {
        files: Vec::new(),
        ..job
    };
    let outcome = combine_hour(&output, &empty, &options).await.unwrap();
    assert_eq!(outcome, Outcome::Empty);
    assert!(combined(&output).await.is_none());
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.contains("closed-hours"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            found.extend(walk(&entry.path()));
        } else {
            found.push(entry.path().display().to_string());
        }
    }
    found
}
