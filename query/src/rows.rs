//! Query results as JSON (`{"columns": [{"name","type"}], "rows": [[..]..]}`)
//! or Arrow IPC stream bytes.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::scalar::ScalarValue;
use std::io::Write;

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

/// The result did not fit the byte budget once rendered as JSON.
#[derive(Debug, thiserror::Error)]
#[error("the result exceeds {0} bytes as JSON (ask for fewer rows or columns, or for Arrow IPC)")]
pub struct JsonTooLarge(pub usize);

/// The JSON body of a query result, `{"columns": [..], "rows": [[..]..]}`
/// and then `extra`'s fields, written straight into bytes: at most `max`
/// of them. The text is counted, not the result's Arrow memory: a result
/// that is small as Arrow (say thousands of all-null columns) can be huge
/// as JSON, and as a tree of JSON values far bigger still, so rendering
/// stops at the budget instead.
pub fn to_json(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    extra: &serde_json::Map<String, Value>,
    max: usize,
) -> Result<Vec<u8>, JsonTooLarge> {
    let mut out = Capped {
        buf: Vec::new(),
        max,
    };
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    let written = (|| -> std::io::Result<()> {
        out.write_all(b"{\"columns\":")?;
        serde_json::to_writer(&mut out, &columns)?;
        out.write_all(b",\"rows\":[")?;
        let mut first_row = true;
        for b in batches {
            for r in 0..b.num_rows() {
                out.write_all(if first_row { b"[" } else { b",[" })?;
                first_row = false;
                for (i, c) in b.columns().iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    let v = ScalarValue::try_from_array(c, r)
                        .map(|s| scalar_to_json(&s))
                        .unwrap_or(Value::Null);
                    serde_json::to_writer(&mut out, &v)?;
                }
                out.write_all(b"]")?;
            }
        }
        out.write_all(b"]")?;
        for (k, v) in extra {
            out.write_all(b",")?;
            serde_json::to_writer(&mut out, k)?;
            out.write_all(b":")?;
            serde_json::to_writer(&mut out, v)?;
        }
        out.write_all(b"}")
    })();
    match written {
        Ok(()) => Ok(out.buf),
        Err(_) => Err(JsonTooLarge(max)),
    }
}

/// A buffer that refuses to grow past `max` bytes.
struct Capped {
    buf: Vec<u8>,
    max: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(b.len()) > self.max {
            return Err(std::io::Error::other("over the byte budget"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
