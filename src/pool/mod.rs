//! Server-side connection pools, one per (database, user, host).
//!
//! Owns: the pools (`slots`), checkout with a deadline, `Lease` return/discard, the janitor
//! that enforces idle timeouts, lifetimes and warm connections.
//! Does not: parse SQL, talk to clients, read config files.

mod lease;
mod registry;
mod slots;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::config::PoolSettings;
use crate::metrics::names;
use crate::server::{BackendError, ParamSet, ServerConn, ServerTarget};
use crate::stats::{micros, PoolTotals, ServerInfo, Totals, WeakList};
pub(crate) use lease::Lease;
pub(crate) use registry::{PoolRegistry, Want};
use slots::{Free, Slots, Take};

/// The pool's places for `benching` (criterion benchmarks of checkout and return).
pub(crate) mod bench {
    pub(crate) use super::slots::{Slots, Take};
}

/// Why a client could not get a server connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// Every connection stayed busy for `query_wait_timeout`.
    #[error("no server connection for {pool} became free within {waited:?} (query_wait_timeout)")]
    CheckoutTimeout {
        /// "database/user".
        pool: String,
        /// How long the client waited.
        waited: Duration,
    },
    /// A new server connection could not be opened.
    #[error("cannot open a server connection for {pool}: {cause}")]
    Connect {
        /// "database/user".
        pool: String,
        /// What went wrong.
        #[source]
        cause: BackendError,
    },
    /// The pool was closed (shutdown or reload).
    #[error("the pool {0} is closed")]
    Closed(String),
}

/// Opens, checks and retires server connections for one host.
#[derive(Debug)]
pub(crate) struct ServerManager {
    /// Where and as whom.
    target: ServerTarget,
    /// What the admin console and metrics see of this host's connections.
    live: Arc<HostLive>,
}

/// The live state of one host pool that outlives any one connection: its server list,
/// logins in progress, the reconnect generation and the running totals.
#[derive(Debug, Default)]
pub(crate) struct HostLive {
    /// Open server connections, for SHOW SERVERS.
    pub(crate) servers: WeakList<ServerInfo>,
    /// Logins in progress (`sv_login`).
    logins: AtomicUsize,
    /// Bumped by RECONNECT: connections of an older generation close at their next return.
    generation: AtomicU64,
    /// Transactions, queries, bytes and times, for SHOW STATS; shared with the pools that
    /// replace this one (`PoolRegistry::totals`).
    pub(crate) totals: Arc<PoolTotals>,
    /// `pool.server_connect_timeout` in microseconds (changes on RELOAD).
    connect_timeout_us: AtomicU64,
    /// `pool.server_lifetime` in microseconds (changes on RELOAD).
    lifetime_us: AtomicU64,
}

impl HostLive {
    fn new(settings: &PoolSettings, totals: Arc<PoolTotals>) -> Self {
        let live = Self {
            totals,
            ..Self::default()
        };
        live.apply(settings);
        live
    }

    /// Takes the connection limits from `settings`.
    fn apply(&self, settings: &PoolSettings) {
        self.connect_timeout_us
            .store(micros(settings.server_connect_timeout), Ordering::Relaxed);
        self.lifetime_us
            .store(micros(settings.server_lifetime), Ordering::Relaxed);
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_micros(self.connect_timeout_us.load(Ordering::Relaxed))
    }

    fn lifetime(&self) -> Duration {
        Duration::from_micros(self.lifetime_us.load(Ordering::Relaxed))
    }
}

/// Counts a login in progress for as long as it lives.
struct LoginInProgress<'a>(&'a AtomicUsize);

impl Drop for LoginInProgress<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ServerManager {
    /// Opens and logs in one server connection.
    async fn create(&self) -> Result<Box<ServerConn>, BackendError> {
        self.live.logins.fetch_add(1, Ordering::Relaxed);
        let _login = LoginInProgress(&self.live.logins);
        let generation = self.live.generation.load(Ordering::Relaxed);
        // Boxed: the login future is kilobytes, and inline it would make every checkout
        // future (built and moved on each transaction) that large too.
        let limit = self.live.connect_timeout();
        let mut conn = Box::pin(ServerConn::connect(&self.target, limit)).await?;
        conn.generation = generation;
        conn.info.set_generation(generation);
        self.live.servers.add(&conn.info);
        Ok(Box::new(conn))
    }

