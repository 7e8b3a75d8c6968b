//! The tracevault event model: what writers send ([`Event`]), how it is
//! validated, its JSON Schema, and the Arrow schema of stored rows.
//!
//! This crate is the bottom of the dependency graph; it knows nothing about
//! hashing, storage or HTTP.

mod event;
mod kind;
pub mod otlp;
pub mod rows;
pub mod sample;
pub mod strict_json;

pub use event::{
    Event, EventError, MAX_SESSION_ID_LEN, MAX_SHORT_FIELD_LEN, format_timestamp, parse_timestamp,
    validate_session_id,
};
pub use kind::Kind;

/// The JSON Schema of [`Event`], generated from the Rust type. The checked-in
/// copy at `schemas/event.schema.json` is kept identical by a test.
pub fn event_json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Event)).unwrap_or(serde_json::Value::Null)
}
