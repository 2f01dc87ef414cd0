//! Backend hosts of each database: which is the primary, which replicas are healthy, and
//! how far behind each one is.
//!
//! Owns: the per-host status that routing and `SHOW HOSTS` read, which host is the
//! primary (and the split-brain and failover rules that decide it), waiting for one
//! during a failover, and the primary's VOLATILE functions for the router. The tasks
//! that feed it (a health check per host, the optional promoter) are in `tasks.rs`.
//! Does not: pool connections or classify statements.
//!
//! Roles are discovered, never configured. Until a host has answered a check, it is no
//! replica: reads go to the primary until weir knows better (fail closed).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ClusterSettings;

mod tasks;
use crate::metrics::names;
use crate::router::WriteFunctions;
use crate::server::{BackendError, ServerTarget};

/// No primary known yet.
const UNKNOWN: usize = usize::MAX;
/// Without health checks, how often a transaction waiting for a primary probes again.
const PROBE_RETRY: Duration = Duration::from_millis(250);
/// Why no primary could be found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    /// Every host was down or in recovery, for as long as `cluster.failover_timeout`.
    #[error("no primary available for database {database} (waited {waited:?}, cluster.failover_timeout): {detail}")]
    NoPrimary {
        /// Client-facing database name.
        database: String,
        /// How long the transaction waited for one.
        waited: Duration,
        /// What each host said.
        detail: String,
    },
}

/// Why a health check failed.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    /// Connecting, logging in or the query failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// No answer in time.
    #[error("no answer within {0:?} (cluster.health_check_timeout)")]
    Timeout(Duration),
    /// `pg_promote()` returned false: the server did not finish its promotion in time.
    #[error("pg_promote() did not complete within its wait")]
    NotPromoted,
}

/// What a host is, as of its last check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Not checked yet, or not reachable since weir started.
    Unknown,
    /// Not in recovery: takes writes.
    Primary,
    /// In recovery: a streaming replica.
    Replica,
}

impl Role {
    /// How `SHOW HOSTS` and logs name it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }
}

/// One host as the health checks see it.
#[derive(Debug, Clone)]
pub(crate) struct HostStatus {
    /// `host:port` as configured.
    pub(crate) addr: String,
    /// Its role at the last successful check.
    pub(crate) role: Role,
    /// Whether the last check succeeded and no server connection broke since.
    pub(crate) healthy: bool,
    /// Primary: WAL written (`pg_current_wal_lsn`); replica: WAL replayed.
    pub(crate) lsn: u64,
    /// A replica's distance behind the primary's last known position, in bytes of WAL.
    pub(crate) lag_bytes: Option<u64>,
    /// A replica's delay: zero when it has replayed what the primary had written, else
    /// the age of the last commit it replayed.
    pub(crate) lag: Option<Duration>,
    /// When it last answered a check.
    pub(crate) last_check: Option<SystemTime>,
    /// When its role last changed (from unknown too).
    pub(crate) last_role_change: Option<SystemTime>,
    /// Why the last check failed, if it did (or why a primary was refused).
    pub(crate) last_error: Option<String>,
    /// Checks failed in a row.
    failures: u32,
    /// It claimed to be the primary while the one in use was not down (split brain).
    refused: bool,
    /// Its timeline when it last answered as a primary.
    timeline: u32,
    /// The replay age the host reported, kept to recompute `lag` when the primary moves.
    replay_age: Option<Duration>,
}

impl HostStatus {
    /// Down: `down_after` checks failed in a row, or refused as a second primary.
    fn is_down(&self, down_after: u32) -> bool {
        self.failures >= down_after || self.refused
    }

    fn new(addr: String) -> Self {
        Self {
            addr,
            role: Role::Unknown,
            healthy: false,
            lsn: 0,
            lag_bytes: None,
            lag: None,
            last_check: None,
            last_role_change: None,
            last_error: None,
            failures: 0,
            refused: false,
            timeline: 0,
            replay_age: None,
        }
    }
}

/// How far behind a replica may be and still serve reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LagLimits {
    /// Zero: no time limit.
    pub(crate) time: Duration,
    /// Zero: no byte limit.
    pub(crate) bytes: u64,
}

/// What one check of a host found.
#[derive(Debug, Clone, Copy)]
struct Sample {
    in_recovery: bool,
    lsn: u64,
    replay_age: Option<Duration>,
    /// A primary's timeline (0 when unknown).
    timeline: u32,
}

