//! Durations as CoreDNS's `min-lease-ttl`/`max-lease-ttl` take them: a plain number is seconds,
//! anything else a Go duration (`90s`, `5m`, `2h30m`, `1.5h`); negative values are errors.

use std::time::Duration;

/// Parses `text`.
///
/// # Errors
/// A message saying what was expected.
pub fn parse(text: &str) -> Result<Duration, String> {
    let expected =
        || format!("{text:?}: expected seconds (e.g. 30) or a duration such as 90s, 5m, 2h30m");
    let text = text.trim();
    if text.is_empty() || text.starts_with('-') {
        return Err(expected());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(expected)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| expected())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(expected()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| expected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_go_durations() {
        assert_eq!(parse("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("2h30m").unwrap(), Duration::from_secs(9000));
        assert_eq!(parse("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        for bad in ["-5s", "", "5x", "h", "1..2s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
