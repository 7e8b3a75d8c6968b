//! The playback clock: session time offsets, a speed and idle-gap
//! compression decide which event is current after some wall time.

use std::time::Duration;

/// Playback speeds, slowest first.
pub const SPEEDS: [f64; 6] = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
/// Index of 1x in [`SPEEDS`].
pub const DEFAULT_SPEED: usize = 1;

/// The gap between event `pos` and `pos + 1` as played: never negative
/// (a writer clock that steps back plays as no wait), capped at `max_gap_us`.
pub fn played_gap_us(offsets: &[i64], pos: usize, max_gap_us: Option<i64>) -> i64 {
    match (offsets.get(pos), offsets.get(pos + 1)) {
        (Some(a), Some(b)) => {
            let gap = (b - a).max(0);
            max_gap_us.map_or(gap, |cap| gap.min(cap.max(0)))
        }
        _ => 0,
    }
}

/// Advances playback from event `pos`, with `carry_us` session microseconds
/// already played since `pos` became current, by `wall` of real time at
/// `speed`. Returns the new current event and the new carry. At the last
/// event the carry is 0.
pub fn advance(
    offsets: &[i64],
    pos: usize,
    carry_us: f64,
    wall: Duration,
    speed: f64,
    max_gap_us: Option<i64>,
) -> (usize, f64) {
    if offsets.is_empty() {
        return (0, 0.0);
    }
    let mut pos = pos.min(offsets.len() - 1);
    let mut carry = carry_us + wall.as_secs_f64() * 1e6 * speed.max(0.0);
    while pos + 1 < offsets.len() {
        let gap = played_gap_us(offsets, pos, max_gap_us) as f64;
        if carry < gap {
            return (pos, carry);
        }
        carry -= gap;
        pos += 1;
    }
    (pos, 0.0)
}

/// Total played duration of the session from `pos` to the end.
pub fn played_duration(offsets: &[i64], pos: usize, max_gap_us: Option<i64>) -> Duration {
    let total: i64 = (pos..offsets.len().saturating_sub(1))
        .map(|i| played_gap_us(offsets, i, max_gap_us))
        .sum();
    Duration::from_micros(total.max(0) as u64)
}

/// Playback state: playing or paused, speed, and progress toward the next event.
#[derive(Debug, Clone)]
pub struct Playback {
    /// Whether time advances.
    pub playing: bool,
    /// Index into [`SPEEDS`].
    pub speed_idx: usize,
    /// Largest gap between events as played, microseconds (`None`: real gaps).
    pub max_gap_us: Option<i64>,
    /// Session position the playhead is on.
    pub pos: u64,
    /// Session time played since `pos` became current, microseconds.
    pub carry_us: f64,
}

impl Playback {
    /// Paused at position 0, at 1x.
    pub fn new(max_gap: Option<Duration>) -> Self {
        Playback {
            playing: false,
            speed_idx: DEFAULT_SPEED,
            max_gap_us: max_gap.map(|d| d.as_micros().min(i64::MAX as u128) as i64),
            pos: 0,
            carry_us: 0.0,
        }
    }

    /// Current speed multiplier.
    pub fn speed(&self) -> f64 {
        SPEEDS[self.speed_idx]
    }

    /// One speed step up (saturates at 16x).
    pub fn faster(&mut self) {
        self.speed_idx = (self.speed_idx + 1).min(SPEEDS.len() - 1);
    }

    /// One speed step down (saturates at 0.5x).
    pub fn slower(&mut self) {
        self.speed_idx = self.speed_idx.saturating_sub(1);
    }

    /// Moves the playhead (a manual jump): progress toward the next event restarts.
    pub fn seek(&mut self, pos: u64) {
        self.pos = pos;
        self.carry_us = 0.0;
    }

    /// Advances by `wall` if playing; returns whether the position changed.
    pub fn tick(&mut self, offsets: &[i64], wall: Duration) -> bool {
        if !self.playing {
            return false;
        }
        let (pos, carry) = advance(
            offsets,
            self.pos as usize,
            self.carry_us,
            wall,
            self.speed(),
            self.max_gap_us,
        );
        let moved = pos as u64 != self.pos;
        self.pos = pos as u64;
        self.carry_us = carry;
        moved
    }
}

