//! Which of weir's named prepared statements a server connection holds, bounded by
//! `pool.max_prepared_statements` with least-recently-used eviction, and how fresh each is.
//!
//! Freshness is told by ticks of one process-wide counter (`tick`). A statement a server
//! holds is stamped with a tick taken before weir sent its Parse, so it was analysed
//! after that tick. A client's statement is stamped with a tick taken when its Parse was
//! answered, so it was analysed before. A held statement with a later stamp than the
//! client's has seen every schema change the client's Parse saw, and can serve it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The next tick of the freshness counter (never 0, which stands for "unknown").
pub(crate) fn tick() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A server's copy of a statement, as the client needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// Not on the server.
    Missing,
    /// On the server, but perhaps analysed before the client's Parse: a schema change in
    /// between would make it fail with `0A000` ("cached plan must not change result type")
    /// where PostgreSQL would have run the client's own. Replace it before use.
    Stale,
    /// On the server and analysed after the client's Parse (or it is the client's Parse).
    Fresh,
}

/// One held statement.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Last use (a counter of this set, not a clock).
    used: u64,
    /// A `tick` taken before its Parse was sent; 0 when not known (it may even be gone).
    since: u64,
}

/// The statements prepared on one server connection, by weir's server-side name.
#[derive(Debug, Default)]
pub(crate) struct PreparedSet {
    /// Name → use and freshness.
    names: HashMap<Arc<str>, Entry>,
    /// Use counter.
    uses: u64,
}

impl PreparedSet {
    /// Whether the server has `name` fresh enough for a client's statement whose Parse was
    /// sent at tick `sent` and answered at tick `answered` (`u64::MAX` while unanswered).
    /// Counts as a use.
    pub(crate) fn touch(&mut self, name: &str, sent: u64, answered: u64) -> Held {
        self.uses += 1;
        match self.names.get_mut(name) {
            Some(e) => {
                e.used = self.uses;
                if e.since != 0 && (e.since == sent || e.since >= answered) {
                    Held::Fresh
                } else {
                    Held::Stale
                }
            }
            None => Held::Missing,
        }
    }

    /// Whether the server has `name` at all (or may have: see `forget`).
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Records that `name` is being prepared, with the tick `since` taken before its Parse
    /// is sent. When that makes more than `max`, returns the least recently used other
    /// name, which the caller closes on the server.
    pub(crate) fn insert(&mut self, name: Arc<str>, since: u64, max: usize) -> Option<Arc<str>> {
        self.uses += 1;
        let entry = Entry {
            used: self.uses,
            since,
        };
        let added = self.names.insert(name.clone(), entry).is_none();
        if !added || self.names.len() <= max.max(1) {
            return None;
        }
        let victim = self
            .names
            .iter()
            .filter(|(n, _)| **n != name)
            .min_by_key(|(_, e)| e.used)
            .map(|(n, _)| n.clone())?;
        self.names.remove(&victim);
        Some(victim)
    }

    /// A Parse or Close of `name` was skipped or failed: whether the server holds it is
    /// not known. It is kept as held but never fresh, so its next use closes it (a Close
    /// of a missing name is no error) and prepares it again.
    pub(crate) fn forget(&mut self, name: Arc<str>) {
        self.uses += 1;
        let used = self.uses;
        self.names
            .entry(name)
            .and_modify(|e| e.since = 0)
            .or_insert(Entry { used, since: 0 });
    }

    /// Forgets everything (DEALLOCATE ALL / DISCARD ALL ran on the server).
    pub(crate) fn clear(&mut self) {
        self.names.clear();
    }

    /// How many statements the server holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut set = PreparedSet::default();
        assert_eq!(set.insert("a".into(), 1, 2), None);
        assert_eq!(set.insert("b".into(), 2, 2), None);
        assert_eq!(set.touch("a", 7, 9), Held::Stale);
        assert_eq!(set.insert("c".into(), 4, 2).as_deref(), Some("b"));
        assert_eq!(set.touch("b", 2, 3), Held::Missing);
        assert_eq!(set.len(), 2);
        // Replacing a held name evicts nothing.
        assert_eq!(set.insert("c".into(), 5, 2), None);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn freshness_follows_the_ticks() {
        let mut set = PreparedSet::default();
        let _ = set.insert("s".into(), 10, 5);
        // The client's own Parse (sent at 10): fresh, answered or not.
        assert_eq!(set.touch("s", 10, u64::MAX), Held::Fresh);
        assert_eq!(set.touch("s", 10, 12), Held::Fresh);
        // Another client's Parse answered before this one was sent: fresh.
        assert_eq!(set.touch("s", 7, 9), Held::Fresh);
        // Answered after it was sent: maybe analysed later than this copy.
        assert_eq!(set.touch("s", 11, 13), Held::Stale);
        set.forget("s".into());
        assert_eq!(set.touch("s", 10, 12), Held::Stale);
        set.forget("t".into());
        assert!(set.contains("t"));
    }
}
