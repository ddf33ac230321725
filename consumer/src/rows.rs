//! Rows: turns opened batches into Arrow record batches per (event type, hour). Pure:
//! no I/O. Events that fail this consumer's registry are returned for quarantine.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use evd_schemas::event::{EventLine, parse_event_line, parse_timestamp_us};
use evd_schemas::registry::{FieldValue, LineView};
use evd_schemas::wire::batch::OpenedBatch;
use evd_schemas::{EventType, FieldType, Hour, Origin, Registry};
use serde_json::Value;

/// An event that is authentic but fails validation here: kept raw with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEvent {
    pub origin: Origin,
    pub batch_seq: u64,
    pub event_type: String,
    pub bucket_hour: Hour,
    pub event_seq: u64,
    pub received_at_us: i64,
    pub reason: String,
    pub body: Vec<u8>,
}

enum Column {
    Str(StringBuilder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(ty: FieldType) -> Column {
        match ty {
            FieldType::String | FieldType::Json => Column::Str(StringBuilder::new()),
            FieldType::Int64 => Column::I64(Int64Builder::new()),
            FieldType::Float64 => Column::F64(Float64Builder::new()),
            FieldType::Bool => Column::Bool(BooleanBuilder::new()),
            FieldType::Timestamp => {
                Column::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
        }
    }

    /// Appends a value already validated against `ty` (or null).
    fn push(&mut self, ty: FieldType, value: Option<&Value>) {
        let value = value.filter(|v| !v.is_null());
        match self {
            Column::Str(b) => match (ty, value) {
                (FieldType::Json, Some(v)) => b.append_value(v.to_string()),
                (_, Some(v)) => b.append_option(v.as_str()),
                (_, None) => b.append_null(),
            },
            Column::I64(b) => b.append_option(value.and_then(Value::as_i64)),
            Column::F64(b) => b.append_option(value.and_then(Value::as_f64)),
            Column::Bool(b) => b.append_option(value.and_then(Value::as_bool)),
            Column::Ts(b) => b.append_option(value.and_then(parse_timestamp_us)),
        }
    }

    /// Appends a value read in one pass as this column's type (or null). Never given
    /// `FieldValue::Json`: rows with a `json` value take the DOM path.
    fn push_read(&mut self, value: Option<FieldValue<'_>>) {
        match (self, value) {
            (Column::Str(b), Some(FieldValue::Str(s))) => b.append_value(s),
            (Column::I64(b), Some(FieldValue::Int(n))) => b.append_value(n),
            (Column::F64(b), Some(FieldValue::Float(x))) => b.append_value(x),
            (Column::Bool(b), Some(FieldValue::Bool(v))) => b.append_value(v),
            (Column::Ts(b), Some(FieldValue::TimestampUs(t))) => b.append_value(t),
            (column, _) => column.push_null(),
        }
    }

    fn push_null(&mut self) {
        match self {
            Column::Str(b) => b.append_null(),
            Column::I64(b) => b.append_null(),
            Column::F64(b) => b.append_null(),
            Column::Bool(b) => b.append_null(),
            Column::Ts(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Str(b) => Arc::new(b.finish()),
            Column::I64(b) => Arc::new(b.finish()),
            Column::F64(b) => Arc::new(b.finish()),
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Ts(b) => Arc::new(b.finish()),
        }
    }
}

/// Rows of one (type, hour), column by column.
struct Bucket {
    ty: Arc<EventType>,
    received_at: TimestampMicrosecondBuilder,
    ts: TimestampMicrosecondBuilder,
    agent_id: StringBuilder,
    spool_id: StringBuilder,
    event_seq: Int64Builder,
    batch_seq: Int64Builder,
    fields: Vec<Column>,
    rows: usize,
    bytes: usize,
}

impl Bucket {
    fn new(ty: Arc<EventType>) -> Bucket {
        let ts = || TimestampMicrosecondBuilder::new().with_timezone("UTC");
        Bucket {
            fields: ty.fields.iter().map(|f| Column::new(f.ty)).collect(),
            ty,
            received_at: ts(),
            ts: ts(),
            agent_id: StringBuilder::new(),
            spool_id: StringBuilder::new(),
            event_seq: Int64Builder::new(),
            batch_seq: Int64Builder::new(),
            rows: 0,
            bytes: 0,
        }
    }

    fn finish(mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.received_at.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.agent_id.finish()),
            Arc::new(self.spool_id.finish()),
            Arc::new(self.event_seq.finish()),
            Arc::new(self.batch_seq.finish()),
        ];
        columns.extend(self.fields.iter_mut().map(Column::finish));
        RecordBatch::try_new(Arc::new(self.ty.arrow_schema()), columns)
            .expect("columns follow the registry's schema")
    }
}

/// What adding one batch did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Added {
    pub rows: usize,
    pub rejected: Vec<RejectedEvent>,
}

