//! Counters and live state behind SHOW POOLS / SERVERS / STATS and the Prometheus metrics.
//!
//! Owns: per-host-pool totals (atomics, added once per transaction), the list of a pool's
//! server connections with their state, and the wall-clock helpers SHOW commands print.
//! Does not: decide anything. Writers are the client task and the pool; readers are the
//! admin console and the metrics refresh, which never block a writer.

mod history;

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) use history::{Rates, StatsHistory};

/// What one transaction added, counted by the client task and added to its pool at the end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Transactions (server leases) served.
    pub(crate) xacts: u64,
    /// Requests answered (each Query, and each Sync of the extended protocol).
    pub(crate) queries: u64,
    /// Bytes received from clients and passed to servers.
    pub(crate) received: u64,
    /// Bytes received from servers and passed to clients.
    pub(crate) sent: u64,
    /// Time servers were leased, in microseconds.
    pub(crate) xact_us: u64,
    /// Time between a request and its answer, in microseconds.
    pub(crate) query_us: u64,
    /// Time clients waited for a server, in microseconds.
    pub(crate) wait_us: u64,
}

impl Totals {
    /// The sum of two totals.
    pub(crate) fn plus(self, o: Totals) -> Totals {
        Self::zip(self, o, |a, b| a + b)
    }

    /// The seven figures of SHOW STATS_TOTALS, in its column order.
    pub(crate) fn parts(&self) -> [u64; 7] {
        [
            self.xacts,
            self.queries,
            self.received,
            self.sent,
            self.xact_us,
            self.query_us,
            self.wait_us,
        ]
    }

    /// What was added between `earlier` and `self` (counters only grow).
    pub(crate) fn since(self, earlier: Totals) -> Totals {
        Self::zip(self, earlier, u64::saturating_sub)
    }

    /// Totals from the seven figures in `parts` order.
    pub(crate) fn from_parts(p: [u64; 7]) -> Totals {
        let [xacts, queries, received, sent, xact_us, query_us, wait_us] = p;
        Totals {
            xacts,
            queries,
            received,
            sent,
            xact_us,
            query_us,
            wait_us,
        }
    }

    /// `f` applied figure by figure.
    fn zip(a: Totals, b: Totals, f: impl Fn(u64, u64) -> u64) -> Totals {
        let mut out = a.parts();
        for (x, y) in out.iter_mut().zip(b.parts()) {
            *x = f(*x, y);
        }
        Totals::from_parts(out)
    }
}

/// Shards of `PoolTotals`: worker threads add to different cache lines, so the clients of
/// one busy pool do not bounce one line between cores on every transaction.
const SHARDS: usize = 8;

/// Running totals of one host pool. Each client adds its transaction in one go, to the
/// shard of its worker thread; readers sum the shards.
#[derive(Debug, Default)]
pub(crate) struct PoolTotals {
    shards: [Shard; SHARDS],
}

/// One shard: the seven figures of `Totals`, on a cache line of their own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard([AtomicU64; 7]);

