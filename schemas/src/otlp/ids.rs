//! Identifiers: OTLP trace/span ids as hex, session ids, deterministic event
//! id prefixes, and timestamps.

use chrono::{DateTime, Utc};
use prost::Message;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::anyvalue::non_null;
use crate::{MAX_SESSION_ID_LEN, validate_session_id};

/// Session used when a record has neither a conversation id nor a trace id.
pub(super) const UNTRACED_SESSION: &str = "otlp-untraced";

/// How many sanitised characters a normalised session id keeps before its hash.
const SESSION_PREFIX_CHARS: usize = 100;

/// Lowercase hex of an OTLP id; empty and all-zero ids (invalid in OTLP) are
/// absent.
pub(super) fn hex_id(bytes: &[u8]) -> Option<String> {
    if bytes.iter().all(|b| *b == 0) {
        None
    } else {
        Some(lower_hex(bytes))
    }
}

/// Lowercase hex, two table lookups per byte: what `hex::encode` gives,
/// without its per-character iterator (three ids of every span).
pub(super) fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// `<prefix>:<n>`, the `event_id` of a span's or record's `n`-th event. A
/// span's events are numbered from 0 and rarely reach 10: one digit is
/// written without the formatter, which every OTLP event would go through.
pub(super) fn event_id(prefix: &str, n: usize) -> String {
    let mut s = String::with_capacity(prefix.len() + 4);
    s.push_str(prefix);
    s.push(':');
    match u8::try_from(n).ok().filter(|d| *d < 10) {
        Some(d) => s.push(char::from(b'0' + d)),
        None => {
            use std::fmt::Write as _;
            let _ = write!(s, "{n}");
        }
    }
    s
}

/// Lowercase hex of the SHA-256 of `data`, cut to `chars` characters.
fn sha256_hex(data: &[u8], chars: usize) -> String {
    let mut h = hex::encode(Sha256::digest(data));
    h.truncate(chars);
    h
}

/// Makes any string a valid `session_id`, deterministically. A valid id is
/// kept as is. Otherwise every character outside `[A-Za-z0-9._:-]` becomes
/// `_`, the result is cut to its first 100 characters, and `:` plus the first
/// 16 hex digits of the SHA-256 of the original UTF-8 are appended, so that
/// distinct originals stay distinct. An empty string has no session.
pub(super) fn normalise_session(raw: &str) -> Option<String> {
    if raw.is_empty() {
        return None;
    }
    if raw.len() <= MAX_SESSION_ID_LEN && validate_session_id(raw).is_ok() {
        return Some(raw.to_string());
    }
    let prefix: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(SESSION_PREFIX_CHARS)
        .collect();
    Some(format!("{prefix}:{}", sha256_hex(raw.as_bytes(), 16)))
}

/// The conversation id as text: strings as is, other scalars and structures
/// as their JSON text (then normalised like any other id).
fn conversation_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The session of a span or log record: `gen_ai.conversation.id` from each of
/// `sources` in turn, else the trace id, else [`UNTRACED_SESSION`].
pub(super) fn session_for(sources: &[&Map<String, Value>], trace_id: Option<&str>) -> String {
    sources
        .iter()
        .filter_map(|m| non_null(m.get("gen_ai.conversation.id")))
        .filter_map(conversation_text)
        .find_map(|s| normalise_session(&s))
        .or_else(|| trace_id.and_then(normalise_session))
        .unwrap_or_else(|| UNTRACED_SESSION.to_string())
}

/// A digest identifying a message together with the resource and scope that
/// carry it: SHA-256 over each part's protobuf encoding, each preceded by its
/// length. Decoding OTLP/JSON or OTLP/protobuf yields the same structs, hence
/// the same digest.
pub(super) fn content_digest(parts: &[&dyn ProstBytes]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        let bytes = p.bytes();
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    let mut s = hex::encode(h.finalize());
    s.truncate(32);
    s
}

/// Something whose protobuf encoding can be hashed (absent → empty).
pub(super) trait ProstBytes {
    /// The protobuf encoding.
    fn bytes(&self) -> Vec<u8>;
}

impl<M: Message> ProstBytes for Option<&M> {
    fn bytes(&self) -> Vec<u8> {
        self.map(Message::encode_to_vec).unwrap_or_default()
    }
}

/// A unix-nanosecond time; 0 is absent. (Every `u64` of nanoseconds is a
/// time RFC 3339 can carry and the event model accepts: before year 2555.)
pub(super) fn nanos_to_time(nanos: u64) -> Option<DateTime<Utc>> {
    if nanos == 0 {
        return None;
    }
    let secs = i64::try_from(nanos / 1_000_000_000).ok()?;
    let sub = u32::try_from(nanos % 1_000_000_000).ok()?;
    DateTime::from_timestamp(secs, sub)
}