/// Speed label: `0.5x`, `2x`.
pub fn speed_label(speed: f64) -> String {
    if speed.fract() == 0.0 {
        format!("{}x", speed as u64)
    } else {
        format!("{speed}x")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn real_pace_at_1x() {
        let offsets = [0, S, 2 * S, 3 * S];
        assert_eq!(
            advance(&offsets, 0, 0.0, Duration::from_millis(999), 1.0, None).0,
            0
        );
        assert_eq!(
            advance(&offsets, 0, 0.0, Duration::from_secs(1), 1.0, None).0,
            1
        );
        let (pos, carry) = advance(&offsets, 0, 0.0, Duration::from_millis(2500), 1.0, None);
        assert_eq!(pos, 2);
        assert!((carry - 500_000.0).abs() < 1.0);
        // Stops at the last event, carry cleared.
        assert_eq!(
            advance(&offsets, 0, 0.0, Duration::from_secs(60), 1.0, None),
            (3, 0.0)
        );
    }

    #[test]
    fn idle_gaps_are_compressed() {
        // A 10 minute idle gap between events 1 and 2.
        let offsets = [0, S, S + 600 * S, 2 * S + 600 * S];
        let cap = Some(2 * S);
        assert_eq!(played_gap_us(&offsets, 1, cap), 2 * S);
        assert_eq!(played_gap_us(&offsets, 0, cap), S);
        // 1 s + 2 s (compressed) = 3 s to reach event 2.
        assert_eq!(
            advance(&offsets, 0, 0.0, Duration::from_millis(2999), 1.0, cap).0,
            1
        );
        assert_eq!(
            advance(&offsets, 0, 0.0, Duration::from_secs(3), 1.0, cap).0,
            2
        );
        // Without compression the gap plays in full.
        assert_eq!(
            advance(&offsets, 0, 0.0, Duration::from_secs(3), 1.0, None).0,
            1
        );
        assert_eq!(played_duration(&offsets, 0, cap), Duration::from_secs(4));
        assert_eq!(played_duration(&offsets, 0, None), Duration::from_secs(602));
    }

    #[test]
    fn speeds_scale_wall_time() {
        let offsets: Vec<i64> = (0..100).map(|i| i * S).collect();
        for (speed, expect) in [
            (0.5, 5),
            (1.0, 10),
            (2.0, 20),
            (4.0, 40),
            (8.0, 80),
            (16.0, 99),
        ] {
            let (pos, _) = advance(&offsets, 0, 0.0, Duration::from_secs(10), speed, None);
            assert_eq!(pos, expect, "speed {speed}");
        }
        let mut p = Playback::new(None);
        for _ in 0..10 {
            p.faster();
        }
        assert_eq!(p.speed(), 16.0);
        for _ in 0..10 {
            p.slower();
        }
        assert_eq!(p.speed(), 0.5);
        assert_eq!(speed_label(0.5), "0.5x");
        assert_eq!(speed_label(16.0), "16x");
    }

    #[test]
    fn pause_stops_time_and_carry_accumulates_across_ticks() {
        let offsets = [0, S, 2 * S];
        let mut p = Playback::new(Some(Duration::from_secs(2)));
        assert!(
            !p.tick(&offsets, Duration::from_secs(5)),
            "paused: no movement"
        );
        assert_eq!(p.pos, 0);
        p.playing = true;
        for _ in 0..9 {
            assert!(!p.tick(&offsets, Duration::from_millis(100)));
        }
        assert!(p.tick(&offsets, Duration::from_millis(100)));
        assert_eq!(p.pos, 1);
        p.playing = false;
        p.tick(&offsets, Duration::from_secs(10));
        assert_eq!(p.pos, 1);
        p.seek(0);
        assert_eq!((p.pos, p.carry_us), (0, 0.0));
    }

    #[test]
    fn clock_stepping_back_plays_as_no_wait() {
        let offsets = [0, 5 * S, 3 * S, 4 * S];
        assert_eq!(played_gap_us(&offsets, 1, None), 0);
        assert_eq!(
            advance(&offsets, 0, 0.0, Duration::from_secs(5), 1.0, None).0,
            2
        );
    }
}