    /// A free connection if it may serve another client; else closes it.
    /// `now` may be a little old (when the request arrived, read already): a connection
    /// reaches its lifetime that much later, and one handed over since counts as just
    /// returned, which it was.
    fn recycle(&self, free: Free, now: Instant) -> Option<Box<ServerConn>> {
        let Free { mut conn, since } = free;
        // Also checked by the janitor, but in a busy pool a connection is rarely free when
        // it runs: here is where a connection in constant use meets its lifetime.
        let lifetime = self.live.lifetime();
        let retired = (!lifetime.is_zero()
            && now.saturating_duration_since(conn.created) >= lifetime)
            || conn.generation < self.live.generation.load(Ordering::Relaxed);
        if retired {
            slots::terminate(conn);
            return None;
        }
        // Closed by the server, or dirty: the socket just closes.
        conn.check_idle(now.saturating_duration_since(since))
            .then_some(conn)
    }
}

/// The parameters a pool's first server login reported, and the part a client starts
/// from: made together, so the two always come from the same server.
#[derive(Debug)]
pub(crate) struct ServerDefaults {
    /// Everything reported: what a client is told at its login.
    pub(crate) reported: ParamSet,
    /// `reported.client_defaults()`: where each client's parameters start.
    pub(crate) client: ParamSet,
}

impl ServerDefaults {
    /// The defaults of a server that reported `reported`.
    pub(crate) fn new(reported: &ParamSet) -> Self {
        Self {
            client: reported.client_defaults(),
            reported: reported.clone(),
        }
    }
}

/// The pool of one host for one (database, user).
#[derive(Debug)]
pub(crate) struct HostPool {
    /// "host:port", for logs and SHOW commands.
    pub(crate) addr: String,
    /// The connections.
    slots: Arc<Slots>,
    /// Opens and checks them.
    manager: ServerManager,
    /// Server list, logins, generation and totals.
    pub(crate) live: Arc<HostLive>,
    /// Prometheus histograms of this pool, made once.
    pub(crate) timing: PoolTiming,
}

/// Histograms of one host pool (seconds), recorded once per transaction.
#[derive(Debug)]
pub(crate) struct PoolTiming {
    /// How long clients waited for a server.
    pub(crate) wait: metrics::Histogram,
    /// How long requests took to be answered.
    pub(crate) query: metrics::Histogram,
    /// How long servers were leased for one transaction.
    pub(crate) xact: metrics::Histogram,
}

impl PoolTiming {
    fn new(database: &str, user: &str, host: &str) -> Self {
        let labels = [
            ("database", database.to_owned()),
            ("user", user.to_owned()),
            ("host", host.to_owned()),
        ];
        Self {
            wait: metrics::histogram!(names::WAIT_SECONDS, &labels),
            query: metrics::histogram!(names::QUERY_SECONDS, &labels),
            xact: metrics::histogram!(names::XACT_SECONDS, &labels),
        }
    }
}

/// How many server connections one host pool has, and in which state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HostCounts {
    /// Leased to clients (`sv_active`).
    pub(crate) active: usize,
    /// Free in the pool (`sv_idle`).
    pub(crate) idle: usize,
    /// Logging in (`sv_login`).
    pub(crate) login: usize,
    /// Clients waiting for one.
    pub(crate) waiting: usize,
    /// Most connections allowed.
    pub(crate) max: usize,
}

impl HostPool {
    /// Its connections by state now.
    pub(crate) fn counts(&self) -> HostCounts {
        let s = self.slots.counts();
        let login = self.live.logins.load(Ordering::Relaxed);
        HostCounts {
            active: s.size.saturating_sub(s.free + login),
            idle: s.free,
            login,
            waiting: s.waiting,
            max: s.max,
        }
    }

    /// Adds one finished transaction: to the totals, and to the histograms.
    /// `checkout` says whether `t` includes a checkout (its wait); a session-mode
    /// transaction counted mid-session does not.
    pub(crate) fn record(&self, t: &Totals, checkout: bool) {
        self.live.totals.add(t);
        let secs = |us: u64| us as f64 / 1e6;
        if checkout {
            self.timing.wait.record(secs(t.wait_us));
        }
        if t.xacts > 0 {
            self.timing.xact.record(secs(t.xact_us));
        }
        if let Some(mean) = t.query_us.checked_div(t.queries) {
            // One sample per request, at the transaction's mean: the relay keeps no list.
            self.timing
                .query
                .record_many(secs(mean), t.queries as usize);
        }
    }

