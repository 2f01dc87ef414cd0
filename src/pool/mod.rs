//! Server-side connection pools, one per (database, user, host), on `deadpool`.
//!
//! Owns: deadpool pools, checkout with a deadline, `Lease` return/discard, the janitor
//! that enforces idle timeouts, lifetimes and warm connections.
//! Does not: parse SQL, talk to clients, read config files.

mod lease;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use deadpool::managed::{
    self, Metrics, Pool, PoolError as DeadpoolError, RecycleResult, TimeoutType,
};

use crate::config::PoolSettings;
use crate::server::{BackendError, ParamSet, ServerConn, ServerTarget};
pub(crate) use lease::Lease;

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
    /// Limit on connect + login.
    connect_timeout: Duration,
    /// Connections older than this are closed instead of reused.
    lifetime: Duration,
}

impl managed::Manager for ServerManager {
    type Type = ServerConn;
    type Error = BackendError;

    async fn create(&self) -> Result<ServerConn, BackendError> {
        // Boxed: the login future is kilobytes, and inline it would make every checkout
        // future (built and moved on each transaction) that large too.
        Box::pin(ServerConn::connect(&self.target, self.connect_timeout)).await
    }

    async fn recycle(&self, conn: &mut ServerConn, _: &Metrics) -> RecycleResult<BackendError> {
        // Also checked by the janitor, but in a busy pool a connection is rarely idle when it
        // runs: here is where a connection in constant use meets its lifetime.
        if !self.lifetime.is_zero() && conn.created.elapsed() >= self.lifetime {
            return Err(managed::RecycleError::message("server_lifetime reached"));
        }
        if !conn.check_idle() {
            return Err(managed::RecycleError::message("connection closed or dirty"));
        }
        Ok(())
    }
}

/// The pool of one host for one (database, user).
#[derive(Debug)]
pub(crate) struct HostPool {
    /// "host:port", for logs and SHOW commands.
    pub(crate) addr: String,
    /// The connections.
    pool: Pool<ServerManager>,
}

/// All pools of one (database, user): one per host of the database.
#[derive(Debug)]
pub(crate) struct DbUserPool {
    /// "database/user", the label in errors, logs and metrics.
    pub(crate) label: String,
    /// The client-facing database name, to find its hosts' state.
    pub(crate) database: String,
    /// One pool per configured host, in configuration order.
    pub(crate) hosts: Vec<HostPool>,
    /// Parameters the first server login reported: what a client is told at its login.
    pub(crate) server_defaults: OnceLock<ParamSet>,
    /// Limits in force.
    settings: PoolSettings,
}

impl DbUserPool {
    /// Builds the (empty) pools for every host in `targets`.
    pub(crate) fn new(
        database: &str,
        label: String,
        targets: Vec<ServerTarget>,
        settings: &PoolSettings,
    ) -> Self {
        let hosts = targets
            .into_iter()
            .filter_map(|target| {
                let addr = format!("{}:{}", target.host, target.port);
                let manager = ServerManager {
                    target,
                    connect_timeout: settings.server_connect_timeout,
                    lifetime: settings.server_lifetime,
                };
                let pool = Pool::builder(manager)
                    .max_size(settings.size.get() as usize)
                    .queue_mode(deadpool::managed::QueueMode::Lifo)
                    .runtime(deadpool::Runtime::Tokio1)
                    .build()
                    .map_err(|e| tracing::error!(%addr, "cannot build pool: {e}"))
                    .ok()?;
                Some(HostPool { addr, pool })
            })
            .collect();
        Self {
            label,
            database: database.to_owned(),
            hosts,
            server_defaults: OnceLock::new(),
            settings: settings.clone(),
        }
    }

