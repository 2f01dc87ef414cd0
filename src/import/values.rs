//! PgBouncer's value forms read (decimal seconds, whole numbers, 0/1 switches, comma
//! lists), and weir's written back (`"30s"`, `"64MB"`).
//!
//! Owns: those conversions and their error texts. Does not: know which key takes which.

use std::time::Duration;

/// weir's longest duration (ten years); PgBouncer's "practically forever" values are cut
/// to it, which changes nothing in practice.
const MAX_SECONDS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;

/// Decimal seconds, as PgBouncer reads every timeout (`15`, `15.0`, `0.5`). Rounded to the
/// millisecond; a non-zero value never rounds down to zero (which means "off").
pub(crate) fn seconds(text: &str) -> Result<Duration, String> {
    let n: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("{text:?} is not a number of seconds (0 or more)"));
    }
    let ms = (n.min(MAX_SECONDS) * 1000.0).round();
    // In range: at most ten years of milliseconds, far below u64::MAX.
    let ms = if n > 0.0 && ms < 1.0 { 1 } else { ms as u64 };
    Ok(Duration::from_millis(ms))
}

/// A whole number, 0 or more (`+` allowed, as C's `strtol` reads it).
pub(crate) fn whole(text: &str) -> Result<u64, String> {
    let t = text.trim();
    t.strip_prefix('+')
        .unwrap_or(t)
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number (0 or more)"))
}

/// A switch: `1`/`0`, also `yes`/`no`, `on`/`off`, `true`/`false`.
pub(crate) fn switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Ok(true),
        "0" | "no" | "off" | "false" => Ok(false),
        _ => Err(format!("{text:?} is not 0 or 1")),
    }
}

/// A comma-separated list of names (`admin_users = postgres, ops`); empty items dropped,
/// double-quoted names unquoted.
pub(crate) fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .map_or_else(|| s.to_owned(), |s| s.replace("\"\"", "\""))
        })
        .collect()
}

/// A value in `quote`s at the start of `text`, with the quote doubled for one inside
/// (`'it''s'`, `"we""ird"`): the value unquoted, and the text after the closing quote.
/// `None` when `text` does not start with `quote` or the closing one is missing.
pub(crate) fn unquote(text: &str, quote: char) -> Option<(String, &str)> {
    let mut rest = text.strip_prefix(quote)?;
    let mut value = String::new();
    loop {
        let end = rest.find(quote)?;
        value.push_str(rest.get(..end)?);
        let after = rest.get(end + quote.len_utf8()..)?;
        match after.strip_prefix(quote) {
            Some(more) => {
                value.push(quote);
                rest = more;
            }
            None => return Some((value, after)),
        }
    }
}

/// A duration as weir reads it, in the largest unit that divides it exactly:
/// `"30s"`, `"2m"`, `"1h"`, `"30d"`, `"1500ms"`.
pub(crate) fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match s {
        0 => "0s".to_owned(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A size as weir reads it: `"64MB"` when a unit divides it exactly, else bytes.
pub(crate) fn size_text(bytes: usize) -> Option<String> {
    for (unit, scale) in [("GB", 1usize << 30), ("MB", 1 << 20), ("kB", 1 << 10)] {
        if bytes >= scale && bytes % scale == 0 {
            return Some(format!("{}{unit}", bytes / scale));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_as_pgbouncer_writes_them() {
        for (text, ms) in [
            ("15", 15_000),
            ("15.0", 15_000),
            ("0.5", 500),
            ("0", 0),
            (" 3600.0 ", 3_600_000),
            ("0.0001", 1),
            ("1e9", 315_360_000_000),
        ] {
            assert_eq!(seconds(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for bad in ["", "30s", "-1", "inf", "NaN", "abc"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_switches_and_lists() {
        assert_eq!(whole("20"), Ok(20));
        assert_eq!(whole("+5"), Ok(5));
        assert!(whole("-1").is_err());
        assert!(whole("2.5").is_err());
        assert_eq!(switch("1"), Ok(true));
        assert_eq!(switch("Off"), Ok(false));
        assert!(switch("2").is_err());
        assert_eq!(
            list(" postgres, ops ,,\"we\"\"ird\""),
            ["postgres", "ops", "we\"ird"]
        );
        assert!(list("").is_empty());
    }

    #[test]
    fn quoted_values_double_their_quote() {
        assert_eq!(
            unquote("'it''s' rest", '\''),
            Some(("it's".into(), " rest"))
        );
        assert_eq!(unquote(r#""we""ird"x"#, '"'), Some(("we\"ird".into(), "x")));
        assert_eq!(unquote(r#""""#, '"'), Some((String::new(), "")));
        assert_eq!(unquote(r#""""""#, '"'), Some(("\"".into(), "")));
        assert_eq!(unquote("'unterminated", '\''), None);
        assert_eq!(unquote("'ends in a doubled quote''", '\''), None);
        assert_eq!(unquote("bare", '\''), None);
    }

    #[test]
    fn weir_durations_and_sizes() {
        for (ms, text) in [
            (30_000, "30s"),
            (120_000, "2m"),
            (90_000, "90s"),
            (3_600_000, "1h"),
            (2_592_000_000, "30d"),
            (1_500, "1500ms"),
            (0, "0s"),
        ] {
            assert_eq!(duration_text(Duration::from_millis(ms)), text);
        }
        assert_eq!(size_text(64 << 20).as_deref(), Some("64MB"));
        assert_eq!(size_text(1 << 30).as_deref(), Some("1GB"));
        assert_eq!(size_text(4096).as_deref(), Some("4kB"));
        assert_eq!(size_text(1000), None);
    }
}
