//! Sealing an event into a log entry: salt, field digests, the committed
//! record (RFC 8785 JSON), leaf hash and chain hash, exactly as SPEC section 4
//! defines them. The same functions serve the writer and the verifier, so the
//! two can never disagree about what an entry commits to.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tracevault_schemas::{Event, Kind, format_timestamp};

use crate::jcs;
use crate::merkle;

/// A 32-byte hash (SHA-256 output).
pub type Hash = [u8; 32];

/// Domain separator of field digests.
const FIELD_DOMAIN: &[u8] = b"tracevault/field/v1";

/// `SHA-256("tracevault/field/v1" || 0x00 || name || 0x00 || salt || value)`.
pub fn field_digest(name: &str, salt: &[u8; 32], value: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(FIELD_DOMAIN);
    h.update([0u8]);
    h.update(name.as_bytes());
    h.update([0u8]);
    h.update(salt);
    h.update(value);
    h.finalize().into()
}

/// Lowercase hex of a hash (a lookup table: this is on the per-event path).
pub fn hex32(h: &Hash) -> String {
    let mut s = String::with_capacity(64);
    push_hex32(&mut s, h);
    s
}

/// Appends the lowercase hex of a hash to `o`.
fn push_hex32(o: &mut String, h: &Hash) {
    const LUT: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 64];
    for (i, b) in h.iter().enumerate() {
        buf[2 * i] = LUT[(b >> 4) as usize];
        buf[2 * i + 1] = LUT[(b & 15) as usize];
    }
    jcs::push_ascii(o, &buf);
}

/// `chain_hash_i = SHA-256(chain_hash_{i-1} || leaf_hash_i)`.
pub fn chain_next(prev: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

/// How `content` is stored: as the string itself, or as JCS JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    /// The writer sent a JSON string.
    Text,
    /// The writer sent any other JSON value.
    Json,
}

impl ContentType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Text => "text",
            ContentType::Json => "json",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<ContentType> {
        match s {
            "text" => Some(ContentType::Text),
            "json" => Some(ContentType::Json),
            _ => None,
        }
    }
}

/// One log entry as stored (a segment row, a WAL record). Timestamps are
/// microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub ns: String,
    pub idx: u64,
    pub session_id: String,
    pub session_seq: u64,
    pub kind: Kind,
    pub ts: Option<i64>,
    pub received_at: i64,
    pub ingested_by: String,
    pub event_id: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    pub name: Option<String>,
    pub actor: Option<String>,
    pub model: Option<String>,
    pub content: Option<String>,
    pub content_type: Option<ContentType>,
    /// JCS text of the attributes object.
    pub attributes: Option<String>,
    /// The per-entry salt of the field digests; `None` once the entry is
    /// erased (its `content` and `attributes` are then gone too, while the
    /// digests, and with them the record, leaf and proofs, stay).
    #[serde(with = "hex32_opt")]
    pub salt: Option<[u8; 32]>,
    #[serde(with = "hex32_opt")]
    pub content_digest: Option<Hash>,
    #[serde(with = "hex32_opt")]
    pub attributes_digest: Option<Hash>,
    #[serde(with = "hex32")]
    pub leaf_hash: Hash,
    #[serde(with = "hex32")]
    pub chain_hash: Hash,
}

/// Sequencing facts the log assigns to an event.
#[derive(Debug, Clone)]
pub struct Sequence<'a> {
    pub ns: &'a str,
    pub idx: u64,
    pub session_seq: u64,
    pub received_at: i64,
    pub ingested_by: &'a str,
    pub salt: [u8; 32],
    pub prev_chain: Hash,
}

/// Why a stored value cannot be turned back into its committed form.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("canonical JSON: {0}")]
    Jcs(#[from] jcs::JcsError),
    #[error("timestamp {0} out of range")]
    Timestamp(i64),
    #[error("random generator: {0}")]
    Random(String),
}

fn micros_to_string(us: i64) -> Result<String, RecordError> {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| format_timestamp(&t))
        .ok_or(RecordError::Timestamp(us))
}

