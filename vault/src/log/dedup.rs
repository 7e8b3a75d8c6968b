//! The dedupe window: recent `event_id`s per writer and session, so that a
//! retried event is answered with its original receipt.

use super::*;

/// retries. The key is `(ingested_by, session_id, event_id)`, hashed: one
/// writer's ids never collide with another's, so no writer can pre-empt (and
/// so suppress) another's event by posting its id first. Each key keeps the
/// original receipt and the fingerprint of the event
/// ([`Entry::event_fingerprint`]): a retry must carry the same event, and
/// the same key with a different event is a conflict, never a silent
/// duplicate.
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

/// What the window keeps of an entry: its receipt in 80 bytes (a
/// million keys are about 150 MB with the map's own overhead).
pub(super) struct Remembered {
    index: u64,
    session_seq: u64,
    leaf_hash: Hash,
    fingerprint: Hash,
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
    pub(super) fn insert(&mut self, key: Hash, e: &Entry, fingerprint: Hash) {
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
            if self.map.get(&old).is_some_and(|r| r.index == old_idx) {
                self.map.remove(&old);
            }
        }
        self.order.push_back((idx, key));
        self.map.insert(
            key,
            Remembered {
                index: e.idx,
                session_seq: e.session_seq,
                leaf_hash: e.leaf_hash,
                fingerprint,
            },
        );
    }

    /// What the window says of an event with `key` and `fingerprint`
    /// when the next entry would be `next`. Keys of entries more than
    /// `cap` back are outside the window even if not yet evicted, so the
    /// answer is the same before and after a restart.
    pub(super) fn seen(&self, key: &Hash, fingerprint: &Hash, next: u64) -> Seen {
        match self.map.get(key) {
            None => Seen::New,
            Some(r) if r.index.saturating_add(self.cap as u64) <= next => Seen::New,
            Some(r) if &r.fingerprint == fingerprint || r.fingerprint == ERASED => {
                Seen::Duplicate(r.receipt())
            }
            Some(_) => Seen::Conflict,
        }
    }

    /// Forgets the fingerprints of the entries of `erased`: an unsalted
    /// hash of the payload must not outlive the payload in memory either.
    /// Their keys stay (a retry still gets the original receipt).
    pub(super) fn forget_payloads(&mut self, erased: &crate::erasure::IndexRanges) {
        for r in self.map.values_mut() {
            if erased.contains(r.index) {
                r.fingerprint = ERASED;
            }
        }
    }

    /// Remembers a stored entry (at open, from segments and the WAL). An
    /// erased entry's payload is gone, so its fingerprint cannot be
    /// rebuilt: a retry of its `event_id` is answered with the original
    /// receipt whatever it carries (never a second entry, never a conflict
    /// that would tell the client what was erased).
    pub(super) fn absorb(&mut self, e: &Entry) {
        if let Some(id) = &e.event_id {
            let key = dedup_key(&e.ingested_by, &e.session_id, id);
            let fingerprint = if e.is_erased() {
                ERASED
            } else {
                e.event_fingerprint()
            };
            self.insert(key, e, fingerprint);
        }
    }
}

/// The fingerprint recorded for an erased entry (see [`Dedup::absorb`]).
const ERASED: Hash = [0xff; 32];

pub(super) fn receipt(e: &Entry) -> Receipt {
    Receipt {
        index: e.idx,
        leaf_hash: crate::record::hex32(&e.leaf_hash),
        session_seq: e.session_seq,
        duplicate: false,
    }
}
