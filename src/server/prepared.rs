//! Which of weir's named prepared statements a server connection holds, bounded by
//! `pool.max_prepared_statements` with least-recently-used eviction.

use std::collections::HashMap;
use std::sync::Arc;

/// The statements prepared on one server connection, by weir's server-side name.
#[derive(Debug, Default)]
pub(crate) struct PreparedSet {
    /// Name → last use (a counter, not a clock).
    names: HashMap<Arc<str>, u64>,
    /// Use counter.
    tick: u64,
}

impl PreparedSet {
    /// Whether the server has `name`; counts as a use.
    pub(crate) fn touch(&mut self, name: &str) -> bool {
        self.tick += 1;
        match self.names.get_mut(name) {
            Some(used) => {
                *used = self.tick;
                true
            }
            None => false,
        }
    }

    /// Records that `name` is being prepared. When that makes more than `max`, returns the
    /// least recently used other name, which the caller closes on the server.
    pub(crate) fn insert(&mut self, name: Arc<str>, max: usize) -> Option<Arc<str>> {
        self.tick += 1;
        self.names.insert(name.clone(), self.tick);
        if self.names.len() <= max.max(1) {
            return None;
        }
        let victim = self
            .names
            .iter()
            .filter(|(n, _)| **n != name)
            .min_by_key(|(_, used)| **used)
            .map(|(n, _)| n.clone())?;
        self.names.remove(&victim);
        Some(victim)
    }

    /// Forgets `name` (its Parse failed, or a Close was skipped after an error).
    pub(crate) fn remove(&mut self, name: &str) {
        self.names.remove(name);
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
        assert_eq!(set.insert("a".into(), 2), None);
        assert_eq!(set.insert("b".into(), 2), None);
        assert!(set.touch("a"));
        assert_eq!(set.insert("c".into(), 2).as_deref(), Some("b"));
        assert!(!set.touch("b"));
        assert_eq!(set.len(), 2);
    }
}