/// Buffers rows per (type, hour) until a flush takes them.
///
/// Each event is read in one pass straight into its columns
/// ([`EventType::read_line`]); an event that pass is not sure of (invalid, a repeated
/// key, a `json` value to keep as text) is read through a DOM, which also gives the
/// reason for a rejection. Both give the same row (tested).
#[derive(Default)]
pub struct Assembler {
    buckets: BTreeMap<(String, Hour), Bucket>,
    /// Tests only: every event through the DOM path, to compare the two.
    #[cfg(test)]
    dom_only: bool,
}

/// An event's row, as read.
enum Read<'a> {
    OnePass(LineView<'a>),
    Dom(EventLine),
}

/// One (type, hour)'s rows, ready to be written.
pub struct Finished {
    pub event_type: String,
    pub hour: Hour,
    pub batch: RecordBatch,
}

impl Assembler {
    /// Adds every event of an authentic batch to the bucket of `hour` (normally the
    /// batch's own hour; the hour-closing rules may redirect late data). Events that do
    /// not validate against `registry` are returned, not added.
    pub fn add(
        &mut self,
        registry: &Registry,
        opened: &OpenedBatch,
        hour: Hour,
    ) -> Result<Added, String> {
        let meta = &opened.header.meta;
        let ty = registry
            .get(&meta.event_type)
            .ok_or_else(|| {
                format!(
                    "unknown event type {:?} in this consumer's registry",
                    meta.event_type
                )
            })?
            .clone();
        let bucket = self
            .buckets
            .entry((meta.event_type.clone(), hour))
            .or_insert_with(|| Bucket::new(ty.clone()));
        let mut added = Added::default();
        let spool_id = meta.spool_id.to_string();
        for rec in opened.records() {
            let view = ty
                .read_line(rec.body)
                .filter(|v| v.type_name == ty.name && !v.has_json());
            #[cfg(test)]
            let view = view.filter(|_| !self.dom_only);
            let read = match view {
                Some(view) => Read::OnePass(view),
                None => match dom_checked(&ty, rec.body) {
                    Ok(line) => Read::Dom(line),
                    Err(e) => {
                        added.rejected.push(RejectedEvent {
                            origin: meta.origin(),
                            batch_seq: meta.batch_seq,
                            event_type: meta.event_type.clone(),
                            bucket_hour: meta.bucket_hour,
                            event_seq: rec.event_seq,
                            received_at_us: rec.received_at_us,
                            reason: e.to_string(),
                            body: rec.body.to_vec(),
                        });
                        continue;
                    }
                },
            };
            bucket.received_at.append_value(rec.received_at_us);
            bucket.agent_id.append_value(&meta.agent_id);
            bucket.spool_id.append_value(&spool_id);
            // Both are below 2^63: `batch::open` refuses a batch with more.
            bucket.event_seq.append_value(rec.event_seq as i64);
            bucket.batch_seq.append_value(meta.batch_seq as i64);
            match read {
                Read::OnePass(view) => {
                    bucket.ts.append_value(view.ts_us);
                    for (column, value) in bucket.fields.iter_mut().zip(view.values) {
                        column.push_read(value);
                    }
                }
                Read::Dom(line) => {
                    bucket.ts.append_value(line.ts_us);
                    for (spec, column) in ty.fields.iter().zip(bucket.fields.iter_mut()) {
                        column.push(spec.ty, line.fields.get(&spec.name));
                    }
                }
            }
            bucket.rows += 1;
            bucket.bytes += rec.body.len();
            added.rows += 1;
        }
        Ok(added)
    }

    /// Buffered rows and (approximate, from the JSON) bytes.
    pub fn size(&self) -> (usize, usize) {
        self.buckets
            .values()
            .fold((0, 0), |(r, b), k| (r + k.rows, b + k.bytes))
    }

    /// Takes every non-empty bucket.
    pub fn take(&mut self) -> Vec<Finished> {
        std::mem::take(&mut self.buckets)
            .into_iter()
            .filter(|(_, b)| b.rows > 0)
            .map(|((event_type, hour), bucket)| Finished {
                event_type,
                hour,
                batch: bucket.finish(),
            })
            .collect()
    }

    pub fn clear(&mut self) {
        self.buckets.clear();
    }
}

/// An event read through a DOM and validated against `ty`, or why it is refused.
fn dom_checked(ty: &EventType, body: &[u8]) -> Result<EventLine, evd_schemas::Error> {
    let line = parse_event_line(body, usize::MAX)?;
    if line.type_name != ty.name {
        return Err(evd_schemas::Error::Rejected {
            reason: evd_schemas::Reason::Schema,
            source: format!(
                "event type {:?} inside a {:?} batch",
                line.type_name, ty.name
            )
            .into(),
        });
    }
    ty.validate_fields(&line.fields)?;
    Ok(line)
}

#[cfg(test)]
#[path = "rows_tests.rs"]
mod tests;