    /// Checks out a server of host `host`, waiting at most `query_wait_timeout`.
    pub(crate) async fn checkout(&self, host: usize) -> Result<Lease, PoolError> {
        let Some(hp) = self.hosts.get(host) else {
            return Err(PoolError::Closed(self.label.clone()));
        };
        let waited = self.settings.query_wait_timeout;
        // Creating a server connection has its own deadline (`ServerConn::connect`) and
        // recycling does no I/O, so neither needs a deadpool timer.
        let immediate = managed::Timeouts {
            wait: Some(Duration::ZERO),
            create: None,
            recycle: None,
        };
        // Fast path: a free connection (or room for a new one) needs no timer at all.
        let got = match hp.pool.timeout_get(&immediate).await {
            Err(DeadpoolError::Timeout(TimeoutType::Wait)) => {
                // One timer, ours: deadpool is told to wait without one of its own.
                let waiting = managed::Timeouts {
                    wait: None,
                    ..immediate
                };
                // Boxed: a waiting checkout is the rare path, and inline its timer and second
                // deadpool future would double the size of every checkout future.
                Box::pin(tokio::time::timeout(waited, hp.pool.timeout_get(&waiting))).await
            }
            other => Ok(other),
        };
        let obj = match got {
            Ok(Ok(obj)) => obj,
            Err(_) | Ok(Err(DeadpoolError::Timeout(TimeoutType::Wait))) => {
                return Err(PoolError::CheckoutTimeout {
                    pool: self.label.clone(),
                    waited,
                })
            }
            Ok(Err(DeadpoolError::Timeout(_))) => {
                return Err(PoolError::Connect {
                    pool: self.label.clone(),
                    cause: BackendError::LoginTimeout(hp.addr.clone()),
                })
            }
            Ok(Err(DeadpoolError::Backend(cause))) => {
                return Err(PoolError::Connect {
                    pool: self.label.clone(),
                    cause,
                })
            }
            Ok(Err(_)) => return Err(PoolError::Closed(self.label.clone())),
        };
        if self.server_defaults.get().is_none() {
            let _ = self.server_defaults.set(obj.params.reported().clone());
        }
        Ok(Lease::new(obj))
    }

    /// Servers of host `host` in use plus clients waiting for one: its outstanding work.
    pub(crate) fn busy(&self, host: usize) -> usize {
        self.hosts.get(host).map_or(usize::MAX, |hp| {
            let s = hp.pool.status();
            s.size.saturating_sub(s.available) + s.waiting
        })
    }

    /// Enforces `server_idle_timeout` and `server_lifetime` on idle connections, closes
    /// the idle connections of hosts that are down (`down(host)`), and keeps `min_size`
    /// warm on the primary (`primary`, when known), so a new primary after a failover is
    /// ready before traffic arrives. Called by the janitor every second.
    pub(crate) async fn maintain(&self, primary: Option<usize>, down: impl Fn(usize) -> bool) {
        let idle = self.settings.server_idle_timeout;
        let lifetime = self.settings.server_lifetime;
        for (i, hp) in self.hosts.iter().enumerate() {
            let drain = down(i);
            let removed = hp.pool.retain(|conn, m| {
                !drain
                    && (idle.is_zero() || m.last_used() < idle)
                    && (lifetime.is_zero() || conn.created.elapsed() < lifetime)
            });
            if drain && !removed.removed.is_empty() {
                tracing::info!(pool = %self.label, host = %hp.addr, closed = removed.removed.len(), "host is down: its idle server connections are closed");
            }
            for conn in removed.removed {
                tokio::spawn(conn.terminate());
            }
        }
        let min = self.settings.min_size as usize;
        let Some(hp) = primary.and_then(|p| self.hosts.get(p)) else {
            return;
        };
        if min == 0 {
            return;
        }
        let status = hp.pool.status();
        if status.size < min {
            let mut held = Vec::new();
            for _ in status.size..min {
                match hp.pool.get().await {
                    Ok(obj) => held.push(obj),
                    Err(e) => {
                        tracing::warn!(pool = %self.label, host = %hp.addr, "cannot open warm connection: {e}");
                        break;
                    }
                }
            }
            if let Some(obj) = held.first() {
                let _ = self.server_defaults.set(obj.params.reported().clone());
            }
        }
    }

    /// Closes every pool: waiting clients get an error, idle connections close.
    pub(crate) fn close(&self) {
        for hp in &self.hosts {
            hp.pool.close();
        }
    }
}

/// Every (database, user) pool, created on first use.
#[derive(Debug, Default)]
pub(crate) struct PoolRegistry {
    /// Keyed by (client-facing database name, user name). Read at client login only.
    pools: RwLock<HashMap<(String, String), Arc<DbUserPool>>>,
}

impl PoolRegistry {
    /// The pool for (`database`, `user`), built with `make` if it does not exist yet.
    pub(crate) fn get_or_create(
        &self,
        database: &str,
        user: &str,
        make: impl FnOnce() -> DbUserPool,
    ) -> Arc<DbUserPool> {
        let key = (database.to_owned(), user.to_owned());
        if let Some(p) = self
            .pools
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return p.clone();
        }
        self.pools
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert_with(|| Arc::new(make()))
            .clone()
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