/// Appends a timestamp as the committed record holds it: a JSON string of
/// [`format_timestamp`]'s text. Years 0 to 9999 (every real timestamp) are
/// written digit by digit, without the formatter's allocation: this runs
/// twice per entry when sealing and when verifying. Others go through
/// [`format_timestamp`] itself; a test keeps the two identical.
fn write_micros(o: &mut String, us: i64) -> Result<(), RecordError> {
    let secs = us.div_euclid(1_000_000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&year) {
        // Rare enough for the formatter (which also refuses what chrono cannot represent).
        let t = DateTime::<Utc>::from_timestamp_micros(us).ok_or(RecordError::Timestamp(us))?;
        o.push('"');
        o.push_str(&format_timestamp(&t));
        o.push('"');
        return Ok(());
    }
    let of_day = secs.rem_euclid(86_400) as u32;
    let mut b = *b"\"0000-00-00T00:00:00.000000Z\"";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(1, 4, year as u32);
    put(6, 2, month);
    put(9, 2, day);
    put(12, 2, of_day / 3600);
    put(15, 2, of_day / 60 % 60);
    put(18, 2, of_day % 60);
    put(21, 6, us.rem_euclid(1_000_000) as u32);
    jcs::push_ascii(o, &b);
    Ok(())
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01:
/// Howard Hinnant's `civil_from_days` (eras of 400 years starting on March
/// 1st, so that the leap day is the last day of a year). Integer arithmetic
/// only, where chrono's conversion was a tenth of writing a record; a test
/// compares the two over the whole range.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Where the log puts an entry (everything [`Sequence`] holds but the salt).
#[derive(Debug, Clone)]
pub struct Position<'a> {
    pub ns: &'a str,
    pub idx: u64,
    pub session_seq: u64,
    pub received_at: i64,
    pub ingested_by: &'a str,
    pub prev_chain: Hash,
}

/// An event with its salt drawn and its payload canonicalised and digested,
/// but no position yet. The expensive, position-independent half of sealing
/// (hashing the payload) is done here, in parallel on the request handlers,
/// so the single sequencer thread only hashes the small committed record.
#[derive(Debug, Clone)]
pub struct Prepared(Entry);

/// Salts drawn from the OS random generator in bulk, for preparing events
/// one at a time as they are mapped (OTLP) without a syscall each.
#[derive(Debug)]
pub struct Salts {
    buf: Vec<u8>,
    used: usize,
    /// How many salts the next refill draws.
    refill: usize,
}

impl Salts {
    /// Salts drawn as they are needed, 256 at a time.
    pub fn new() -> Salts {
        Salts::for_events(256)
    }

    /// The first draw is of `n` salts (then 256 at a time).
    pub fn for_events(n: usize) -> Salts {
        Salts {
            buf: Vec::new(),
            used: 0,
            refill: n.max(1),
        }
    }

    /// A fresh salt.
    pub fn next_salt(&mut self) -> Result<[u8; 32], RecordError> {
        if self.used == self.buf.len() {
            self.buf.resize(32 * self.refill, 0);
            crate::keys::random_bytes(&mut self.buf)
                .map_err(|e| RecordError::Random(e.to_string()))?;
            self.used = 0;
            self.refill = 256;
        }
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&self.buf[self.used..self.used + 32]);
        self.used += 32;
        Ok(salt)
    }

    /// Prepares `event` with the next salt.
    pub fn prepare(&mut self, event: Event) -> Result<Prepared, RecordError> {
        Prepared::with_salt(event, self.next_salt()?)
    }
}

impl Default for Salts {
    fn default() -> Self {
        Salts::new()
    }
}

impl Prepared {
    /// Prepares `event` with a fresh random salt.
    pub fn new(event: Event) -> Result<Prepared, RecordError> {
        let mut salt = [0u8; 32];
        crate::keys::random_bytes(&mut salt).map_err(|e| RecordError::Random(e.to_string()))?;
        Prepared::with_salt(event, salt)
    }

