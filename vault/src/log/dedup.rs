//! The dedupe window: recent `event_id`s per writer and session, so that a
//! retried event is answered with its original receipt.

use super::*;

/// The window of recent `event_id`s, so that a retried event is answered
/// with its original receipt instead of being appended again, however many
/// retries. The key is `(ingested_by, session_id, event_id)`, hashed: one
/// writer's ids never collide with another's, so no writer can pre-empt (and
/// so suppress) another's event by posting its id first. Each key keeps the
/// original receipt and what it takes to seal the event again (its salt and
/// position): a retry must carry the same event, one that seals to the same
/// leaf, and the same key with a different event is a conflict, never a
/// silent duplicate.
pub(super) struct Dedup {
    pub(super) map: HashMap<Hash, Remembered>,
    /// The keys in index order, with the index of their entry.
    pub(super) order: VecDeque<(u64, Hash)>,
    /// How many entries back the window reaches: the keys of the last
    /// `cap` entries are kept (so at most `cap` keys). Counted in entries,
    /// not keys, so that an open can rebuild exactly this window by reading
    /// the last `cap` entries of the log, whatever their share of ids.
    pub(super) cap: usize,
}

/// What the window keeps of an entry: its receipt, and its salt and time of
/// receipt to seal a candidate again, in 96 bytes (a million keys are about
/// 170 MB with the map's own overhead).
pub(super) struct Remembered {
    index: u64,
    session_seq: u64,
    received_at: i64,
    leaf_hash: Hash,
    /// `None` once the entry is erased: its payload is gone, so no retry can
    /// be compared with it (see [`Dedup::absorb`]).
    salt: Option<[u8; 32]>,
}

impl Remembered {
    fn receipt(&self) -> Receipt {
        Receipt {
            index: self.index,
            leaf_hash: crate::record::hex32(&self.leaf_hash),
            session_seq: self.session_seq,
            duplicate: true,
        }
    }

    /// Whether `ev`, sent by `ingested_by` to `ns`, is the event remembered
    /// here: sealed with its salt at its position, it gives its leaf. (The
    /// key already binds writer, session and id.) An erased entry matches
    /// every retry. A failure to seal counts as a different event: the
    /// request is refused rather than a retry silently taken for another.
    fn holds(&self, ev: &Prepared, ns: &str, ingested_by: &str) -> bool {
        let Some(salt) = &self.salt else {
            return true;
        };
        let pos = Position {
            ns,
            idx: self.index,
            session_seq: self.session_seq,
            received_at: self.received_at,
            ingested_by,
            prev_chain: [0; 32],
        };
        ev.is_sealed_as(salt, pos, &self.leaf_hash).unwrap_or(false)
    }
}

/// What the dedupe window says of an event.
pub(super) enum Seen {
    /// No `event_id`, or not seen within the window: append it.
    New,
    /// The same event again: the original receipt (marked duplicate).
    Duplicate(Receipt),
    /// Another event under the same key.
    Conflict,
}