    /// Closes its free connections (its pool was replaced or removed).
    fn close_idle(&self) {
        self.close_free(|_, _| false);
    }

    /// Closes the free connections `keep` refuses, each with a Terminate; returns how many.
    /// `keep` is given each connection and the time its last lease ended.
    fn close_free(&self, keep: impl FnMut(&ServerConn, Instant) -> bool) -> usize {
        self.slots.retain(keep)
    }

    /// Its reconnect generation: connections of an older one close at their return.
    pub(crate) fn generation(&self) -> u64 {
        self.live.generation.load(Ordering::Relaxed)
    }

    /// Its open server connections.
    pub(crate) fn servers(&self) -> Vec<Arc<ServerInfo>> {
        self.live.servers.live()
    }
}

/// All pools of one (database, user): one per host of the database.
#[derive(Debug)]
pub(crate) struct DbUserPool {
    /// "database/user", the label in errors, logs and metrics.
    pub(crate) label: String,
    /// The client-facing database name, to find its hosts' state.
    pub(crate) database: String,
    /// The user its servers log in as.
    pub(crate) user: String,
    /// Where its hosts' servers are and how to log in: a RELOAD that changes these
    /// replaces the pool instead of resizing it.
    targets: Vec<ServerTarget>,
    /// One pool per configured host, in configuration order.
    pub(crate) hosts: Vec<HostPool>,
    /// What the first server login reported, set once with the client's share of it.
    pub(crate) server_defaults: OnceLock<ServerDefaults>,
    /// Limits in force; replaced on RELOAD and SET (read off the transaction path only).
    settings: RwLock<PoolSettings>,
    /// The configuration snapshot generation its settings come from.
    generation: AtomicU64,
}

impl DbUserPool {
    /// Builds the (empty) pools for every host in `targets`.
    pub(crate) fn new(
        database: &str,
        user: &str,
        targets: Vec<ServerTarget>,
        settings: &PoolSettings,
        totals: impl Fn(&str) -> Arc<PoolTotals>,
    ) -> Self {
        let hosts = targets
            .iter()
            .cloned()
            .map(|target| {
                let addr = format!("{}:{}", target.host, target.port);
                let live = Arc::new(HostLive::new(settings, totals(&addr)));
                let manager = ServerManager {
                    target,
                    live: live.clone(),
                };
                let timing = PoolTiming::new(database, user, &addr);
                HostPool {
                    addr,
                    slots: Slots::new(settings.size.get() as usize),
                    manager,
                    live,
                    timing,
                }
            })
            .collect();
        Self {
            label: format!("{database}/{user}"),
            database: database.to_owned(),
            user: user.to_owned(),
            targets,
            hosts,
            server_defaults: OnceLock::new(),
            settings: RwLock::new(settings.clone()),
            generation: AtomicU64::new(0),
        }
    }

    /// Takes the limits of snapshot `generation` (RELOAD, SET), unless it has them or newer
    /// ones: the pools grow or shrink to `size` at once (a shrink closes free connections,
    /// and busy ones as they come back). Under the settings lock, so two snapshots' limits
    /// never land out of order.
    pub(crate) fn adopt(&self, generation: u64, settings: &PoolSettings) {
        if self.generation() >= generation {
            return;
        }
        let mut current = self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if self.generation() >= generation {
            return;
        }
        for hp in &self.hosts {
            hp.slots.resize(settings.size.get() as usize);
            hp.live.apply(settings);
        }
        *current = settings.clone();
        self.generation.store(generation, Ordering::Release);
    }

    /// The configuration snapshot generation its limits come from.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Closes the free connections of every host (its pool was replaced or removed).
    fn close_idle(&self) {
        for hp in &self.hosts {
            hp.close_idle();
        }
    }

    /// Where its servers are and how it logs in to them.
    pub(crate) fn targets(&self) -> &[ServerTarget] {
        &self.targets
    }

