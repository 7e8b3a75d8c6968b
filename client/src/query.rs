//! `POST /v1/query`: SQL over the reader's view of the log (table `traces`,
//! view `sessions`), answered as JSON or as an Arrow IPC stream.

use arrow::array::RecordBatch;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Client, Error};

/// The media type of an Arrow IPC stream answer.
const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The JSON answer's rows.
#[derive(Deserialize)]
struct Rows {
    rows: Vec<Vec<Value>>,
}

/// Quotes `s` as a SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Client {
    /// Runs `sql`; the JSON answer (`{"columns", "rows", ...}`) as the
    /// server sent it, for callers that print it unchanged.
    pub async fn query_json(&self, sql: &str) -> Result<Bytes, Error> {
        Client::send_bytes(self.post("/v1/query").json(&json!({ "sql": sql }))).await
    }

    /// Runs `sql`; the rows, each a JSON array in column order.
    pub async fn query_rows(&self, sql: &str) -> Result<Vec<Vec<Value>>, Error> {
        let req = self.post("/v1/query").json(&json!({ "sql": sql }));
        Ok(Client::send_json::<Rows>(req, "query answer").await?.rows)
    }

    /// Runs `sql`; the Arrow IPC stream bytes as the server sent them.
    pub async fn query_arrow_bytes(&self, sql: &str) -> Result<Bytes, Error> {
        let req = self
            .post("/v1/query")
            .header("accept", ARROW_STREAM)
            .json(&json!({ "sql": sql }));
        Client::send_bytes(req).await
    }

    /// Runs `sql`; the result as Arrow record batches (Arrow IPC is far
    /// cheaper than JSON on both ends for large results, such as the
    /// timeline of a long session).
    pub async fn query_arrow(&self, sql: &str) -> Result<Vec<RecordBatch>, Error> {
        let bytes = self.query_arrow_bytes(sql).await?;
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
        Ok(reader.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn literals_double_quotes() {
        assert_eq!(super::literal("it's"), "'it''s'");
    }
}
