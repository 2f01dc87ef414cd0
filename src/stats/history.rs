//! Recent totals per database, sampled once a second by the janitor, so SHOW STATS and
//! SHOW STATS_AVERAGES can say what happened lately (PgBouncer averages over
//! `stats_period`; weir over the last `WINDOW` seconds).
//!
//! Owns: the samples. Does not: count anything itself (see `stats`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::stats::Totals;

/// How far back the averages look.
const WINDOW: Duration = Duration::from_secs(15);

/// Samples of the totals per database, oldest first.
#[derive(Debug, Default)]
pub(crate) struct StatsHistory {
    samples: Mutex<VecDeque<(Instant, HashMap<String, Totals>)>>,
}

/// What a database did over the window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rates {
    /// Added over the window.
    delta: Totals,
    /// The window's length in seconds (0 before two samples exist).
    seconds: f64,
}

impl Rates {
    /// PgBouncer's averages: transactions, queries, bytes in and out per second, then the
    /// mean transaction, query and wait times in microseconds.
    pub(crate) fn parts(&self) -> [u64; 7] {
        let d = &self.delta;
        let per_second = |v: u64| {
            if self.seconds > 0.0 {
                (v as f64 / self.seconds) as u64
            } else {
                0
            }
        };
        let mean = |total: u64, count: u64| total.checked_div(count).unwrap_or(0);
        [
            per_second(d.xacts),
            per_second(d.queries),
            per_second(d.received),
            per_second(d.sent),
            mean(d.xact_us, d.xacts),
            mean(d.query_us, d.queries),
            mean(d.wait_us, d.xacts),
        ]
    }

    /// Two databases' activity together (SHOW TOTALS).
    pub(crate) fn plus(&self, other: &Rates) -> Rates {
        Rates {
            delta: self.delta.plus(other.delta),
            seconds: self.seconds.max(other.seconds),
        }
    }
}

impl StatsHistory {
    /// Records every database's totals now (called every second).
    pub(crate) fn sample(&self, now: HashMap<String, Totals>) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let at = Instant::now();
        while samples
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > WINDOW)
        {
            samples.pop_front();
        }
        samples.push_back((at, now));
    }

    /// What `database` did between the oldest and the newest sample.
    pub(crate) fn rates(&self, database: &str) -> Rates {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let (Some((t0, first)), Some((t1, last))) = (samples.front(), samples.back()) else {
            return Rates::default();
        };
        let get = |m: &HashMap<String, Totals>| m.get(database).copied().unwrap_or_default();
        Rates {
            delta: get(last).since(get(first)),
            seconds: t1.duration_since(*t0).as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_are_per_second_and_per_transaction() {
        let r = Rates {
            delta: Totals {
                xacts: 30,
                queries: 60,
                received: 300,
                sent: 600,
                xact_us: 3000,
                query_us: 1200,
                wait_us: 90,
            },
            seconds: 15.0,
        };
        assert_eq!(r.parts(), [2, 4, 20, 40, 100, 20, 3]);
        assert_eq!(Rates::default().parts(), [0; 7]);
    }
}
