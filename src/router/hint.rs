//! Routing hints in a statement's leading comments: `/* weir:primary */` and
//! `/* weir:replica */`, for what a parser cannot know. Checked before parsing.
//!
//! Owns: finding the leading comments (block comments nest, as in PostgreSQL) and reading
//! a hint from them. Does not: look past the first token that is not a comment.

use super::Route;

/// The hint among the comments that open `text`, if any. A block comment whose whole
/// body (trimmed, any case) is `weir:primary` or `weir:replica` is a hint; other comments
/// are skipped. Should both appear, the primary wins (fail closed).
pub(crate) fn leading(text: &str) -> Option<Route> {
    let mut rest = text;
    let mut found = None;
    loop {
        rest = rest.trim_start_matches(is_space);
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment
                .find(['\n', '\r'])
                .and_then(|end| comment.get(end..))
                .unwrap_or("");
        } else if rest.starts_with("/*") {
            let Some((body, after)) = split_block_comment(rest) else {
                return found; // unterminated: the parser will refuse the text
            };
            match hint_in(body) {
                Some(Route::Primary) => return Some(Route::Primary),
                Some(Route::Replica) => found = Some(Route::Replica),
                None => {}
            }
            rest = after;
        } else {
            return found;
        }
    }
}

/// PostgreSQL's whitespace between tokens: space, tab, newline, carriage return, form feed.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// The hint a comment body spells, if it spells one.
fn hint_in(body: &str) -> Option<Route> {
    let body = body.trim_matches(is_space);
    if body.eq_ignore_ascii_case("weir:primary") {
        Some(Route::Primary)
    } else if body.eq_ignore_ascii_case("weir:replica") {
        Some(Route::Replica)
    } else {
        None
    }
}

/// Splits `text`, which starts with `/*`, into the comment's body and what follows it.
/// Comments nest: `/* a /* b */ c */` is one comment. `None` if it never ends.
fn split_block_comment(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(pair) = bytes.get(i..i + 2) {
        match pair {
            b"/*" => {
                depth += 1;
                i += 2;
            }
            b"*/" => {
                depth = depth.saturating_sub(1);
                i += 2;
                if depth == 0 {
                    return Some((text.get(2..i - 2)?, text.get(i..)?));
                }
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_read_from_leading_comments_only() {
        let cases: &[(&str, Option<Route>)] = &[
            ("/* weir:replica */ SELECT 1", Some(Route::Replica)),
            ("/*weir:primary*/SELECT 1", Some(Route::Primary)),
            (
                "  \n/* WEIR:REPLICA */\nINSERT INTO t VALUES (1)",
                Some(Route::Replica),
            ),
            (
                "-- app=web\n/* weir:replica */ SELECT 1",
                Some(Route::Replica),
            ),
            (
                "/* app=web */ /* weir:replica */ SELECT 1",
                Some(Route::Replica),
            ),
            (
                "/* weir:replica */ /* weir:primary */ SELECT 1",
                Some(Route::Primary),
            ),
            ("SELECT 1 /* weir:replica */", None),
            ("SELECT /* weir:replica */ 1", None),
            ("-- weir:replica\nSELECT 1", None),
            ("/* weir:replica please */ SELECT 1", None),
            ("/* outer /* weir:replica */ */ SELECT 1", None),
            (
                "/* a /* b */ c */ /* weir:primary */ SELECT 1",
                Some(Route::Primary),
            ),
            ("/* weir:replica", None),
            ("/* weir:replica */", Some(Route::Replica)),
            ("", None),
            ("/**/ SELECT 1", None),
            ("/* é */ /* weir:replica */ SELECT 1", Some(Route::Replica)),
        ];
        for (text, want) in cases {
            assert_eq!(leading(text), *want, "{text:?}");
        }
    }
}
