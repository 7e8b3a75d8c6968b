//! Query results as JSON (`{"columns": [{"name","type"}], "rows": [[..]..]}`)
//! or Arrow IPC stream bytes.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::scalar::ScalarValue;
use serde_json::{Value, json};

/// One value as JSON: numbers and booleans natively, timestamps as RFC 3339
/// UTC, binary as hex, lists as arrays, everything else as its display text.
fn scalar_to_json(v: &ScalarValue) -> Value {
    use ScalarValue as S;
    if v.is_null() {
        return Value::Null;
    }
    match v {
        S::Boolean(Some(b)) => json!(b),
        S::Int8(Some(n)) => json!(n),
        S::Int16(Some(n)) => json!(n),
        S::Int32(Some(n)) => json!(n),
        S::Int64(Some(n)) => json!(n),
        S::UInt8(Some(n)) => json!(n),
        S::UInt16(Some(n)) => json!(n),
        S::UInt32(Some(n)) => json!(n),
        S::UInt64(Some(n)) => json!(n),
        S::Float32(Some(f)) => json!(f),
        S::Float64(Some(f)) => json!(f),
        S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s)) => json!(s),
        S::Binary(Some(b)) | S::LargeBinary(Some(b)) | S::FixedSizeBinary(_, Some(b)) => {
            json!(hex::encode(b))
        }
        S::TimestampMicrosecond(Some(us), _) => chrono::DateTime::from_timestamp_micros(*us)
            .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()))
            .unwrap_or(Value::Null),
        S::List(arr) => {
            let a = arr.value(0);
            Value::Array(
                (0..a.len())
                    .map(|i| {
                        ScalarValue::try_from_array(&a, i)
                            .map(|s| scalar_to_json(&s))
                            .unwrap_or(Value::Null)
                    })
                    .collect(),
            )
        }
        other => json!(other.to_string()),
    }
}

/// The JSON body of a query result.
pub fn to_json(schema: &SchemaRef, batches: &[RecordBatch]) -> Value {
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let mut rows = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let row: Vec<Value> = b
                .columns()
                .iter()
                .map(|c| {
                    ScalarValue::try_from_array(c, r)
                        .map(|s| scalar_to_json(&s))
                        .unwrap_or(Value::Null)
                })
                .collect();
            rows.push(Value::Array(row));
        }
    }
    json!({"columns": columns, "rows": rows})
}

/// The result as an Arrow IPC stream.
pub fn to_arrow_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)
            .map_err(|e| e.to_string())?;
        for b in batches {
            w.write(b).map_err(|e| e.to_string())?;
        }
        w.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}