thread_local! {
    /// This thread's shard, chosen once per thread.
    static SHARD: usize = {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

impl PoolTotals {
    /// Adds one transaction's figures.
    pub(crate) fn add(&self, t: &Totals) {
        let shard = SHARD.with(|s| *s);
        let Some(Shard(cells)) = self.shards.get(shard) else {
            return;
        };
        for (cell, v) in cells.iter().zip(t.parts()) {
            if v > 0 {
                cell.fetch_add(v, Ordering::Relaxed);
            }
        }
    }

    /// The totals now.
    pub(crate) fn load(&self) -> Totals {
        let mut sum = [0u64; 7];
        for Shard(cells) in &self.shards {
            for (s, cell) in sum.iter_mut().zip(cells) {
                *s += cell.load(Ordering::Relaxed);
            }
        }
        Totals::from_parts(sum)
    }
}

/// What a server connection is doing, as SHOW SERVERS prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ServerState {
    /// In the pool, free.
    Idle = 0,
    /// Leased to a client.
    Active = 1,
}

/// One server connection as the admin console sees it; the connection keeps it current.
#[derive(Debug)]
pub(crate) struct ServerInfo {
    /// The backend's process id (`remote_pid`).
    pub(crate) process_id: i32,
    /// weir's local address of the connection.
    pub(crate) local: Option<std::net::SocketAddr>,
    /// When the login finished.
    pub(crate) connected: SystemTime,
    /// `ServerState` as a byte.
    state: AtomicU8,
    /// The client holding it (its process id as weir gave it), 0 when none.
    link: AtomicI32,
    /// When it was last leased, in microseconds since the Unix epoch.
    leased_at: AtomicU64,
    /// Its pool's reconnect generation at login.
    generation: AtomicU64,
    /// TLS version and cipher suite, empty without TLS (SHOW SERVERS' `tls`).
    pub(crate) tls: String,
}

impl ServerInfo {
    /// A just-logged-in server connection; `tls` as `Stream::tls_description` gives it.
    pub(crate) fn new(process_id: i32, local: Option<std::net::SocketAddr>, tls: String) -> Self {
        Self {
            process_id,
            local,
            tls,
            connected: SystemTime::now(),
            state: AtomicU8::new(ServerState::Idle as u8),
            link: AtomicI32::new(0),
            leased_at: AtomicU64::new(unix_micros(SystemTime::now())),
            generation: AtomicU64::new(0),
        }
    }

    /// Records its pool's reconnect generation (once, at login).
    pub(crate) fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    /// Its pool's reconnect generation at login.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The connection was leased to the client with process id `client` for a request
    /// that arrived at `at_wall_micros` (see `wall_micros`).
    pub(crate) fn leased(&self, client: i32, at_wall_micros: u64) {
        self.link.store(client, Ordering::Relaxed);
        self.leased_at.store(at_wall_micros, Ordering::Relaxed);
        self.state
            .store(ServerState::Active as u8, Ordering::Relaxed);
    }

    /// The connection is back in its pool.
    pub(crate) fn released(&self) {
        self.state.store(ServerState::Idle as u8, Ordering::Relaxed);
        self.link.store(0, Ordering::Relaxed);
    }

    /// Its state now.
    pub(crate) fn state(&self) -> ServerState {
        if self.state.load(Ordering::Relaxed) == ServerState::Active as u8 {
            ServerState::Active
        } else {
            ServerState::Idle
        }
    }

    /// The client holding it, if any.
    pub(crate) fn link(&self) -> Option<i32> {
        Some(self.link.load(Ordering::Relaxed)).filter(|&l| l != 0)
    }

    /// When it was last leased.
    pub(crate) fn leased_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.leased_at.load(Ordering::Relaxed))
    }
}

/// Things listed while they live: entries are weak, so one that is dropped falls out at
/// the next listing and nothing runs when it goes (the server connections of a host pool
/// for SHOW SERVERS; pools a reload retired, for the janitor).
#[derive(Debug)]
pub(crate) struct WeakList<T> {
    entries: Mutex<Vec<Weak<T>>>,
}

impl<T> Default for WeakList<T> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
        }
    }
}

impl<T> WeakList<T> {
    /// Adds one (rarely: a server login, a reload), forgetting the dead.
    pub(crate) fn add(&self, item: &Arc<T>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|w| w.strong_count() > 0);
        entries.push(Arc::downgrade(item));
    }

    /// The ones alive now.
    pub(crate) fn live(&self) -> Vec<Arc<T>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|w| w.strong_count() > 0);
        entries.iter().filter_map(Weak::upgrade).collect()
    }
}

/// Microseconds since the Unix epoch (0 for times before it).
pub(crate) fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, micros)
}

/// A duration in whole microseconds (saturating), without 128-bit arithmetic.
pub(crate) fn micros(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()))
}

/// The wall-clock time of a monotonic instant, in microseconds since the Unix epoch. The
/// transaction path reads only the monotonic clock; this turns its readings into the times
/// SHOW commands print, from one pair of readings taken at the first call.
pub(crate) fn wall_micros(at: std::time::Instant) -> u64 {
    static ORIGIN: std::sync::OnceLock<(std::time::Instant, u64)> = std::sync::OnceLock::new();
    let (instant, wall) =
        *ORIGIN.get_or_init(|| (std::time::Instant::now(), unix_micros(SystemTime::now())));
    match at.checked_duration_since(instant) {
        Some(after) => wall.saturating_add(micros(after)),
        None => wall.saturating_sub(micros(instant.duration_since(at))),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`, the way PgBouncer prints times in SHOW CLIENTS and SERVERS
/// (humantime's RFC 3339 form, respelled).
pub(crate) fn format_time(t: SystemTime) -> String {
    let rfc3339 = humantime::format_rfc3339_seconds(t).to_string();
    format!(
        "{} UTC",
        rfc3339.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_like_pgbouncer() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_083_200 + 3_723);
        assert_eq!(format_time(t), "2026-12-01 01:02:03 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_time(leap), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn totals_add_and_subtract() {
        let p = PoolTotals::default();
        let one = Totals {
            xacts: 1,
            queries: 2,
            received: 30,
            sent: 40,
            xact_us: 5,
            query_us: 4,
            wait_us: 1,
        };
        p.add(&one);
        p.add(&one);
        let two = p.load();
        assert_eq!(two, one.plus(one));
        assert_eq!(two.since(one), one);
    }
}
