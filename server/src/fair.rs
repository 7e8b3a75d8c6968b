//! Per-token fairness for scarce slots (session streams, SQL queries): one
//! token may hold at most a set share of them, so a single reader or writer
//! cannot take every slot and lock the others out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts the slots each token holds, up to `per_key` each.
#[derive(Debug)]
pub struct PerKeySlots {
    per_key: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// One slot held by a token; released when dropped.
#[derive(Debug)]
pub struct KeySlot {
    key: String,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl PerKeySlots {
    /// At most `per_key` slots per key (0 means 1).
    pub fn new(per_key: usize) -> PerKeySlots {
        PerKeySlots {
            per_key: per_key.max(1),
            held: Arc::default(),
        }
    }

    /// The most one key may hold.
    pub fn per_key(&self) -> usize {
        self.per_key
    }

    /// A slot for `key`, or `None` when it already holds `per_key`. A
    /// poisoned lock refuses (fail closed).
    pub fn try_take(&self, key: &str) -> Option<KeySlot> {
        let mut held = self.held.lock().ok()?;
        let n = held.entry(key.to_string()).or_insert(0);
        if *n >= self.per_key {
            return None;
        }
        *n += 1;
        Some(KeySlot {
            key: key.to_string(),
            held: self.held.clone(),
        })
    }
}

impl Drop for KeySlot {
    fn drop(&mut self) {
        if let Ok(mut held) = self.held.lock()
            && let Some(n) = held.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_its_share_and_gets_it_back() {
        let slots = PerKeySlots::new(2);
        let a1 = slots.try_take("a").unwrap();
        let _a2 = slots.try_take("a").unwrap();
        assert!(slots.try_take("a").is_none());
        // Another key is not affected.
        let _b = slots.try_take("b").unwrap();
        drop(a1);
        assert!(slots.try_take("a").is_some());
        assert!(slots.held.lock().unwrap().len() <= 2);
    }
}