    /// Prepares a batch, drawing all salts with one call to the OS random
    /// generator (one syscall per request instead of one per event).
    pub fn batch(events: Vec<Event>) -> Result<Vec<Prepared>, RecordError> {
        let mut salts = Salts::for_events(events.len());
        events.into_iter().map(|e| salts.prepare(e)).collect()
    }

    /// Bytes of payload as stored: the content and attributes columns (text,
    /// or JCS for JSON). What event size limits apply to when an event did not
    /// arrive as JSON text of its own (OTLP).
    pub fn payload_bytes(&self) -> usize {
        self.0.content.as_ref().map_or(0, String::len)
            + self.0.attributes.as_ref().map_or(0, String::len)
    }

    /// Prepares `event` with the given salt.
    pub fn with_salt(event: Event, salt: [u8; 32]) -> Result<Prepared, RecordError> {
        let (content, content_type) = match event.content {
            None => (None, None),
            Some(Value::String(s)) => (Some(s), Some(ContentType::Text)),
            Some(v) => (Some(jcs::to_canonical_string(&v)?), Some(ContentType::Json)),
        };
        let attributes = match event.attributes {
            None => None,
            Some(m) => Some(jcs::to_canonical_string(&Value::Object(m))?),
        };
        let content_digest = content
            .as_ref()
            .map(|c| field_digest("content", &salt, c.as_bytes()));
        let attributes_digest = attributes
            .as_ref()
            .map(|a| field_digest("attributes", &salt, a.as_bytes()));
        let entry = Entry {
            ns: String::new(),
            idx: 0,
            session_id: event.session_id,
            session_seq: 0,
            kind: event.kind,
            ts: event.ts.map(|t| t.timestamp_micros()),
            received_at: 0,
            ingested_by: String::new(),
            event_id: event.event_id,
            trace_id: event.trace_id,
            span_id: event.span_id,
            parent_span_id: event.parent_span_id,
            name: event.name,
            actor: event.actor,
            model: event.model,
            content,
            content_type,
            attributes,
            salt: Some(salt),
            content_digest,
            attributes_digest,
            leaf_hash: [0; 32],
            chain_hash: [0; 32],
        };
        Ok(Prepared(entry))
    }

    /// Whether this event and `other` say the same: every field a client
    /// sets (session, kind, ts, ids, name, actor, model, content with its
    /// type, attributes), none the log assigns, and not the salt. Two events
    /// of one request under one `event_id` must be the same (a retry within
    /// the request) or the request is a conflict.
    pub fn same_event(&self, other: &Prepared) -> bool {
        let (a, b) = (&self.0, &other.0);
        a.session_id == b.session_id
            && a.kind == b.kind
            && a.ts == b.ts
            && a.event_id == b.event_id
            && a.trace_id == b.trace_id
            && a.span_id == b.span_id
            && a.parent_span_id == b.parent_span_id
            && a.name == b.name
            && a.actor == b.actor
            && a.model == b.model
            && a.content_type == b.content_type
            && a.content == b.content
            && a.attributes == b.attributes
    }

    /// Whether this event is the one sealed as `leaf` at `pos` with `salt`:
    /// its field digests redone under that salt, and its record at that
    /// position, hash to the same leaf. How the dedupe window tells a retry
    /// from a different event reusing an `event_id` without keeping a hash
    /// of every payload: the payload is hashed again only when an id comes
    /// back, not once more for every event.
    pub fn is_sealed_as(
        &self,
        salt: &[u8; 32],
        pos: Position<'_>,
        leaf: &Hash,
    ) -> Result<bool, RecordError> {
        let e = &self.0;
        let record = EntryRef {
            ns: pos.ns,
            idx: pos.idx,
            session_seq: pos.session_seq,
            received_at: pos.received_at,
            ingested_by: pos.ingested_by,
            // The record holds digests, not the payload.
            content: None,
            attributes: None,
            salt: Some(*salt),
            content_digest: e
                .content
                .as_ref()
                .map(|c| field_digest("content", salt, c.as_bytes())),
            attributes_digest: e
                .attributes
                .as_ref()
                .map(|a| field_digest("attributes", salt, a.as_bytes())),
            ..e.view()
        };
        let mut o = String::with_capacity(512);
        record.write_committed_record(&mut o)?;
        Ok(merkle::leaf_hash(o.as_bytes()) == *leaf)
    }

