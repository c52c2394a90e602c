//! Durations as users write them: `10s`, `500 ms`, `5 minutes`, `1 hour 30 minutes`,
//! and the `INTERVAL '10' MINUTE` form of SQL.

use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDuration;

/// Parses a sum of `<number><unit>` terms; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    let text = text.trim();
    if text.is_empty() {
        return Err(BadDuration);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(BadDuration);
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| BadDuration)?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let unit_secs = if unit.is_empty() { 1.0 } else { unit_seconds(unit).ok_or(BadDuration)? };
        // Too large for a Duration (e.g. '99999999999999999999 days') is bad input, not a panic.
        let term = Duration::try_from_secs_f64(number * unit_secs).map_err(|_| BadDuration)?;
        total = total.checked_add(term).ok_or(BadDuration)?;
    }
    Ok(total)
}

/// Seconds in one `unit` (`ms`, `s`, `sec`, `second(s)`, `m`, `min`, `minute(s)`, `h`, `hour(s)`, `d`, `day(s)`).
pub fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "us" | "microsecond" | "microseconds" => 1e-6,
        "ms" | "millisecond" | "milliseconds" => 1e-3,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        "w" | "week" | "weeks" => 7.0 * 86400.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_spellings() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5 minutes"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1 hour 30 minutes"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("ten"), Err(BadDuration));
        assert_eq!(parse_duration("5 fortnights"), Err(BadDuration));
    }

    #[test]
    fn too_large_is_an_error() {
        // Found by fuzzing (fuzz/README.md): these used to panic in Duration::from_secs_f64 or `+=`.
        assert_eq!(parse_duration("10 1111111111111111111111111111111111"), Err(BadDuration));
        assert_eq!(parse_duration("99999999999999999999 days"), Err(BadDuration));
        assert_eq!(parse_duration(&format!("1{}", "0".repeat(400))), Err(BadDuration));
        assert_eq!(parse_duration("10000000000000000000s 10000000000000000000s"), Err(BadDuration));
        assert_eq!(parse_duration("10000000000000000000s"), Ok(Duration::from_secs(10_000_000_000_000_000_000)));
    }
}