/// The dedupe key of an event: its writer, session and `event_id`, each
/// length-prefixed so no two triples share an encoding.
pub(super) fn dedup_key(ingested_by: &str, session_id: &str, event_id: &str) -> Hash {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [ingested_by, session_id, event_id] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

impl Dedup {
    pub(super) fn new(cap: usize) -> Dedup {
        Dedup {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    /// Remembers the entry `e` appended under `key`.
    pub(super) fn insert(&mut self, key: Hash, e: &Entry) {
        if self.cap == 0 {
            return;
        }
        let idx = e.idx;
        while let Some(&(old_idx, old)) = self.order.front() {
            if old_idx.saturating_add(self.cap as u64) > idx {
                break;
            }
            self.order.pop_front();
            // The key may have been taken again by a newer entry since.
            // (One probe of the map: it is large, and each probe a cache miss.)
            if let std::collections::hash_map::Entry::Occupied(o) = self.map.entry(old)
                && o.get().index == old_idx
            {
                o.remove();
            }
        }
        self.order.push_back((idx, key));
        self.map.insert(
            key,
            Remembered {
                index: e.idx,
                session_seq: e.session_seq,
                received_at: e.received_at,
                leaf_hash: e.leaf_hash,
                salt: e.salt,
            },
        );
    }

    /// What the window says of `ev`, under `key`, sent by `ingested_by` to
    /// `ns`, when the next entry would be `next`. Keys of entries more than
    /// `cap` back are outside the window even if not yet evicted, so the
    /// answer is the same before and after a restart.
    pub(super) fn seen(
        &self,
        key: &Hash,
        ev: &Prepared,
        ns: &str,
        ingested_by: &str,
        next: u64,
    ) -> Seen {
        match self.map.get(key) {
            None => Seen::New,
            Some(r) if r.index.saturating_add(self.cap as u64) <= next => Seen::New,
            Some(r) if r.holds(ev, ns, ingested_by) => Seen::Duplicate(r.receipt()),
            Some(_) => Seen::Conflict,
        }
    }

    /// Forgets the salts of the entries of `erased`, as the store does: a
    /// retry can no longer be compared with their payload, only answered
    /// with the original receipt. Their keys stay.
    pub(super) fn forget_payloads(&mut self, erased: &crate::erasure::IndexRanges) {
        for r in self.map.values_mut() {
            if erased.contains(r.index) {
                r.salt = None;
            }
        }
    }

    /// Remembers a stored entry (at open, from segments and the WAL). An
    /// erased entry's payload is gone, so a retry cannot be compared with
    /// it: a retry of its `event_id` is answered with the original receipt
    /// whatever it carries (never a second entry, never a conflict that
    /// would tell the client what was erased).
    pub(super) fn absorb(&mut self, e: &Entry) {
        if let Some(id) = &e.event_id {
            let key = dedup_key(&e.ingested_by, &e.session_id, id);
            self.insert(key, e);
        }
    }
}

pub(super) fn receipt(e: &Entry) -> Receipt {
    Receipt {
        index: e.idx,
        leaf_hash: crate::record::hex32(&e.leaf_hash),
        session_seq: e.session_seq,
        duplicate: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tracevault_schemas::Event;

    fn prepared(v: serde_json::Value) -> Prepared {
        Prepared::new(Event::from_value(v).unwrap()).unwrap()
    }

    /// An attacker reusing an `event_id` with any one field changed gets a
    /// conflict, never the original's receipt; the same event, prepared with
    /// another salt as a retry is, gets the receipt.
    #[test]
    fn a_retry_must_be_the_same_event_field_for_field() {
        let base = json!({
            "session_id": "s", "kind": "tool_call", "event_id": "e1",
            "ts": "2026-12-03T10:00:00.000001Z", "name": "n", "actor": "a", "model": "m",
            "trace_id": "t", "span_id": "p", "parent_span_id": "q",
            "content": {"x": 1}, "attributes": {"k": "v"},
        });
        let pos = |idx| Position {
            ns: "ns",
            idx,
            session_seq: 4,
            received_at: 1_800_000_000_000_000,
            ingested_by: "w",
            prev_chain: [0; 32],
        };
        let original = prepared(base.clone()).seal(pos(7)).unwrap();
        let key = dedup_key("w", "s", "e1");
        let mut d = Dedup::new(100);
        d.insert(key, &original);
        let seen = |d: &Dedup, v: serde_json::Value| d.seen(&key, &prepared(v), "ns", "w", 8);
        assert!(matches!(seen(&d, base.clone()), Seen::Duplicate(r) if r.index == 7));
        // Another namespace or writer (the key would differ too) is never the same.
        assert!(matches!(
            d.seen(&key, &prepared(base.clone()), "other", "w", 8),
            Seen::Conflict
        ));
        for (field, value) in [
            ("kind", json!("tool_result")),
            ("ts", json!("2026-12-03T10:00:00.000002Z")),
            ("name", json!("n2")),
            ("actor", json!("b")),
            ("model", json!("m2")),
            ("trace_id", json!("t2")),
            ("span_id", json!("p2")),
            ("parent_span_id", json!("q2")),
            ("content", json!({"x": 2})),
            // The same characters, as text rather than JSON.
            ("content", json!("{\"x\":1}")),
            ("attributes", json!({"k": "w"})),
            ("attributes", json!({})),
        ] {
            let mut v = base.clone();
            v[field] = value;
            assert!(matches!(seen(&d, v), Seen::Conflict), "{field} changed");
        }
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove("attributes");
        assert!(matches!(seen(&d, v), Seen::Conflict), "attributes dropped");
        // Outside the window, the id is new again.
        assert!(matches!(
            d.seen(&key, &prepared(base.clone()), "ns", "w", 107),
            Seen::New
        ));
        // Once erased, any retry gets the receipt and nothing tells what it held.
        let mut erased = original.clone();
        erased.erase();
        let mut d = Dedup::new(100);
        d.insert(key, &erased);
        let mut other = base.clone();
        other["content"] = json!("anything");
        assert!(matches!(seen(&d, other), Seen::Duplicate(_)));
    }
}
