//! The registry of every (database, user) pool: creating them, replacing them on RELOAD,
//! and the totals they share with their successors.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};

use super::DbUserPool;
use crate::config::PoolSettings;
use crate::server::ServerTarget;
use crate::stats::{PoolTotals, Totals, WeakList};

/// Every (database, user) pool, created on first use.
#[derive(Debug, Default)]
pub(crate) struct PoolRegistry {
    /// Keyed by (client-facing database name, user name). Read at client login and after
    /// a reload only.
    pools: RwLock<HashMap<(String, String), Arc<DbUserPool>>>,
    /// Running totals by (database, user, host), shared by a pool and the pools that
    /// replace it, so SHOW STATS and the Prometheus counters never go backwards.
    totals: std::sync::Mutex<HashMap<(String, String, String), Arc<PoolTotals>>>,
    /// Pools replaced or removed by a reload while clients still held them: the janitor
    /// closes the connections that come back to them.
    retired: WeakList<DbUserPool>,
    /// The newest snapshot generation a reload has published, set under the `pools` write
    /// lock: a caller with an older snapshot never registers a pool.
    published: std::sync::atomic::AtomicU64,
}

/// What a pool is wanted for: the snapshot generation asking, and what the pool must be.
pub(crate) struct Want<'a> {
    /// The configuration snapshot's generation.
    pub(crate) generation: u64,
    /// Hosts and logins.
    pub(crate) targets: &'a [ServerTarget],
    /// Limits.
    pub(crate) settings: &'a PoolSettings,
}

impl PoolRegistry {
    /// The pool for (`database`, `user`) as of snapshot `want.generation`: the existing one
    /// if its targets match (taking `want.settings` if it is older), else a new one. A
    /// caller with an older snapshot than the pool's gets the pool as it is: it moves to
    /// the new snapshot at its next transaction anyway.
    pub(crate) fn pool_for(&self, database: &str, user: &str, want: &Want<'_>) -> Arc<DbUserPool> {
        let key = (database.to_owned(), user.to_owned());
        let usable = |p: &Arc<DbUserPool>| {
            if p.targets() == want.targets {
                p.adopt(want.generation, want.settings);
                true
            } else {
                p.generation() > want.generation
            }
        };
        if let Some(p) = self
            .pools
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|p| usable(p))
        {
            return p.clone();
        }
        let mut pools = self.pools.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = pools.get(&key).filter(|p| usable(p)) {
            return p.clone();
        }
        let cell = |addr: &str| self.totals_cell(database, user, addr);
        let pool = Arc::new(DbUserPool::new(
            database,
            user,
            want.targets.to_vec(),
            want.settings,
            cell,
        ));
        pool.generation.store(want.generation, Ordering::Release);
        if want.generation < self.published.load(Ordering::Acquire) {
            // A caller on a snapshot a reload has replaced: it gets a pool of its own for
            // the moment (its next transaction moves it), and the registry keeps the new
            // configuration's.
            return pool;
        }
        if let Some(old) = pools.insert(key, pool.clone()) {
            self.retire(&old);
        }
        pool
    }

    /// Records that snapshot `generation` is in force (a reload published it), before the
    /// reload looks at the pools.
    pub(crate) fn publish(&self, generation: u64) {
        let _pools = self.pools.write().unwrap_or_else(PoisonError::into_inner);
        self.published.fetch_max(generation, Ordering::AcqRel);
    }

    /// The totals cell of (`database`, `user`, `addr`), made on first use.
    fn totals_cell(&self, database: &str, user: &str, addr: &str) -> Arc<PoolTotals> {
        let key = (database.to_owned(), user.to_owned(), addr.to_owned());
        self.totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone()
    }

    /// Forgets `pool` if it is still the registered pool of its (database, user) (RELOAD
    /// changed or removed it). Its free connections close now, the others as they come
    /// back; clients still holding it move at their next transaction.
    pub(crate) fn remove(&self, pool: &Arc<DbUserPool>) {
        let key = (pool.database.clone(), pool.user.clone());
        let removed = {
            let mut pools = self.pools.write().unwrap_or_else(PoisonError::into_inner);
            match pools.get(&key) {
                Some(p) if Arc::ptr_eq(p, pool) => pools.remove(&key),
                _ => None,
            }
        };
        if let Some(old) = removed {
            self.retire(&old);
        }
    }

    /// Closes a replaced pool's free connections and keeps an eye on it for the janitor.
    fn retire(&self, old: &Arc<DbUserPool>) {
        old.close_idle();
        self.retired.add(old);
    }

    /// Closes the connections that came back to retired pools since the last call (the
    /// janitor, every second); forgets pools nobody holds any more.
    pub(crate) fn sweep_retired(&self) {
        for pool in self.retired.live() {
            pool.close_idle();
        }
    }

    /// The totals of every database since weir started, all users and hosts, including
    /// pools replaced since and hosts that went away.
    pub(crate) fn totals_by_database(&self) -> HashMap<String, Totals> {
        let mut out: HashMap<String, Totals> = HashMap::new();
        let cells = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        for ((database, _, _), cell) in cells.iter() {
            let entry = out.entry(database.clone()).or_default();
            *entry = entry.plus(cell.load());
        }
        out
    }

    /// A snapshot of all pools.
    pub(crate) fn all(&self) -> Vec<Arc<DbUserPool>> {
        self.pools
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}
