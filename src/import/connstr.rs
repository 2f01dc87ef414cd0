//! Splits a PgBouncer connection string (`host=db1 port=5432 dbname='my db'`) into pairs.
//!
//! Owns: the libpq-like `key=value` syntax of `[databases]`, `[users]` and `[peers]`
//! values: spaces between pairs, values in single quotes with `''` for a quote.
//! Does not: know what the keys mean.

use super::values::unquote;

/// One `key=value` pair: the key in lower case, the value unquoted.
pub(crate) type Pair = (String, String);

/// Splits `text` into its pairs, in order. The error says what is wrong without repeating
/// the text, which may hold a password.
pub(crate) fn parse(text: &str) -> Result<Vec<Pair>, String> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let (key, after) = rest.split_at(key_end);
        if key.is_empty() {
            return Err("expected key=value, found `=` without a key".to_owned());
        }
        let after = after
            .trim_start()
            .strip_prefix('=')
            .ok_or_else(|| format!("expected `=` after {key}"))?
            .trim_start();
        let (value, after) = value(after).map_err(|problem| format!("{key}: {problem}"))?;
        pairs.push((key.to_ascii_lowercase(), value));
        rest = after.trim_start();
    }
    Ok(pairs)
}

/// One value at the start of `text`, and what follows it.
fn value(text: &str) -> Result<(String, &str), &'static str> {
    if !text.starts_with('\'') {
        let end = text.find(char::is_whitespace).unwrap_or(text.len());
        let (value, rest) = text.split_at(end);
        if value.is_empty() {
            return Err("empty value");
        }
        return Ok((value.to_owned(), rest));
    }
    let (value, after) = unquote(text, '\'').ok_or("a quoted value needs its closing '")?;
    if value.is_empty() {
        return Err("empty value");
    }
    if !(after.is_empty() || after.starts_with(char::is_whitespace)) {
        return Err("expected a space after the closing quote");
    }
    Ok((value, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn plain_pairs() {
        assert_eq!(
            pairs("host=db1 port=5433  dbname=app"),
            [p("host", "db1"), p("port", "5433"), p("dbname", "app")]
        );
        assert_eq!(pairs(""), Vec::<(String, String)>::new());
        assert_eq!(pairs("   "), Vec::<(String, String)>::new());
        assert_eq!(pairs("HOST = db1"), [p("host", "db1")]);
        assert_eq!(
            pairs("host=10.0.0.1,10.0.0.2 pool_size=50"),
            [p("host", "10.0.0.1,10.0.0.2"), p("pool_size", "50")]
        );
        // ; and # are ordinary characters here.
        assert_eq!(pairs("password=a;b#c"), [p("password", "a;b#c")]);
    }

    #[test]
    fn quoted_values() {
        assert_eq!(
            pairs("connect_query='SELECT 1' dbname=x"),
            [p("connect_query", "SELECT 1"), p("dbname", "x")]
        );
        assert_eq!(
            pairs("auth_query='SELECT usename, passwd FROM f(''x'', $1)'"),
            [p("auth_query", "SELECT usename, passwd FROM f('x', $1)")]
        );
        assert_eq!(pairs("password='it''s'"), [p("password", "it's")]);
    }

    #[test]
    fn malformed_strings_are_errors_without_the_secret() {
        for bad in [
            "host",
            "=x",
            "host=",
            "password='unterminated secret",
            "password=''",
            "password='a'b",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(!err.contains("secret"), "{bad}: {err}");
        }
    }
}