/// Counters of primary changes, made once per database.
#[derive(Debug)]
struct FailoverCounters {
    failovers: metrics::Counter,
    split_brain: metrics::Counter,
    promotions: metrics::Counter,
}

impl FailoverCounters {
    fn new(database: &str) -> Self {
        Self {
            failovers: metrics::counter!(names::FAILOVERS_TOTAL, "database" => database.to_owned()),
            split_brain: metrics::counter!(names::SPLIT_BRAIN_TOTAL, "database" => database.to_owned()),
            promotions: metrics::counter!(names::PROMOTIONS_TOTAL, "database" => database.to_owned()),
        }
    }
}

/// The hosts of one database and what weir knows about them.
#[derive(Debug)]
pub(crate) struct DbCluster {
    /// Client-facing name.
    pub(crate) name: String,
    /// Index of the primary in the configured host list, or `UNKNOWN`.
    primary: AtomicUsize,
    /// The last host that was the primary, kept through a gap: a new one is a failover.
    last_primary: AtomicUsize,
    /// The newest timeline a primary in use has had: a primary on an older one was left
    /// behind by a promotion and never gets writes again.
    timeline: AtomicU32,
    /// Woken when a primary is found, for transactions waiting for one.
    primary_found: Notify,
    /// Per host: wakes its health check at once (a server connection broke).
    check_now: Vec<Notify>,
    /// Per host: bumped when a server connection to it breaks, so a check begun before
    /// cannot report it healthy.
    epochs: Vec<AtomicU64>,
    /// Failovers and split-brain refusals.
    counters: FailoverCounters,
    /// Health-check tasks run; without them a transaction probes the hosts itself.
    watched: AtomicBool,
    /// `cluster.down_after` and `cluster.failover_timeout`.
    settings: ClusterSettings,
    /// Serialises probing so a burst of clients probes once.
    probe_lock: tokio::sync::Mutex<()>,
    /// Set when the cluster is retired (a reload replaced it, or shutdown): its
    /// health-check and promotion tasks end.
    stop: tokio::sync::watch::Sender<bool>,
    /// Per host, in configuration order.
    status: RwLock<Vec<HostStatus>>,
    /// Functions whose call makes a statement a write: built-in, configured, and the
    /// primary's VOLATILE ones once learned.
    functions: RwLock<WriteFunctions>,
}

impl DbCluster {
    /// A database with these hosts (`host:port`); a single host is the primary without asking.
    pub(crate) fn new(
        name: String,
        addrs: Vec<String>,
        functions: WriteFunctions,
        settings: ClusterSettings,
    ) -> Self {
        let single = addrs.len() == 1;
        let first = if single { 0 } else { UNKNOWN };
        Self {
            counters: FailoverCounters::new(&name),
            name,
            primary: AtomicUsize::new(first),
            last_primary: AtomicUsize::new(first),
            timeline: AtomicU32::new(0),
            primary_found: Notify::new(),
            check_now: addrs.iter().map(|_| Notify::new()).collect(),
            epochs: addrs.iter().map(|_| AtomicU64::new(0)).collect(),
            watched: AtomicBool::new(false),
            settings,
            probe_lock: tokio::sync::Mutex::new(()),
            stop: tokio::sync::watch::channel(false).0,
            status: RwLock::new(addrs.into_iter().map(HostStatus::new).collect()),
            functions: RwLock::new(functions),
        }
    }

    /// Host `index`'s role now: the primary in use, else what its last check said.
    pub(crate) fn role_of(&self, index: usize) -> Role {
        if self.primary_index() == Some(index) {
            return Role::Primary;
        }
        self.read_status()
            .get(index)
            .map_or(Role::Unknown, |h| h.role)
    }

    /// Whether host `index` is fit for use: its last check passed, or (a single host, which
    /// nothing checks) no connection to it has failed.
    pub(crate) fn is_healthy(&self, index: usize) -> bool {
        let status = self.read_status();
        match status.get(index) {
            Some(h) if status.len() == 1 => !h.is_down(self.settings.down_after),
            Some(h) => h.healthy,
            None => false,
        }
    }

    /// What the cluster's tasks watch to know when to end.
    pub(crate) fn stop_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Ends the cluster's health-check and promotion tasks.
    pub(crate) fn retire(&self) {
        self.stop.send_replace(true);
    }