    /// The limits in force.
    pub(crate) fn settings(&self) -> PoolSettings {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// RECONNECT: every server connection open now is replaced, the free ones at once and
    /// the busy ones when their transaction ends.
    pub(crate) fn reconnect(&self) {
        for hp in &self.hosts {
            let generation = hp.live.generation.fetch_add(1, Ordering::Relaxed) + 1;
            hp.close_free(|conn, _| conn.generation >= generation);
        }
    }

    /// WAIT_CLOSE's step: closes the free connections from before the last RECONNECT and
    /// returns how many older ones are still open (busy; they close when they come back).
    pub(crate) fn close_outdated(&self) -> usize {
        self.hosts
            .iter()
            .map(|hp| {
                let generation = hp.generation();
                hp.close_free(|conn, _| conn.generation >= generation);
                hp.servers()
                    .iter()
                    .filter(|s| s.generation() < generation)
                    .count()
            })
            .sum()
    }

    /// Checks out a server of host `host` for a request that arrived at `asked`, waiting
    /// until `waited` after it at most (the caller's `pool.query_wait_timeout`).
    pub(crate) async fn checkout(
        &self,
        host: usize,
        asked: Instant,
        waited: Duration,
    ) -> Result<Lease, PoolError> {
        let Some(hp) = self.hosts.get(host) else {
            return Err(PoolError::Closed(self.label.clone()));
        };
        let mut claim = match hp.slots.take(asked + waited) {
            Take::Claim(claim) => claim,
            Take::Closed => return Err(PoolError::Closed(self.label.clone())),
            // The pool's sweeper answers at the deadline: no timer per waiting client.
            // Opening a connection has its own (`server_connect_timeout`).
            Take::Wait(handed) => match handed.await {
                Ok(Ok(claim)) => claim,
                Ok(Err(slots::Expired)) => {
                    return Err(PoolError::CheckoutTimeout {
                        pool: self.label.clone(),
                        waited,
                    })
                }
                Err(_) => return Err(PoolError::Closed(self.label.clone())),
            },
        };
        let reused = claim
            .take()
            .and_then(|free| hp.manager.recycle(free, asked));
        let conn = match reused {
            Some(conn) => conn,
            // An empty place, or a connection that failed its check: open one in it.
            // Dropping `claim` on an error gives the place back.
            None => hp
                .manager
                .create()
                .await
                .map_err(|cause| PoolError::Connect {
                    pool: self.label.clone(),
                    cause,
                })?,
        };
        let lease = Lease::new(claim, conn);
        self.server_defaults
            .get_or_init(|| ServerDefaults::new(lease.params.reported()));
        Ok(lease)
    }

    /// Servers of host `host` in use plus clients waiting for one: its outstanding work.
    pub(crate) fn busy(&self, host: usize) -> usize {
        self.hosts
            .get(host)
            .map_or(usize::MAX, |hp| hp.slots.busy())
    }

    /// Enforces `server_idle_timeout` and `server_lifetime` on idle connections, closes
    /// the idle connections of hosts that are down (`down(host)`), and keeps `min_size`
    /// warm on the primary (`primary`, when known), so a new primary after a failover is
    /// ready before traffic arrives. Called by the janitor every second.
    pub(crate) async fn maintain(&self, primary: Option<usize>, down: impl Fn(usize) -> bool) {
        let settings = self.settings();
        let idle = settings.server_idle_timeout;
        let lifetime = settings.server_lifetime;
        for (i, hp) in self.hosts.iter().enumerate() {
            let drain = down(i);
            let generation = hp.generation();
            let closed = hp.close_free(|conn, since| {
                !drain
                    && conn.generation >= generation
                    && (idle.is_zero() || since.elapsed() < idle)
                    && (lifetime.is_zero() || conn.created.elapsed() < lifetime)
            });
            if drain && closed > 0 {
                tracing::info!(pool = %self.label, host = %hp.addr, closed, "host is down: its idle server connections are closed");
            }
        }
        let min = settings.min_size as usize;
        let Some(hp) = primary.and_then(|p| self.hosts.get(p)) else {
            return;
        };
        // A pass-through user's connections wait for its first client login.
        if min == 0 || !hp.manager.target.can_log_in() {
            return;
        }
        while hp.slots.counts().size < min {
            let Some(mut claim) = hp.slots.take_empty() else {
                break;
            };
            match hp.manager.create().await {
                Ok(conn) => {
                    self.server_defaults
                        .get_or_init(|| ServerDefaults::new(conn.params.reported()));
                    // Dropping the claim puts the connection on the free list.
                    claim.fill(conn);
                }
                Err(e) => {
                    tracing::warn!(pool = %self.label, host = %hp.addr, "cannot open warm connection: {e}");
                    break;
                }
            }
        }
    }

    /// Closes every pool: waiting clients get an error, idle connections close.
    pub(crate) fn close(&self) {
        for hp in &self.hosts {
            hp.slots.close();
        }
    }
}
