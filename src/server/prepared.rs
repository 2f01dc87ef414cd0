//! Which of weir's named prepared statements a server connection holds, bounded by
//! `pool.max_prepared_statements` with least-recently-used eviction, and how fresh each is.
//!
//! Freshness is told by ticks of one process-wide counter (`tick`). A statement a server
//! holds is stamped with a tick taken before weir sent its Parse, so it was analysed
//! after that tick. A client's statement is stamped with a tick taken when its Parse was
//! answered, so it was analysed before. A held statement with a later stamp than the
//! client's has seen every schema change the client's Parse saw, and can serve it.
//!
//! Replacing a copy (Close, then Parse) leaves the portals made from it alone: PostgreSQL
//! keeps a portal's plan when its statement is closed (`tests/prepared_statements.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The next tick of the freshness counter.
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
    /// A `tick` taken before its Parse was sent; `None` when not known (the copy may even
    /// be gone).
    since: Option<u64>,
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
    /// sent at tick `sent` and answered at tick `answered` (`None` while unanswered: then
    /// only the copy that Parse made will do). Counts as a use.
    pub(crate) fn touch(&mut self, name: &str, sent: u64, answered: Option<u64>) -> Held {
        self.uses += 1;
        match self.names.get_mut(name) {
            Some(e) => {
                e.used = self.uses;
                let fresh = |at: u64| at == sent || answered.is_some_and(|a| at >= a);
                if e.since.is_some_and(fresh) {
                    Held::Fresh
                } else {
                    Held::Stale
                }
            }
            None => Held::Missing,
        }
    }

    /// Whether the server has `name` at all (or may have: see `mark_unknown`).
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// Records that `name` is being prepared, with the tick `since` taken before its Parse
    /// is sent.
    pub(crate) fn insert(&mut self, name: Arc<str>, since: u64) {
        self.uses += 1;
        let entry = Entry {
            used: self.uses,
            since: Some(since),
        };
        self.names.insert(name, entry);
    }

    /// While more than `max` are held, the least recently used one other than `keep`,
    /// forgotten here: the caller closes it on the server. (Names whose Close was skipped
    /// come back through `mark_unknown`, so the set can be over by more than one.)
    pub(crate) fn evict(&mut self, keep: &str, max: usize) -> Option<Arc<str>> {
        if self.names.len() <= max.max(1) {
            return None;
        }
        let victim = self
            .names
            .iter()
            .filter(|(n, _)| &***n != keep)
            .min_by_key(|(_, e)| e.used)
            .map(|(n, _)| n.clone())?;
        self.names.remove(&victim);
        Some(victim)
    }

    /// A Parse or Close of `name` was skipped or failed: whether the server holds it is
    /// not known. It is kept as held but never fresh, so its next use closes it (a Close
    /// of a missing name is no error) and prepares it again.
    pub(crate) fn mark_unknown(&mut self, name: Arc<str>) {
        self.uses += 1;
        let used = self.uses;
        self.names
            .entry(name)
            .and_modify(|e| e.since = None)
            .or_insert(Entry { used, since: None });
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
        set.insert("a".into(), 1);
        set.insert("b".into(), 2);
        assert_eq!(set.evict("b", 2), None);
        assert_eq!(set.touch("a", 7, Some(9)), Held::Stale);
        set.insert("c".into(), 4);
        assert_eq!(set.evict("c", 2).as_deref(), Some("b"));
        assert_eq!(set.evict("c", 2), None);
        assert_eq!(set.touch("b", 2, Some(3)), Held::Missing);
        assert_eq!(set.len(), 2);
        // Over the limit by more than one (names whose Close was skipped come back): each
        // call takes one more.
        set.mark_unknown("d".into());
        set.mark_unknown("e".into());
        assert!(set.evict("c", 2).is_some());
        assert!(set.evict("c", 2).is_some());
        assert_eq!(set.evict("c", 2), None);
    }

    #[test]
    fn freshness_follows_the_ticks() {
        let mut set = PreparedSet::default();
        set.insert("s".into(), 10);
        // The client's own Parse (sent at 10): fresh, answered or not.
        assert_eq!(set.touch("s", 10, None), Held::Fresh);
        assert_eq!(set.touch("s", 10, Some(12)), Held::Fresh);
        // Another client's Parse answered before this one was sent: fresh.
        assert_eq!(set.touch("s", 7, Some(9)), Held::Fresh);
        // Answered after it was sent: maybe analysed later than this copy.
        assert_eq!(set.touch("s", 11, Some(13)), Held::Stale);
        set.mark_unknown("s".into());
        assert_eq!(set.touch("s", 10, Some(12)), Held::Stale);
        set.mark_unknown("t".into());
        assert!(set.contains("t"));
    }
}