    /// The event's session.
    pub fn session_id(&self) -> &str {
        &self.0.session_id
    }

    /// The event's client id, if any.
    pub fn event_id(&self) -> Option<&str> {
        self.0.event_id.as_deref()
    }

    /// Places the event in the log: the committed record, leaf and chain hash.
    pub fn seal(self, pos: Position<'_>) -> Result<Entry, RecordError> {
        let mut e = self.0;
        e.ns = pos.ns.to_string();
        e.idx = pos.idx;
        e.session_seq = pos.session_seq;
        e.received_at = pos.received_at;
        e.ingested_by = pos.ingested_by.to_string();
        e.leaf_hash = merkle::leaf_hash(&e.committed_record_bytes()?);
        e.chain_hash = chain_next(&pos.prev_chain, &e.leaf_hash);
        Ok(e)
    }
}

impl Entry {
    /// Seals `event` at the position `seq` gives it.
    pub fn seal(event: Event, seq: Sequence<'_>) -> Result<Entry, RecordError> {
        Prepared::with_salt(event, seq.salt)?.seal(Position {
            ns: seq.ns,
            idx: seq.idx,
            session_seq: seq.session_seq,
            received_at: seq.received_at,
            ingested_by: seq.ingested_by,
            prev_chain: seq.prev_chain,
        })
    }

