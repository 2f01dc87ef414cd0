//! How many clients each user and each database has, for their `max_client_conn`, and
//! how many failed logins each client address had lately, for `auth.failure_delay`.
//!
//! Owns: the counts, the guard that holds one client's place until it leaves, and the
//! failed logins per address (`Failures`). They live in `Shared`, so a RELOAD that
//! changes a limit counts the clients already in.
//! Does not: count all clients (`Shared::clients` does, for `pool.max_client_conn`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A first failure older than this starts the count again.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Addresses tracked at most; past it, those without a failure in the window go, then
/// the one whose window started first.
const MAX_ADDRESSES: usize = 10_000;

/// One address's failures.
#[derive(Debug, Clone, Copy)]
struct Strikes {
    /// Failed logins since `since`.
    count: u32,
    /// When the first of them was.
    since: Instant,
}

/// Failed logins by client address (IPv6 by /64, the block one host usually has), within
/// a minute of the first.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    /// By address.
    by_addr: Mutex<HashMap<IpAddr, Strikes>>,
}

impl Failures {
    /// Counts a failed login from `addr`; returns how many it has had within a minute of
    /// the first, this one included.
    pub(crate) fn record(&self, addr: IpAddr) -> u32 {
        let addr = match addr {
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::from([a, b, c, d, 0, 0, 0, 0])
            }
            v4 => v4,
        };
        let now = Instant::now();
        let fresh = |s: &Strikes| now.duration_since(s.since) < FAILURE_WINDOW;
        let mut by_addr = self.by_addr.lock().unwrap_or_else(PoisonError::into_inner);
        if by_addr.len() >= MAX_ADDRESSES && !by_addr.contains_key(&addr) {
            by_addr.retain(|_, s| fresh(s));
            if by_addr.len() >= MAX_ADDRESSES {
                let oldest = by_addr.iter().min_by_key(|(_, s)| s.since).map(|(a, _)| *a);
                if let Some(oldest) = oldest {
                    by_addr.remove(&oldest);
                }
            }
        }
        let strikes = by_addr.entry(addr).or_insert(Strikes {
            count: 0,
            since: now,
        });
        if !fresh(strikes) {
            *strikes = Strikes {
                count: 0,
                since: now,
            };
        }
        strikes.count = strikes.count.saturating_add(1);
        strikes.count
    }
}

/// What a limit is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// A `[[users]]` entry.
    User,
    /// A `[[databases]]` entry.
    Database,
}

impl Scope {
    /// As PostgreSQL names it in the same error ("too many connections for role").
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Self::User => "role",
            Self::Database => "database",
        }
    }
}

/// Connected clients per user and per database (only where a limit was ever set or a
/// client of that name is counted).
#[derive(Debug, Default)]
pub(crate) struct ClientLimits {
    /// Clients connected, by user or database name; an entry goes when its count is 0.
    counts: Mutex<HashMap<(Scope, String), u32>>,
}

/// A limit that was reached: what, and the limit.
#[derive(Debug, Clone)]
pub(crate) struct LimitReached {
    /// User or database.
    pub(crate) scope: Scope,
    /// Its name.
    pub(crate) name: String,
    /// Its `max_client_conn`.
    pub(crate) max: u32,
}

/// One client's places, given back when it leaves.
#[derive(Debug)]
#[must_use = "dropping it gives the client's places back at once"]
pub(crate) struct Admitted {
    /// Where the places are counted.
    limits: Arc<ClientLimits>,
    /// The counts it holds a place in.
    held: Vec<(Scope, String)>,
}

impl ClientLimits {
    /// Admits one client of `user` to `database` if neither has its `max_client_conn`
    /// already; a limit of `None` is no limit (the client is still counted, so a limit
    /// set by a later RELOAD sees it).
    pub(crate) fn admit(
        self: &Arc<Self>,
        wanted: [(Scope, &str, Option<NonZeroU32>); 2],
    ) -> Result<Admitted, LimitReached> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for (scope, name, max) in wanted {
            let Some(max) = max else { continue };
            let now = counts.get(&(scope, name.to_owned())).copied().unwrap_or(0);
            if now >= max.get() {
                return Err(LimitReached {
                    scope,
                    name: name.to_owned(),
                    max: max.get(),
                });
            }
        }
        let held: Vec<(Scope, String)> = wanted
            .iter()
            .map(|(scope, name, _)| (*scope, (*name).to_owned()))
            .collect();
        for key in &held {
            *counts.entry(key.clone()).or_insert(0) += 1;
        }
        Ok(Admitted {
            limits: self.clone(),
            held,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self
            .limits
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for key in self.held.drain(..) {
            if let Some(n) = counts.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_held_and_given_back() {
        let limits = Arc::new(ClientLimits::default());
        let two = NonZeroU32::new(2);
        let want = |user| [(Scope::User, user, two), (Scope::Database, "db", None)];
        let a = limits.admit(want("u")).expect("first");
        let b = limits.admit(want("u")).expect("second");
        let refused = limits.admit(want("u")).expect_err("third");
        assert_eq!((refused.scope, refused.max), (Scope::User, 2));
        drop(limits.admit(want("v")).expect("another user"));
        drop(a);
        let c = limits.admit(want("u")).expect("a place came back");
        drop((b, c));
        assert!(limits.counts.lock().unwrap().is_empty());
    }

    #[test]
    fn failures_are_counted_per_address_and_bounded() {
        let failures = Failures::default();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        assert_eq!(failures.record(a), 1);
        assert_eq!(failures.record(a), 2);
        assert_eq!(failures.record(b), 1, "another address has its own count");
        // One IPv6 host's /64 counts as one address.
        let v6 = |last: u16| IpAddr::from([0x2001, 0xdb8, 1, 2, 0, 0, 0, last]);
        assert_eq!(failures.record(v6(1)), 1);
        assert_eq!(failures.record(v6(2)), 2);
        // An old first failure starts the count again.
        failures.by_addr.lock().unwrap().insert(
            a,
            Strikes {
                count: 5,
                since: Instant::now() - FAILURE_WINDOW - Duration::from_secs(1),
            },
        );
        assert_eq!(failures.record(a), 1);
        // Full: the address whose window started first makes room, and the newcomer is
        // counted.
        for i in 0..MAX_ADDRESSES as u32 {
            failures.record(IpAddr::from(((i + 1) << 8).to_be_bytes()));
        }
        let newcomer = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(failures.record(newcomer), 1);
        assert_eq!(failures.record(newcomer), 2, "kept, not dropped");
        let map = failures.by_addr.lock().unwrap();
        assert!(map.len() <= MAX_ADDRESSES);
        assert!(!map.contains_key(&b), "the oldest window went first");
    }
}
