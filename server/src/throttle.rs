//! Log lines an outsider can trigger at will (a refused checkpoint, the
//! connection cap) are written at most once per period, so that nobody can
//! fill the operator's log or bury the line that matters under copies.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Says yes at most once per `period`.
pub(crate) struct AtMostEvery {
    period: Duration,
    last: Mutex<Option<Instant>>,
}

impl AtMostEvery {
    /// A throttle that has not said yes yet.
    pub(crate) const fn new(period: Duration) -> AtMostEvery {
        AtMostEvery {
            period,
            last: Mutex::new(None),
        }
    }

    /// True the first time and then once `period` has passed since the last
    /// true (a poisoned lock says no: a missing log line is the lesser harm).
    pub(crate) fn due(&self) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        if last.is_some_and(|t| t.elapsed() < self.period) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_period() {
        let t = AtMostEvery::new(Duration::from_millis(200));
        assert!(t.due());
        assert!(!t.due());
        assert!(!t.due());
        std::thread::sleep(Duration::from_millis(250));
        assert!(t.due());
        assert!(!t.due());
    }
}
