//! Time offsets: parsing what the user types after `:` and formatting
//! offsets and timestamps for display.

/// Parses a time offset into microseconds: `90` or `90.5` (seconds),
/// `1m30s`, `2h`, `1h2m3s`, `1500ms`, `1:30` (m:s) or `1:02:03` (h:m:s).
/// Whitespace is ignored. `None` for anything else.
pub fn parse_offset(input: &str) -> Option<i64> {
    let s: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    if s.is_empty() {
        return None;
    }
    if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let (last, whole) = parts.split_last()?;
        let mut total = 0f64;
        for p in whole {
            if !p.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            total = total * 60.0 + p.parse::<f64>().ok()?;
        }
        let secs: f64 = parse_number(last)?;
        return to_us(total * 60.0 + secs);
    }
    if let Some(secs) = parse_number(&s) {
        return to_us(secs);
    }
    let mut total = 0f64;
    let mut rest = s.as_str();
    let mut seen_units = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value = parse_number(&rest[..num_len])?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * factor;
        seen_units += 1;
    }
    if seen_units == 0 {
        return None;
    }
    to_us(total)
}

fn parse_number(s: &str) -> Option<f64> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    s.parse::<f64>().ok()
}

fn to_us(secs: f64) -> Option<i64> {
    if secs.is_finite() && (0.0..1e12).contains(&secs) {
        Some((secs * 1e6).round() as i64)
    } else {
        None
    }
}

/// `+MM:SS.mmm` for spans under an hour, `+H:MM:SS` otherwise.
pub fn format_offset(us: i64, long_session: bool) -> String {
    let us = us.max(0);
    let total_ms = us / 1000;
    let ms = total_ms % 1000;
    let secs = total_ms / 1000;
    if long_session {
        format!("+{}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60)
    } else {
        format!("+{:02}:{:02}.{:03}", secs / 60, secs % 60, ms)
    }
}

/// A duration as `1h02m03s`, `4m05s` or `12.3s`.
pub fn format_duration(us: i64) -> String {
    let us = us.max(0);
    let secs = us / 1_000_000;
    if secs >= 3600 {
        format!("{}h{:02}m{:02}s", secs / 3600, (secs / 60) % 60, secs % 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", us as f64 / 1e6)
    }
}

/// A UTC timestamp as `2026-01-02 03:04:05.678Z`.
pub fn format_ts(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| format!("{us}us"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets() {
        assert_eq!(parse_offset("90"), Some(90_000_000));
        assert_eq!(parse_offset("1m30s"), Some(90_000_000));
        assert_eq!(parse_offset(" 1m 30s "), Some(90_000_000));
        assert_eq!(parse_offset("1:30"), Some(90_000_000));
        assert_eq!(parse_offset("1:02:03"), Some(3_723_000_000));
        assert_eq!(parse_offset("1h2m3s"), Some(3_723_000_000));
        assert_eq!(parse_offset("2.5"), Some(2_500_000));
        assert_eq!(parse_offset("1500ms"), Some(1_500_000));
        assert_eq!(parse_offset("2m"), Some(120_000_000));
        assert_eq!(parse_offset("0"), Some(0));
        for bad in [
            "", "abc", "1x", "m", "1:", ":30", "1:2:3:4", "-5", "1..2", "s30",
        ] {
            assert_eq!(parse_offset(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_offset(83_456_000, false), "+01:23.456");
        assert_eq!(format_offset(3_723_000_000, true), "+1:02:03");
        assert_eq!(format_duration(3_723_000_000), "1h02m03s");
        assert_eq!(format_duration(245_000_000), "4m05s");
        assert_eq!(format_duration(12_300_000), "12.3s");
        assert_eq!(format_ts(0), "1970-01-01 00:00:00.000Z");
    }
}
