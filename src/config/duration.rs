//! Durations as written in the configuration: `"30s"`, `"500ms"`, `"5m"`, `"1h 30m"`
//! (humantime), or a bare whole number of seconds (`30`, `"30"`), as in PgBouncer.
//!
//! Owns: turning that text into a `Duration`, with an upper bound.
//! Does not: decide whether zero is allowed; `convert.rs` knows which keys mean "off".

use std::time::Duration;

/// The longest duration accepted: ten years. Longer values are surely mistakes, and the
/// cap keeps `Instant + duration` from overflowing anywhere in weir.
pub(crate) const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Why a value is not an acceptable duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurationError {
    /// Not a number of seconds nor a humantime duration.
    Syntax,
    /// Longer than `MAX`.
    TooLong,
}

/// Parses `"30s"`, `"500ms"`, `"1h 30m"` or a bare number of seconds such as `"30"`.
pub(crate) fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let duration = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can fail, and that is "too long".
        Duration::from_secs(text.parse::<u64>().map_err(|_| DurationError::TooLong)?)
    } else {
        humantime::parse_duration(text).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => DurationError::TooLong,
            _ => DurationError::Syntax,
        })?
    };
    check_max(duration)
}

/// A bare integer from TOML (`query_wait_timeout = 30`): seconds.
pub(crate) fn from_seconds(seconds: i128) -> Result<Duration, DurationError> {
    let seconds = u64::try_from(seconds).map_err(|_| {
        if seconds < 0 {
            DurationError::Syntax
        } else {
            DurationError::TooLong
        }
    })?;
    check_max(Duration::from_secs(seconds))
}

/// Rejects durations above `MAX`.
fn check_max(duration: Duration) -> Result<Duration, DurationError> {
    if duration > MAX {
        Err(DurationError::TooLong)
    } else {
        Ok(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_humantime_and_bare_seconds() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse(" 0 "), Ok(Duration::ZERO));
        assert_eq!(from_seconds(0), Ok(Duration::ZERO));
        assert_eq!(from_seconds(45), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn rejects_nonsense_negative_and_huge() {
        assert_eq!(parse(""), Err(DurationError::Syntax));
        assert_eq!(parse("thirty seconds"), Err(DurationError::Syntax));
        assert_eq!(parse("30 parsecs"), Err(DurationError::Syntax));
        assert_eq!(parse("-5s"), Err(DurationError::Syntax));
        assert_eq!(from_seconds(-1), Err(DurationError::Syntax));
        assert_eq!(parse("11y"), Err(DurationError::TooLong));
        assert_eq!(
            parse("99999999999999999999999"),
            Err(DurationError::TooLong)
        );
        assert_eq!(from_seconds(i128::MAX), Err(DurationError::TooLong));
    }
}
