//! The Arrow schema of stored rows (SPEC section 5).
//!
//! One schema serves both the Parquet segments and (later) the SQL table, so
//! that any Parquet reader sees the same columns the query engine does.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Column names, in storage order. The first 18 are the `traces` table of
/// SPEC section 5; the rest are the integrity columns a verifier needs.
pub mod col {
    #![allow(missing_docs)]
    pub const NS: &str = "ns";
    pub const IDX: &str = "idx";
    pub const SESSION_ID: &str = "session_id";
    pub const SESSION_SEQ: &str = "session_seq";
    pub const KIND: &str = "kind";
    pub const TS: &str = "ts";
    pub const RECEIVED_AT: &str = "received_at";
    pub const INGESTED_BY: &str = "ingested_by";
    pub const EVENT_ID: &str = "event_id";
    pub const TRACE_ID: &str = "trace_id";
    pub const SPAN_ID: &str = "span_id";
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    pub const NAME: &str = "name";
    pub const ACTOR: &str = "actor";
    pub const MODEL: &str = "model";
    pub const CONTENT: &str = "content";
    pub const ATTRIBUTES: &str = "attributes";
    pub const LEAF_HASH: &str = "leaf_hash";
    pub const CONTENT_TYPE: &str = "content_type";
    pub const SALT: &str = "salt";
    pub const CONTENT_DIGEST: &str = "content_digest";
    pub const ATTRIBUTES_DIGEST: &str = "attributes_digest";
    pub const CHAIN_HASH: &str = "chain_hash";
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn hash_type() -> DataType {
    DataType::FixedSizeBinary(32)
}

/// The schema of a segment row: the `traces` columns plus integrity columns.
pub fn segment_schema() -> SchemaRef {
    use col::*;
    Arc::new(Schema::new(vec![
        Field::new(NS, DataType::Utf8, false),
        Field::new(IDX, DataType::Int64, false),
        Field::new(SESSION_ID, DataType::Utf8, false),
        Field::new(SESSION_SEQ, DataType::Int64, false),
        Field::new(KIND, DataType::Utf8, false),
        Field::new(TS, ts_type(), true),
        Field::new(RECEIVED_AT, ts_type(), false),
        Field::new(INGESTED_BY, DataType::Utf8, false),
        Field::new(EVENT_ID, DataType::Utf8, true),
        Field::new(TRACE_ID, DataType::Utf8, true),
        Field::new(SPAN_ID, DataType::Utf8, true),
        Field::new(PARENT_SPAN_ID, DataType::Utf8, true),
        Field::new(NAME, DataType::Utf8, true),
        Field::new(ACTOR, DataType::Utf8, true),
        Field::new(MODEL, DataType::Utf8, true),
        Field::new(CONTENT, DataType::Utf8, true),
        Field::new(ATTRIBUTES, DataType::Utf8, true),
        Field::new(LEAF_HASH, hash_type(), false),
        Field::new(CONTENT_TYPE, DataType::Utf8, true),
        // Null once the entry is erased (segments written before erasure
        // existed declare it required: [`is_segment_schema`] accepts both).
        Field::new(SALT, hash_type(), true),
        Field::new(CONTENT_DIGEST, hash_type(), true),
        Field::new(ATTRIBUTES_DIGEST, hash_type(), true),
        Field::new(CHAIN_HASH, hash_type(), false),
    ]))
}

/// Whether `fields` are those of a segment: [`segment_schema`], where
/// segments written before erasure existed declare `salt` required.
pub fn is_segment_schema(fields: &arrow_schema::Fields) -> bool {
    let want = segment_schema();
    fields.len() == want.fields().len()
        && fields.iter().zip(want.fields()).all(|(f, w)| {
            f.name() == w.name()
                && f.data_type() == w.data_type()
                && (f.is_nullable() == w.is_nullable() || f.name() == col::SALT)
        })
}

/// Number of leading columns of [`segment_schema`] that form the `traces` table.
pub const TRACES_COLUMNS: usize = 18;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_columns_are_the_spec_prefix() {
        let s = segment_schema();
        let names: Vec<&str> = s
            .fields()
            .iter()
            .take(TRACES_COLUMNS)
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "ns",
                "idx",
                "session_id",
                "session_seq",
                "kind",
                "ts",
                "received_at",
                "ingested_by",
                "event_id",
                "trace_id",
                "span_id",
                "parent_span_id",
                "name",
                "actor",
                "model",
                "content",
                "attributes",
                "leaf_hash"
            ]
        );
        assert_eq!(s.fields().len(), TRACES_COLUMNS + 5);
    }
}