    /// The primary's index, if one is known now.
    pub(crate) fn primary_index(&self) -> Option<usize> {
        let known = self.primary.load(Ordering::Acquire);
        (known != UNKNOWN).then_some(known)
    }

    /// Whether the checks count host `index` down (`down_after` failures in a row), or
    /// refused it as a second primary: its idle server connections are of no use.
    pub(crate) fn is_down(&self, index: usize) -> bool {
        self.read_status()
            .get(index)
            .is_some_and(|h| h.is_down(self.settings.down_after))
    }

    /// Whether host `index` is the primary as far as weir knows.
    pub(crate) fn is_primary(&self, index: usize) -> bool {
        self.primary.load(Ordering::Acquire) == index
    }

    /// Every host's status, for `SHOW HOSTS` and tests.
    pub(crate) fn hosts(&self) -> Vec<HostStatus> {
        self.read_status().clone()
    }

    /// The functions that make a statement a write, as of now.
    pub(crate) fn functions(&self) -> WriteFunctions {
        self.functions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn read_status(&self) -> std::sync::RwLockReadGuard<'_, Vec<HostStatus>> {
        self.status.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The least busy replica that may serve a read now: healthy, within `limits`, and
    /// replayed at least to `min_lsn` (a client's last commit; 0 for none). With
    /// `include_primary`, the primary competes too. `busy` gives a host's servers in use.
    pub(crate) fn pick_reader(
        &self,
        min_lsn: u64,
        limits: LagLimits,
        include_primary: bool,
        busy: impl Fn(usize) -> usize,
    ) -> Option<usize> {
        let status = self.read_status();
        status
            .iter()
            .enumerate()
            .filter(|(_, h)| h.healthy)
            .filter(|(_, h)| match h.role {
                Role::Primary => include_primary,
                Role::Replica => {
                    h.lsn >= min_lsn
                        && (limits.time.is_zero() || h.lag.is_some_and(|l| l <= limits.time))
                        && (limits.bytes == 0 || h.lag_bytes.is_some_and(|b| b <= limits.bytes))
                }
                Role::Unknown => false,
            })
            .min_by_key(|(i, _)| busy(*i))
            .map(|(i, _)| i)
    }

    /// The primary's index. While none is known (a failover), waits until `deadline`
    /// (the caller's: `cluster.failover_timeout` from when its transaction began) for the
    /// health checks to find one; a database without them is probed here, as the given
    /// logins.
    pub(crate) async fn primary(
        &self,
        targets: &[ServerTarget],
        limit: Duration,
        deadline: Instant,
    ) -> Result<usize, ClusterError> {
        // The usual case, without registering for a wake-up (a lock inside `Notify`).
        let known = self.primary.load(Ordering::Acquire);
        if known != UNKNOWN {
            return Ok(known);
        }
        let started = Instant::now();
        loop {
            let found = self.primary_found.notified();
            tokio::pin!(found);
            // Registered before looking, so a primary found in between still wakes us.
            found.as_mut().enable();
            let known = self.primary.load(Ordering::Acquire);
            if known != UNKNOWN {
                return Ok(known);
            }
            // Health checks that never got an answer (they cannot log in, say) find
            // nothing: then the transaction asks the hosts itself, as its own user.
            let watched = self.watched.load(Ordering::Acquire)
                && self.read_status().iter().any(|h| h.last_check.is_some());
            let detail = if watched {
                self.describe()
            } else {
                match tokio::time::timeout_at(deadline, self.probe(targets, limit)).await {
                    Ok(Ok(index)) => return Ok(index),
                    Ok(Err(detail)) => detail,
                    Err(_) => self.describe(),
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(ClusterError::NoPrimary {
                    database: self.name.clone(),
                    waited: now - started,
                    detail,
                });
            }
            let wake = if watched {
                deadline
            } else {
                deadline.min(now + PROBE_RETRY)
            };
            let _ = tokio::time::timeout_at(wake, found).await;
        }
    }

    /// Asks each host in turn whether it is the primary (one caller at a time; the
    /// others find the answer when they get the lock).
    async fn probe(&self, targets: &[ServerTarget], limit: Duration) -> Result<usize, String> {
        let _guard = self.probe_lock.lock().await;
        let known = self.primary.load(Ordering::Acquire);
        if known != UNKNOWN {
            return Ok(known);
        }
        let mut detail = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            match tasks::check(&mut None, target, limit).await {
                Ok(sample) if !sample.in_recovery => {
                    if self.record(i, Ok(sample), None) {
                        return Ok(i);
                    }
                    detail.push(format!(
                        "{}:{} refused (split brain)",
                        target.host, target.port
                    ));
                }
                Ok(_) => detail.push(format!("{}:{} is in recovery", target.host, target.port)),
                Err(e) => detail.push(format!("{}:{}: {e}", target.host, target.port)),
            }
        }
        Err(detail.join("; "))
    }

    /// What the health checks last said of each host, for an error message.
    fn describe(&self) -> String {
        self.read_status()
            .iter()
            .map(|h| match &h.last_error {
                Some(e) => format!("{}: {e}", h.addr),
                None => format!("{}: {}", h.addr, h.role.as_str()),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A server connection to host `index` broke, or could not be opened: the host serves
    /// nothing until its next check succeeds, and is checked at once. If it was the
    /// primary, transactions wait for the checks to find one. Only the checks count it
    /// down (`cluster.down_after`): one broken connection never hands the primary's role
    /// to another host.
    pub(crate) fn host_failed(&self, index: usize) {
        let mut status = self.status.write().unwrap_or_else(PoisonError::into_inner);
        if status.len() < 2 {
            return;
        }
        if let Some(h) = status.get_mut(index) {
            h.healthy = false;
        }
        if let Some(e) = self.epochs.get(index) {
            // A check already running reports the host from before: it must not count.
            e.fetch_add(1, Ordering::AcqRel);
        }
        self.forget_primary(index);
        drop(status);
        if let Some(n) = self.check_now.get(index) {
            n.notify_one();
        }
    }

    /// Host `index` is no longer the primary (if it was): transactions wait for one.
    fn forget_primary(&self, index: usize) {
        let _ = self
            .primary
            .compare_exchange(index, UNKNOWN, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Host `index`'s failure count, for the checks that start now.
    fn epoch(&self, index: usize) -> u64 {
        self.epochs
            .get(index)
            .map_or(0, |e| e.load(Ordering::Acquire))
    }

    /// Takes in the outcome of a check of host `index` begun at `epoch` (`None`: a
    /// transaction's own probe), and what follows for the primary and every replica's
    /// lag. Returns whether the host is now the primary.
    fn record(
        &self,
        index: usize,
        outcome: Result<Sample, CheckError>,
        epoch: Option<u64>,
    ) -> bool {
        let mut status = self.status.write().unwrap_or_else(PoisonError::into_inner);
        if outcome.is_ok() && epoch.is_some_and(|e| e != self.epoch(index)) {
            // Begun before a server connection to it broke: no news.
            return false;
        }
        let many = status.len() > 1;
        let down_after = self.settings.down_after;
        let last = self.last_primary.load(Ordering::Acquire);
        let newest = self.timeline.load(Ordering::Acquire);
        // A host claiming to be primary takes the role if it is on a newer timeline than
        // any primary before (it was promoted); on the same one, only once the primary
        // weir last used is gone for good by its own checks (down_after failures in a
        // row) or reports itself in recovery. An older timeline never does.
        let claim = match &outcome {
            Ok(s) if !s.in_recovery => s.timeline,
            _ => 0,
        };
        let last_gone = claim > newest
            || (claim == newest
                && (last == UNKNOWN
                    || last == index
                    || status
                        .get(last)
                        .is_none_or(|l| l.failures >= down_after || l.role == Role::Replica)));
        let Some(h) = status.get_mut(index) else {
            return false;
        };
        let mut is_primary = false;
        match outcome {
            Ok(sample) => {
                let role = if sample.in_recovery {
                    Role::Replica
                } else {
                    Role::Primary
                };
                if role != h.role {
                    tracing::info!(database = %self.name, host = %h.addr, from = h.role.as_str(), to = role.as_str(), "host role changed");
                    h.last_role_change = Some(SystemTime::now());
                    h.role = role;
                }
                h.lsn = sample.lsn;
                h.replay_age = sample.replay_age;
                h.timeline = sample.timeline;
                h.last_check = Some(SystemTime::now());
                h.failures = 0;
                if role == Role::Primary && !last_gone {
                    // An old primary back after a promotion, or a second promoted host:
                    // it gets nothing while the one in use has not been seen down.
                    if !h.refused {
                        tracing::error!(database = %self.name, host = %h.addr, "refused: claims to be the primary while the primary in use is not down (split brain)");
                        self.counters.split_brain.increment(1);
                    }
                    h.refused = true;
                    h.healthy = false;
                    h.last_error = Some("refused: a second primary (split brain)".into());
                } else {
                    if !h.healthy {
                        tracing::info!(database = %self.name, host = %h.addr, role = role.as_str(), "host is healthy");
                    }
                    h.healthy = true;
                    h.refused = false;
                    h.last_error = None;
                    if role == Role::Primary {
                        if last != index && last != UNKNOWN {
                            tracing::warn!(database = %self.name, host = %h.addr, "failover: new primary");
                            self.counters.failovers.increment(1);
                        }
                        self.last_primary.store(index, Ordering::Release);
                        self.timeline.fetch_max(sample.timeline, Ordering::AcqRel);
                        self.primary.store(index, Ordering::Release);
                        self.primary_found.notify_waiters();
                        is_primary = true;
                    } else if many {
                        self.forget_primary(index);
                    }
                }
            }
            Err(e) => {
                let e = e.to_string();
                h.failures = h.failures.saturating_add(1);
                // Once per change: a host that never answers is reported too, not every tick.
                if h.healthy || h.last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(database = %self.name, host = %h.addr, failures = h.failures, "health check failed: {e}");
                }
                h.last_error = Some(e);
                if h.failures >= down_after {
                    h.healthy = false;
                    if many {
                        self.forget_primary(index);
                    }
                }
            }
        }
        update_lag(&mut status);
        is_primary
    }

    /// Replaces the learned functions when they changed (an unchanged list keeps the
    /// classification caches).
    fn learned(&self, functions: WriteFunctions) {
        let mut current = self
            .functions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != functions {
            *current = functions;
        }
    }
}
/// Recomputes every replica's lag from the primary's last known position.
fn update_lag(status: &mut [HostStatus]) {
    // The primary in use; during a failover, the last position a primary had, so a
    // replica that had replayed it still counts as caught up.
    let primary_lsn = status
        .iter()
        .find(|h| h.role == Role::Primary && h.healthy)
        .or_else(|| {
            status
                .iter()
                .filter(|h| h.role == Role::Primary && !h.refused)
                .max_by_key(|h| h.lsn)
        })
        .map(|h| h.lsn);
    for h in status.iter_mut() {
        if h.role != Role::Replica {
            h.lag_bytes = None;
            h.lag = None;
            continue;
        }
        h.lag_bytes = primary_lsn.map(|p| p.saturating_sub(h.lsn));
        h.lag = match primary_lsn {
            Some(p) if h.lsn >= p => Some(Duration::ZERO),
            _ => h.replay_age,
        };
    }
}

/// A `pg_lsn` in its text form, `16/B374D848`, as a byte position.
pub(crate) fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u64::from(u32::MAX) && lo <= u64::from(u32::MAX)).then_some((hi << 32) | lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_as_positions() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(parse_lsn("1/"), None);
        assert_eq!(parse_lsn("100000000/0"), None);
    }

    fn host(role: Role, lsn: u64, age: Option<u64>) -> HostStatus {
        let mut h = HostStatus::new(format!("{lsn}"));
        h.role = role;
        h.healthy = true;
        h.lsn = lsn;
        h.replay_age = age.map(Duration::from_secs);
        h
    }

    #[test]
    fn lag_follows_the_primary() {
        let mut hosts = vec![
            host(Role::Primary, 1000, None),
            host(Role::Replica, 1000, Some(50)),
            host(Role::Replica, 400, Some(7)),
        ];
        update_lag(&mut hosts);
        assert_eq!(hosts[0].lag, None);
        assert_eq!(hosts[1].lag_bytes, Some(0));
        assert_eq!(
            hosts[1].lag,
            Some(Duration::ZERO),
            "caught up: no lag, however old its last commit"
        );
        assert_eq!(hosts[2].lag_bytes, Some(600));
        assert_eq!(hosts[2].lag, Some(Duration::from_secs(7)));
    }

    #[test]
    fn a_second_primary_waits_until_the_first_is_seen_down() {
        let settings = ClusterSettings {
            down_after: 2,
            ..ClusterSettings::default()
        };
        let cluster = DbCluster::new(
            "db".into(),
            vec!["a".into(), "b".into()],
            WriteFunctions::builtin(),
            settings,
        );
        let primary = || -> Result<Sample, CheckError> {
            Ok(Sample {
                in_recovery: false,
                lsn: 10,
                replay_age: None,
                timeline: 1,
            })
        };
        let down = || -> Result<Sample, CheckError> { Err(CheckError::Timeout(Duration::ZERO)) };
        assert!(cluster.record(0, primary(), Some(cluster.epoch(0))));
        // b says it is primary too (an old primary back, say): refused while a answers.
        assert!(!cluster.record(1, primary(), Some(cluster.epoch(1))));
        assert!(cluster.is_primary(0));
        // One broken connection to a is no failover: b is still refused.
        cluster.host_failed(0);
        assert!(!cluster.is_primary(0));
        assert!(!cluster.record(1, primary(), Some(cluster.epoch(1))));
        // A check of a begun before that break cannot bring it back either.
        let stale = cluster.epoch(0) - 1;
        assert!(!cluster.record(0, primary(), Some(stale)));
        assert!(!cluster.is_primary(0));
        // a fails down_after checks in a row: now b takes over.
        cluster.record(0, down(), Some(cluster.epoch(0)));
        assert!(!cluster.record(1, primary(), Some(cluster.epoch(1))));
        cluster.record(0, down(), Some(cluster.epoch(0)));
        assert!(cluster.record(1, primary(), Some(cluster.epoch(1))));
        assert!(cluster.is_primary(1));
        // And a, back as a primary, is the one refused now.
        assert!(!cluster.record(0, primary(), Some(cluster.epoch(0))));
        assert!(cluster.is_primary(1));
    }

    #[test]
    fn the_newest_timeline_wins_and_an_older_one_never_does() {
        let cluster = DbCluster::new(
            "db".into(),
            vec!["old".into(), "new".into()],
            WriteFunctions::builtin(),
            ClusterSettings::default(),
        );
        let on = |timeline: u32| -> Result<Sample, CheckError> {
            Ok(Sample {
                in_recovery: false,
                lsn: 10,
                replay_age: None,
                timeline,
            })
        };
        assert!(cluster.record(0, on(1), None));
        // A promoted replica is on a newer timeline: it wins even while the old one answers.
        assert!(cluster.record(1, on(2), None));
        assert!(!cluster.record(0, on(1), None));
        // The promoted one dies for good; the old one is still refused.
        for _ in 0..5 {
            cluster.record(1, Err(CheckError::Timeout(Duration::ZERO)), None);
        }
        assert!(!cluster.record(0, on(1), None));
        assert!(!cluster.is_primary(0));
    }

    #[test]
    fn readers_are_healthy_caught_up_replicas_least_busy_first() {
        let cluster = DbCluster::new(
            "db".into(),
            vec!["a".into(), "b".into(), "c".into()],
            WriteFunctions::builtin(),
            ClusterSettings::default(),
        );
        {
            let mut s = cluster
                .status
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            *s = vec![
                host(Role::Primary, 1000, None),
                host(Role::Replica, 1000, Some(0)),
                host(Role::Replica, 900, Some(30)),
            ];
            update_lag(&mut s);
        }
        let loose = LagLimits {
            time: Duration::ZERO,
            bytes: 0,
        };
        let busy = |i: usize| [0, 5, 1][i];
        assert_eq!(cluster.pick_reader(0, loose, false, busy), Some(2));
        assert_eq!(cluster.pick_reader(0, loose, true, busy), Some(0));
        assert_eq!(
            cluster.pick_reader(950, loose, false, busy),
            Some(1),
            "read your writes"
        );
        assert_eq!(cluster.pick_reader(1001, loose, false, busy), None);
        let tight = LagLimits {
            time: Duration::from_secs(10),
            bytes: 0,
        };
        assert_eq!(cluster.pick_reader(0, tight, false, busy), Some(1));
        let bytes = LagLimits {
            time: Duration::ZERO,
            bytes: 50,
        };
        assert_eq!(cluster.pick_reader(0, bytes, false, busy), Some(1));
        cluster.host_failed(1);
        assert_eq!(cluster.pick_reader(0, tight, false, busy), None);
    }
}