    /// The committed record as a JSON object (digests as stored, not recomputed).
    pub fn committed_record(&self) -> Result<Value, RecordError> {
        let mut m = Map::new();
        let s = |v: &str| Value::String(v.to_string());
        m.insert("v".into(), Value::from(1));
        m.insert("ns".into(), s(&self.ns));
        m.insert("index".into(), Value::from(self.idx));
        m.insert("session_id".into(), s(&self.session_id));
        m.insert("session_seq".into(), Value::from(self.session_seq));
        m.insert("kind".into(), s(self.kind.as_str()));
        m.insert(
            "received_at".into(),
            Value::String(micros_to_string(self.received_at)?),
        );
        m.insert("ingested_by".into(), s(&self.ingested_by));
        if let Some(ts) = self.ts {
            m.insert("ts".into(), Value::String(micros_to_string(ts)?));
        }
        for (k, v) in [
            ("event_id", &self.event_id),
            ("trace_id", &self.trace_id),
            ("span_id", &self.span_id),
            ("parent_span_id", &self.parent_span_id),
            ("name", &self.name),
            ("actor", &self.actor),
            ("model", &self.model),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), s(v));
            }
        }
        if let Some(ct) = self.content_type {
            m.insert("content_type".into(), s(ct.as_str()));
        }
        if let Some(d) = &self.content_digest {
            m.insert("content_digest".into(), Value::String(hex32(d)));
        }
        if let Some(d) = &self.attributes_digest {
            m.insert("attributes_digest".into(), Value::String(hex32(d)));
        }
        Ok(Value::Object(m))
    }

    /// The JCS bytes whose leaf hash goes into the tree (see
    /// [`EntryRef::write_committed_record`]).
    pub fn committed_record_bytes(&self) -> Result<Vec<u8>, RecordError> {
        let mut o = String::with_capacity(512);
        self.view().write_committed_record(&mut o)?;
        Ok(o.into_bytes())
    }

    /// The entry borrowed field by field.
    pub fn view(&self) -> EntryRef<'_> {
        EntryRef {
            ns: &self.ns,
            idx: self.idx,
            session_id: &self.session_id,
            session_seq: self.session_seq,
            kind: self.kind,
            ts: self.ts,
            received_at: self.received_at,
            ingested_by: &self.ingested_by,
            event_id: self.event_id.as_deref(),
            trace_id: self.trace_id.as_deref(),
            span_id: self.span_id.as_deref(),
            parent_span_id: self.parent_span_id.as_deref(),
            name: self.name.as_deref(),
            actor: self.actor.as_deref(),
            model: self.model.as_deref(),
            content: self.content.as_deref(),
            content_type: self.content_type,
            attributes: self.attributes.as_deref(),
            salt: self.salt,
            content_digest: self.content_digest,
            attributes_digest: self.attributes_digest,
            leaf_hash: self.leaf_hash,
            chain_hash: self.chain_hash,
        }
    }

    /// Whether the entry's payload was erased (salt, content and
    /// attributes removed under an erasure order).
    pub fn is_erased(&self) -> bool {
        self.salt.is_none()
    }

    /// Removes the payload: content, attributes and the salt. The record
    /// keeps the digests, so the leaf, chain and every proof are unchanged,
    /// and with the salt gone the digests no longer reveal anything about
    /// the values (SPEC section 4).
    pub fn erase(&mut self) {
        self.content = None;
        self.attributes = None;
        self.salt = None;
    }

    /// The event as the writer sent it (content parsed back from JSON text).
    /// An erased entry carries `"erased": true` and neither content nor
    /// attributes.
    pub fn to_event_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("session_id".into(), Value::String(self.session_id.clone()));
        m.insert("kind".into(), Value::String(self.kind.as_str().into()));
        if let Some(ts) = self.ts.and_then(|t| micros_to_string(t).ok()) {
            m.insert("ts".into(), Value::String(ts));
        }
        for (k, v) in [
            ("event_id", &self.event_id),
            ("trace_id", &self.trace_id),
            ("span_id", &self.span_id),
            ("parent_span_id", &self.parent_span_id),
            ("name", &self.name),
            ("actor", &self.actor),
            ("model", &self.model),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v.clone()));
            }
        }
        if let Some(c) = &self.content {
            let v = match self.content_type {
                Some(ContentType::Json) => {
                    serde_json::from_str(c).unwrap_or(Value::String(c.clone()))
                }
                _ => Value::String(c.clone()),
            };
            m.insert("content".into(), v);
        }
        if let Some(a) = &self.attributes
            && let Ok(v) = serde_json::from_str::<Value>(a)
        {
            m.insert("attributes".into(), v);
        }
        if self.is_erased() {
            m.insert("erased".into(), Value::Bool(true));
        }
        Value::Object(m)
    }

    /// Rough in-memory size, for the bounds on unpublished data.
    pub fn approx_size(&self) -> usize {
        200 + self.session_id.len()
            + self.content.as_ref().map_or(0, String::len)
            + self.attributes.as_ref().map_or(0, String::len)
            + [
                &self.event_id,
                &self.trace_id,
                &self.span_id,
                &self.parent_span_id,
                &self.name,
                &self.actor,
                &self.model,
            ]
            .iter()
            .map(|o| o.as_ref().map_or(0, |s| s.len()))
            .sum::<usize>()
    }
}

/// An entry borrowed from wherever it is held (a decoded segment batch, an
/// [`Entry`]). The verifier checks rows in this form, straight from the
/// Arrow buffers, instead of copying every value into an owned entry first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntryRef<'a> {
    pub ns: &'a str,
    pub idx: u64,
    pub session_id: &'a str,
    pub session_seq: u64,
    pub kind: Kind,
    pub ts: Option<i64>,
    pub received_at: i64,
    pub ingested_by: &'a str,
    pub event_id: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub span_id: Option<&'a str>,
    pub parent_span_id: Option<&'a str>,
    pub name: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub model: Option<&'a str>,
    pub content: Option<&'a str>,
    pub content_type: Option<ContentType>,
    pub attributes: Option<&'a str>,
    pub salt: Option<[u8; 32]>,
    pub content_digest: Option<Hash>,
    pub attributes_digest: Option<Hash>,
    pub leaf_hash: Hash,
    pub chain_hash: Hash,
}

