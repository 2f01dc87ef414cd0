//! A bounded memo of classifications keyed by statement text, so a statement is parsed
//! once and `pgbench`-style load does not pay sqlparser per query.
//!
//! Owns: two generations of entries (a cheap approximation of least-recently-used).
//! Does not: lock. It takes `&mut self`: the intended owner is one worker thread (a
//! `thread_local!`, as `net` keeps its spare buffers) or one session; nothing shares it
//! behind a lock on the hot path.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{classify, Class, WriteFunctions};

/// Entries held at most by [`ClassCache::default`]: two generations of 1024.
pub const DEFAULT_ENTRIES: usize = 2048;
/// Longest text [`ClassCache::default`] holds, in bytes. Longer statements (bulk
/// `INSERT ... VALUES` lists, mostly) are classified every time instead.
pub const DEFAULT_MAX_TEXT: usize = 8 * 1024;

/// Classifications by statement text, bounded in entries and in bytes per entry.
///
/// Keys are the text (with numeric literals folded, see `key`), not a hash of it: a
/// collision must never hand a write the class of a read. When the young generation fills, it becomes the old one and the old
/// one is dropped; a hit in the old generation moves the entry back to the young one. So
/// statements in use stay, and memory stays under `entries * max_text` bytes of text.
#[derive(Debug)]
pub struct ClassCache {
    /// Entries added or used since the last turnover; looked up first.
    young: HashMap<Box<str>, Class>,
    /// The generation before; dropped at the next turnover unless used again.
    old: HashMap<Box<str>, Class>,
    /// Entries per generation; 0 turns caching off.
    per_generation: usize,
    /// Texts longer than this (bytes) are not held.
    max_text: usize,
    /// The list the held classes were computed with; another list empties the cache.
    functions: WriteFunctions,
    /// Lookups answered from the cache since the last `take_counts`.
    hits: u64,
    /// Lookups that had to parse since the last `take_counts`.
    misses: u64,
}

impl Default for ClassCache {
    fn default() -> Self {
        Self::new(DEFAULT_ENTRIES, DEFAULT_MAX_TEXT)
    }
}

impl ClassCache {
    /// A cache holding at most `entries` classifications (fewer than 2 turns it off), of
    /// texts up to `max_text` bytes.
    #[must_use]
    pub fn new(entries: usize, max_text: usize) -> Self {
        Self {
            young: HashMap::new(),
            old: HashMap::new(),
            per_generation: entries / 2,
            max_text,
            functions: WriteFunctions::builtin(),
            hits: 0,
            misses: 0,
        }
    }

    /// Hits and misses since they were last taken, once there are at least `batch` of
    /// them (then they start again from zero), for the owner to report.
    pub fn take_counts(&mut self, batch: u64) -> Option<(u64, u64)> {
        if self.hits + self.misses < batch {
            return None;
        }
        Some((
            std::mem::take(&mut self.hits),
            std::mem::take(&mut self.misses),
        ))
    }

    /// The class of `text` under `functions`: from the cache, or by [`classify`] (and
    /// then held). Passing a list other than last time's empties the cache first, so a
    /// reload that adds a write function is never answered from before it.
    pub fn classify(&mut self, text: &str, functions: &WriteFunctions) -> Class {
        if self.functions != *functions {
            self.young.clear();
            self.old.clear();
            self.functions = functions.clone();
        }
        let key = key(text);
        if let Some(class) = self.young.get(key.as_ref()) {
            self.hits += 1;
            return *class;
        }
        if let Some((key, class)) = self.old.remove_entry(key.as_ref()) {
            self.hits += 1;
            self.hold(key, class);
            return class;
        }
        self.misses += 1;
        let class = classify(text, functions);
        if text.len() <= self.max_text {
            self.hold(key.into(), class);
        }
        class
    }

    /// How many classifications are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// Whether nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts an entry in the young generation, turning generations over when it is full.
    fn hold(&mut self, key: Box<str>, class: Class) {
        if self.per_generation == 0 {
            return;
        }
        if self.young.len() >= self.per_generation {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, class);
    }
}

