//! Per-token rate limits: a token bucket per token (issuer and `jti`:
//! `auth::budget_key`), counted in events for writers and in requests for
//! the reads recorded in `_audit`. A request may take the bucket into debt
//! (a large batch is never refused outright for being larger than the
//! burst); the next requests then wait until the debt is repaid. Over the
//! limit → 429 with a `Retry-After` saying when to come back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::ApiError;

/// 429 `rate_limited` with a `Retry-After` of `wait` (rounded up to whole
/// seconds); `what` names the limit (`write`, `read`).
pub(crate) fn rate_limited(wait: Duration, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "this token is over its {what} rate limit; retry in {} ms",
            wait.as_millis()
        ),
    )
    .retry_after(wait.as_secs_f64().ceil() as u64)
}

/// Buckets kept before idle (full) ones are dropped.
const PRUNE_AT: usize = 10_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `rate` events per second with bursts of `burst`; a rate of 0 disables limiting.
    pub fn new(rate: u64, burst: u64) -> RateLimiter {
        RateLimiter {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` events from `key`'s bucket, or says how long to wait.
    /// `n = 0` only asks whether the bucket is out of debt.
    pub fn take(&self, key: &str, n: u64) -> Result<(), Duration> {
        self.take_at(key, n, Instant::now())
    }

    fn take_at(&self, key: &str, n: u64, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let Ok(mut map) = self.buckets.lock() else {
            // A poisoned lock means a panic elsewhere; fail closed.
            return Err(Duration::from_secs(1));
        };
        if map.len() >= PRUNE_AT && !map.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
        b.at = now;
        if b.tokens <= 0.0 {
            return Err(Duration::from_secs_f64(-b.tokens / self.rate + 0.001));
        }
        b.tokens -= n as f64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_debt_then_refill() {
        let l = RateLimiter::new(100, 200);
        let t0 = Instant::now();
        assert!(l.take_at("a", 150, t0).is_ok());
        // 50 left: a batch larger than that still passes, into debt.
        assert!(l.take_at("a", 250, t0).is_ok());
        // 200 in debt: refused for about 2 s.
        let wait = l.take_at("a", 1, t0).unwrap_err();
        assert!(wait > Duration::from_millis(1900) && wait < Duration::from_millis(2100));
        // Other tokens are unaffected.
        assert!(l.take_at("b", 1, t0).is_ok());
        // After the debt is repaid, writes pass again.
        assert!(l.take_at("a", 1, t0 + Duration::from_millis(2100)).is_ok());
    }

    /// The check a request makes before decoding (`n = 0`) costs nothing: a
    /// token with one event of budget left writes one event, not zero.
    #[test]
    fn asking_costs_nothing() {
        let l = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        assert!(l.take_at("a", 0, t0).is_ok());
        assert!(l.take_at("a", 0, t0).is_ok());
        assert!(l.take_at("a", 1, t0).is_ok());
        // Now spent: even asking is refused until it refills.
        assert!(l.take_at("a", 0, t0).is_err());
        assert!(l.take_at("a", 0, t0 + Duration::from_millis(1100)).is_ok());
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let l = RateLimiter::new(0, 0);
        for _ in 0..1000 {
            assert!(l.take("a", 1_000_000).is_ok());
        }
    }
}