impl EntryRef<'_> {
    /// An owned copy.
    pub fn to_entry(&self) -> Entry {
        let own = |v: Option<&str>| v.map(str::to_string);
        Entry {
            ns: self.ns.to_string(),
            idx: self.idx,
            session_id: self.session_id.to_string(),
            session_seq: self.session_seq,
            kind: self.kind,
            ts: self.ts,
            received_at: self.received_at,
            ingested_by: self.ingested_by.to_string(),
            event_id: own(self.event_id),
            trace_id: own(self.trace_id),
            span_id: own(self.span_id),
            parent_span_id: own(self.parent_span_id),
            name: own(self.name),
            actor: own(self.actor),
            model: own(self.model),
            content: own(self.content),
            content_type: self.content_type,
            attributes: own(self.attributes),
            salt: self.salt,
            content_digest: self.content_digest,
            attributes_digest: self.attributes_digest,
            leaf_hash: self.leaf_hash,
            chain_hash: self.chain_hash,
        }
    }

    /// Whether the entry's payload was erased (see [`Entry::is_erased`]).
    pub fn is_erased(&self) -> bool {
        self.salt.is_none()
    }

    /// Appends the committed record's JCS text (SPEC section 4) to `o`: the
    /// bytes whose leaf hash goes into the tree. Written directly in RFC 8785
    /// key order (the record's keys are fixed ASCII names, so their order is
    /// known) instead of building a JSON tree first; a test keeps it
    /// identical to `jcs(committed_record())`. Taking the buffer lets the
    /// verifier reuse one for every row.
    pub fn write_committed_record(&self, o: &mut String) -> Result<(), RecordError> {
        let mut first = true;
        // Each key with its quotes and colon in one copy, after `{` or `,`.
        macro_rules! key_ {
            ($k:literal) => {
                concat!("\"", $k, "\":")
            };
        }
        let mut key = |o: &mut String, quoted: &str| {
            o.push_str(if first { "{" } else { "," });
            first = false;
            o.push_str(quoted);
        };
        let str_field = |o: &mut String, v: &str| jcs::write_string(o, v);
        let hex_field = |o: &mut String, d: &Hash| {
            o.push('"');
            push_hex32(o, d);
            o.push('"');
        };
        // Keys in UTF-16 code unit order (plain ASCII order here).
        if let Some(v) = self.actor {
            key(o, key_!("actor"));
            str_field(o, v);
        }
        if let Some(d) = &self.attributes_digest {
            key(o, key_!("attributes_digest"));
            hex_field(o, d);
        }
        if let Some(d) = &self.content_digest {
            key(o, key_!("content_digest"));
            hex_field(o, d);
        }
        if let Some(ct) = self.content_type {
            key(o, key_!("content_type"));
            str_field(o, ct.as_str());
        }
        if let Some(v) = self.event_id {
            key(o, key_!("event_id"));
            str_field(o, v);
        }
        key(o, key_!("index"));
        jcs::write_u64(o, self.idx);
        key(o, key_!("ingested_by"));
        str_field(o, self.ingested_by);
        key(o, key_!("kind"));
        str_field(o, self.kind.as_str());
        if let Some(v) = self.model {
            key(o, key_!("model"));
            str_field(o, v);
        }
        if let Some(v) = self.name {
            key(o, key_!("name"));
            str_field(o, v);
        }
        key(o, key_!("ns"));
        str_field(o, self.ns);
        if let Some(v) = self.parent_span_id {
            key(o, key_!("parent_span_id"));
            str_field(o, v);
        }
        key(o, key_!("received_at"));
        write_micros(o, self.received_at)?;
        key(o, key_!("session_id"));
        str_field(o, self.session_id);
        key(o, key_!("session_seq"));
        jcs::write_u64(o, self.session_seq);
        if let Some(v) = self.span_id {
            key(o, key_!("span_id"));
            str_field(o, v);
        }
        if let Some(v) = self.trace_id {
            key(o, key_!("trace_id"));
            str_field(o, v);
        }
        if let Some(ts) = self.ts {
            key(o, key_!("ts"));
            write_micros(o, ts)?;
        }
        key(o, key_!("v"));
        o.push_str("1}");
        Ok(())
    }
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <&str>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