/// The key a text is held under. Each run of digits that stands alone (not part of an
/// identifier or a `$n` parameter) becomes one `0`, so `... WHERE aid = 17` and `... WHERE
/// aid = 42` (the simple protocol's literals, as pgbench sends them) share one entry.
///
/// Such digits are numeric literals, or sit inside string literals or comments: none
/// can change whether a statement writes (a function's name is an identifier, and
/// `standard_conforming_strings = off`, where string boundaries move, never reaches the
/// router). The one place standalone digits name something is a quoted identifier
/// (`"1st"`), so a text with a double quote is held as it is.
fn key(text: &str) -> Cow<'_, str> {
    if text.contains('"') || !text.bytes().any(|b| b.is_ascii_digit()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut prev = ' ';
    let mut in_run = false;
    for c in text.chars() {
        // PostgreSQL (and sqlparser) take any non-ASCII character as part of a name.
        let in_name =
            prev.is_ascii_alphanumeric() || !prev.is_ascii() || prev == '_' || prev == '$';
        if c.is_ascii_digit() && (in_run || !in_name) {
            if !in_run {
                out.push('0');
                in_run = true;
            }
        } else {
            in_run = false;
            out.push(c);
        }
        prev = c;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_it_classified() {
        let f = WriteFunctions::builtin();
        let mut cache = ClassCache::default();
        assert_eq!(cache.classify("SELECT 1", &f), Class::Read);
        assert_eq!(cache.classify("SELECT 1", &f), Class::Read);
        assert_eq!(cache.classify("DELETE FROM t", &f), Class::Write);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn stays_bounded_and_keeps_what_is_used() {
        let f = WriteFunctions::builtin();
        let mut cache = ClassCache::new(4, DEFAULT_MAX_TEXT);
        for i in 0..100 {
            let _ = cache.classify("SELECT 0", &f); // used all along
            let _ = cache.classify(&format!("SELECT {i}"), &f);
            assert!(cache.len() <= 4);
        }
        assert!(cache.young.contains_key("SELECT 0") || cache.old.contains_key("SELECT 0"));
    }

    #[test]
    fn literals_share_an_entry_identifiers_do_not() {
        assert_eq!(
            key("SELECT a FROM t WHERE aid = 1234;"),
            "SELECT a FROM t WHERE aid = 0;"
        );
        assert_eq!(
            key("SELECT 1.5, '42', $1, t2.c3, x_9"),
            "SELECT 0.0, '0', $1, t2.c3, x_9"
        );
        assert_eq!(key("SELECT \"1\"()"), "SELECT \"1\"()");
        assert_eq!(key("SELECT f€1(), é2"), "SELECT f€1(), é2");
        let audit = WriteFunctions::new(["f€1"], Vec::<String>::new());
        let mut cache = ClassCache::default();
        assert_eq!(cache.classify("SELECT f€2()", &audit), Class::Read);
        assert_eq!(cache.classify("SELECT f€1()", &audit), Class::Write);
        let f = WriteFunctions::builtin();
        let mut cache = ClassCache::default();
        for aid in [1, 22, 333] {
            let text = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid}");
            assert_eq!(cache.classify(&text, &f), Class::Read);
        }
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.classify("SELECT nextval('s1')", &f), Class::Write);
        assert_eq!(cache.classify("SELECT nextval('s2')", &f), Class::Write);
    }

    #[test]
    fn long_texts_are_not_held() {
        let f = WriteFunctions::builtin();
        let mut cache = ClassCache::new(16, 10);
        assert_eq!(cache.classify("SELECT 1, 2, 3, 4", &f), Class::Read);
        assert!(cache.is_empty());
    }

    #[test]
    fn zero_entries_turns_caching_off() {
        let f = WriteFunctions::builtin();
        let mut cache = ClassCache::new(0, DEFAULT_MAX_TEXT);
        assert_eq!(cache.classify("SELECT 1", &f), Class::Read);
        assert!(cache.is_empty());
    }

    #[test]
    fn another_function_list_empties_the_cache() {
        let builtin = WriteFunctions::builtin();
        let mut cache = ClassCache::default();
        assert_eq!(cache.classify("SELECT audit()", &builtin), Class::Read);
        let more = WriteFunctions::new(["audit"], Vec::<String>::new());
        assert_eq!(cache.classify("SELECT audit()", &more), Class::Write);
        assert_eq!(cache.len(), 1);
    }
}
