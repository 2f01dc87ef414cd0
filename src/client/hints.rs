//! Cheap signs that a transaction may have changed the client's session (settings, LISTEN,
//! temporary tables, ...). A sign only asks for the probe after the transaction (see
//! `server::probe`), which finds out exactly; so a false alarm costs one round trip and a
//! miss is what must not happen. Runs on every CommandComplete and every query text:
//! byte comparisons only, no allocation.

/// CommandComplete tags of statements that can change session state.
const SESSION_TAGS: [&[u8]; 12] = [
    b"SET",
    b"RESET",
    b"LISTEN",
    b"UNLISTEN",
    b"PREPARE",
    b"DEALLOCATE",
    b"DEALLOCATE ALL",
    b"DECLARE CURSOR",
    b"CLOSE CURSOR",
    b"CLOSE CURSOR ALL",
    b"CREATE TABLE",
    b"DROP TABLE",
];

/// What a transaction's statements suggest about session state, for the probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hints {
    /// The session may have changed: probe it.
    pub(crate) session: bool,
    /// A session advisory lock may have been taken: the probe also reads `pg_locks`, which
    /// is not free on a busy server (it takes every lock-manager partition).
    pub(crate) advisory: bool,
}

impl Hints {
    /// The hints of a query text; `complete` says whether all of it was seen (what was not
    /// seen counts as everything).
    pub(crate) fn of_text(text: &[u8], complete: bool) -> Self {
        if !complete {
            return Self {
                session: true,
                advisory: true,
            };
        }
        if !text_changes_session(text) {
            return Self::default();
        }
        Self {
            session: true,
            advisory: contains_ignore_case(text, b"advisory"),
        }
    }

    /// Both hints together.
    pub(crate) fn merge(&mut self, other: Self) {
        self.session |= other.session;
        self.advisory |= other.advisory;
    }
}

/// Whether a CommandComplete tag is one of a statement that returns settings to their
/// session defaults (`RESET`, `RESET ALL`, `DISCARD ALL`).
pub(crate) fn tag_resets_settings(tag: &[u8]) -> bool {
    tag == b"RESET" || tag == b"DISCARD ALL"
}

/// Whether a CommandComplete tag (without its NUL) is one of a session-changing statement.
pub(crate) fn tag_changes_session(tag: &[u8]) -> bool {
    SESSION_TAGS.contains(&tag) || tag.starts_with(b"DISCARD")
}

/// Whether a query text (or the part of it at hand) mentions a session-changing function
/// or a temporary table: `SELECT set_config(..)`, `SELECT pg_advisory_lock(..)`, `CREATE
/// TEMP TABLE .. AS` (whose tag, `SELECT n`, says nothing). Matched without regard to case.
///
/// This runs over every query text, so it makes one vectorised pass (`memchr3`) for the
/// letters of these words that are rare in SQL, and compares a word only around those:
/// the `_` of `set_config` and of every advisory-lock function (`pg_advisory_lock`,
/// `pg_try_advisory_xact_lock`, ...), and the `m` of `temp`. Comparing at every `s`, `a`
/// or `t` cost more than the rest of the transaction's scanning.
pub(crate) fn text_changes_session(text: &[u8]) -> bool {
    let found_at = |at: usize| match text.get(at) {
        Some(b'_') => word_at(text, at, 3, b"set_config") || word_at(text, at, 0, b"_advisory"),
        Some(b'm' | b'M') => word_at(text, at, 2, b"temp") && is_temp_keyword(text, at - 2),
        _ => false,
    };
    memchr::memchr3_iter(b'_', b'm', b'M', text).any(found_at)
}

/// Whether `text` contains `word` (lower-case ASCII), in any case.
pub(crate) fn contains_ignore_case(text: &[u8], word: &[u8]) -> bool {
    let Some(&first) = word.first() else {
        return true;
    };
    memchr::memchr2_iter(first, first.to_ascii_uppercase(), text)
        .any(|at| word_at(text, at, 0, word))
}

/// Whether `word` (lower-case ASCII) is in `text`, in any case, with its letter number
/// `offset` at `at`.
fn word_at(text: &[u8], at: usize, offset: usize, word: &[u8]) -> bool {
    at.checked_sub(offset)
        .and_then(|start| text.get(start..start + word.len()))
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
}

/// Whether the `temp` at `at` is the keyword TEMP or TEMPORARY, not part of a name such as
/// `attempts` or `template` (the other words are matched inside names on purpose:
/// `pg_advisory_lock`).
fn is_temp_keyword(text: &[u8], at: usize) -> bool {
    let ident = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b >= 0x80;
    let starts_word = at == 0 || !text.get(at - 1).is_some_and(ident);
    let rest = text.get(at + 4..).unwrap_or_default();
    let ends = |n: usize| !rest.get(n).is_some_and(ident);
    let temporary = rest
        .get(..5)
        .is_some_and(|r| r.eq_ignore_ascii_case(b"orary"));
    starts_word && (ends(0) || (temporary && ends(5)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        for tag in [
            "SET",
            "RESET",
            "LISTEN",
            "DISCARD ALL",
            "DISCARD TEMP",
            "CREATE TABLE",
        ] {
            assert!(tag_changes_session(tag.as_bytes()), "{tag}");
        }
        for tag in [
            "SELECT 1",
            "INSERT 0 1",
            "UPDATE 3",
            "COMMIT",
            "BEGIN",
            "SETX",
        ] {
            assert!(!tag_changes_session(tag.as_bytes()), "{tag}");
        }
    }

    #[test]
    fn texts() {
        assert!(text_changes_session(b"select pg_advisory_lock(1)"));
        assert!(text_changes_session(b"SELECT SET_CONFIG('a', 'b', false)"));
        assert!(text_changes_session(b"CREATE TEMP TABLE t AS SELECT 1"));
        assert!(text_changes_session(b"create temporary table t (a int)"));
        assert!(!text_changes_session(
            b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"
        ));
        assert!(!text_changes_session(b"UPDATE t SET a = 1"));
        assert!(!text_changes_session(b"te"));
        // The rare letters at the very start or end of the text.
        for text in [
            "m",
            "emp",
            "v",
            "_",
            "MP",
            "dvisory",
            "_dvisory",
            "et_config",
        ] {
            assert!(!text_changes_session(text.as_bytes()), "{text}");
        }
        assert!(text_changes_session(b"TEMP TABLE x"));
        assert!(text_changes_session(b"_advisory"));
        assert!(text_changes_session(b"set_config"));
        assert!(text_changes_session(b"SELECT PG_ADVISORY_XACT_LOCK(1)"));
        assert!(text_changes_session(
            b"select pg_catalog.pg_advisory_unlock_all()"
        ));
        assert!(!text_changes_session(b"SELECT attempts FROM jobs"));
        assert!(!text_changes_session(b"SELECT * FROM template_x, temps"));
        assert!(text_changes_session(b"SELECT 1 INTO TEMP t"));
        assert!(text_changes_session(
            b"CREATE\nTEMPORARY TABLE t AS SELECT 1"
        ));
        let h = Hints::of_text(b"SELECT pg_try_ADVISORY_lock(1)", true);
        assert!(h.session && h.advisory);
        let h = Hints::of_text(b"SELECT set_config('a', 'b', true)", true);
        assert!(h.session && !h.advisory);
        assert_eq!(Hints::of_text(b"SELECT 1", true), Hints::default());
        assert!(Hints::of_text(b"SELECT 1", false).advisory);
    }
}