mod hex32_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(s) = Option::<&str>::deserialize(d)? else {
            return Ok(None);
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn salts_drawn_in_bulk_are_all_fresh() {
        let mut salts = Salts::for_events(3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..600 {
            assert!(seen.insert(salts.next_salt().unwrap()));
        }
        assert!(!seen.contains(&[0u8; 32]));
    }

    use super::*;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../tests/fixtures/spec-v1.json")).unwrap()
    }

    fn h(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn field_digests_match_spec_vectors() {
        for v in vectors()["field_digests"].as_array().unwrap() {
            let d = field_digest(
                v["name"].as_str().unwrap(),
                &h(v["salt_hex"].as_str().unwrap()),
                v["value"].as_str().unwrap().as_bytes(),
            );
            assert_eq!(hex::encode(d), v["digest_hex"].as_str().unwrap());
        }
    }

    /// Seals the vector events and reproduces every record, JCS text, leaf and chain hash.
    #[test]
    fn sealed_entries_match_spec_vectors() {
        let vec = vectors();
        let salt = h(vec["field_digests"][0]["salt_hex"].as_str().unwrap());
        let contents = [
            Some(Value::String("Adding two and two gives four.".into())),
            Some(serde_json::json!({"tool": "calc", "args": {"expr": "2+2"}})),
            None,
        ];
        let attributes = [
            None,
            Some(serde_json::json!({"gen_ai.request.model": "m-1", "i": 3, "tags": ["a", "b"]})),
            None,
        ];
        let mut prev = [0u8; 32];
        for (i, r) in vec["records"].as_array().unwrap().iter().enumerate() {
            let rec = &r["record"];
            let mut ev = serde_json::Map::new();
            for k in [
                "session_id",
                "kind",
                "ts",
                "event_id",
                "name",
                "model",
                "actor",
            ] {
                if let Some(v) = rec.get(k) {
                    ev.insert(k.into(), v.clone());
                }
            }
            if let Some(c) = &contents[i] {
                ev.insert("content".into(), c.clone());
            }
            if let Some(a) = &attributes[i] {
                ev.insert("attributes".into(), a.clone());
            }
            let event = Event::from_value(Value::Object(ev)).unwrap();
            let received =
                tracevault_schemas::parse_timestamp("t", rec["received_at"].as_str().unwrap())
                    .unwrap();
            let e = Entry::seal(
                event,
                Sequence {
                    ns: rec["ns"].as_str().unwrap(),
                    idx: rec["index"].as_u64().unwrap(),
                    session_seq: rec["session_seq"].as_u64().unwrap(),
                    received_at: received.timestamp_micros(),
                    ingested_by: rec["ingested_by"].as_str().unwrap(),
                    salt,
                    prev_chain: prev,
                },
            )
            .unwrap();
            assert_eq!(&e.committed_record().unwrap(), rec, "record {i}");
            assert_eq!(
                String::from_utf8(e.committed_record_bytes().unwrap()).unwrap(),
                r["jcs"].as_str().unwrap()
            );
            assert_eq!(
                hex::encode(e.leaf_hash),
                r["leaf_hash_hex"].as_str().unwrap()
            );
            assert_eq!(
                hex::encode(e.chain_hash),
                r["chain_hash_hex"].as_str().unwrap()
            );
            prev = e.chain_hash;
            let back = Event::from_value(e.to_event_json()).unwrap();
            assert_eq!(back.content, contents[i].clone());
        }
    }

    #[test]
    fn direct_record_encoding_equals_jcs_of_the_record() {
        let events = [
            serde_json::json!({"session_id": "s", "kind": "output"}),
            serde_json::json!({"session_id": "a.b:c", "kind": "tool_call", "ts": "2026-01-01T00:00:00.000001Z",
                "event_id": "e\"x\\", "trace_id": "t", "span_id": "sp", "parent_span_id": "pp",
                "name": "ünïcödé 😀", "actor": "a", "model": "m", "content": {"b": 1, "a": [true]},
                "attributes": {"z": null}}),
            serde_json::json!({"session_id": "s", "kind": "prompt", "content": "plain"}),
        ];
        for (i, v) in events.into_iter().enumerate() {
            let ev = Event::from_value(v).unwrap();
            let seq = Sequence {
                ns: "n-1",
                idx: 1 << 40,
                session_seq: i as u64,
                received_at: 1_700_000_000_123_456,
                ingested_by: "w\"q",
                salt: [3; 32],
                prev_chain: [0; 32],
            };
            let mut e = Entry::seal(ev, seq).unwrap();
            if i == 1 {
                // Stored values are not re-validated: control characters must encode identically too.
                e.actor = Some("a\u{1}\u{7f}\u{2028}\t".into());
            }
            let via_tree = jcs::to_canonical_vec(&e.committed_record().unwrap()).unwrap();
            assert_eq!(
                String::from_utf8(e.committed_record_bytes().unwrap()).unwrap(),
                String::from_utf8(via_tree).unwrap()
            );
        }
        assert_eq!(hex32(&[0xab; 32]), hex::encode([0xab; 32]));
    }

    /// The digit-by-digit timestamp writer against the formatter it stands
    /// in for, over the whole range the record can hold: both ends, years
    /// around 0 and 9999, leap days, and a spread of values in between.
    #[test]
    fn timestamps_are_written_as_the_formatter_writes_them() {
        let (min, max) = (
            DateTime::<Utc>::MIN_UTC.timestamp_micros(),
            DateTime::<Utc>::MAX_UTC.timestamp_micros(),
        );
        let year = |y: i32| {
            chrono::NaiveDate::from_ymd_opt(y, 1, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros()
        };
        let mut cases = vec![
            min,
            max,
            0,
            -1,
            1,
            year(0),
            year(0) - 1,
            year(10_000),
            year(10_000) - 1,
            year(2024) + 59 * 86_400_000_000 + 999_999,
            1_700_000_000_123_456,
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Half spread over the whole range, half over years 0 to 9999.
            let span = if cases.len() % 2 == 0 {
                (min, max)
            } else {
                (year(0), year(10_000))
            };
            // (The whole range is wider than an i64.)
            let width = (i128::from(span.1) - i128::from(span.0)) as u128;
            cases.push((i128::from(span.0) + (u128::from(x) % width) as i128) as i64);
        }
        for us in cases {
            let mut o = String::new();
            write_micros(&mut o, us).unwrap();
            assert_eq!(o, format!("\"{}\"", micros_to_string(us).unwrap()), "{us}");
        }
        assert!(write_micros(&mut String::new(), i64::MIN).is_err());
    }

    #[test]
    fn batch_preparation_draws_a_distinct_salt_per_event() {
        let evs: Vec<Event> = (0..3)
            .map(|_| {
                Event::from_value(
                    serde_json::json!({"session_id": "s", "kind": "output", "content": "same"}),
                )
                .unwrap()
            })
            .collect();
        let p = Prepared::batch(evs).unwrap();
        let salts: Vec<[u8; 32]> = p.iter().filter_map(|p| p.0.salt).collect();
        assert!(salts[0] != salts[1] && salts[1] != salts[2] && salts[0] != salts[2]);
        assert_ne!(
            p[0].0.content_digest, p[1].0.content_digest,
            "equal values must not have equal digests"
        );
    }

    #[test]
    fn entry_round_trips_through_json() {
        let ev = Event::from_value(
            serde_json::json!({"session_id": "s", "kind": "output", "content": "x"}),
        )
        .unwrap();
        let seq = Sequence {
            ns: "n",
            idx: 5,
            session_seq: 0,
            received_at: 1,
            ingested_by: "w",
            salt: [9; 32],
            prev_chain: [0; 32],
        };
        let e = Entry::seal(ev, seq).unwrap();
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e);
    }
}
