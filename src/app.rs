//! Assembles a running weir: shared state, the listener, the janitor, shutdown.
//!
//! Owns: `Shared` (the one piece of state every task sees) and the `Weir` handle.
//! Does not: parse configuration files (see `config`) or serve clients (see `client`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::{AuthConfigError, ServerPassword, UserEntry, UserTable};
use crate::cancel::CancelRegistry;
use crate::client::Reason;
use crate::cluster::DbCluster;
use crate::config::{Config, DatabaseConfig, UserConfig};
use crate::control::DbControl;
use crate::metrics::names;
use crate::pool::{DbUserPool, PoolRegistry, Want};
use crate::router::WriteFunctions;
use crate::server::{ServerTarget, ServerTls};

mod reload;
mod socket;

/// How often idle-timeout, lifetime and warm-connection upkeep runs.
const JANITOR_INTERVAL: Duration = Duration::from_secs(1);

/// A database clients can connect to.
#[derive(Debug)]
pub(crate) struct Database {
    /// Its configuration.
    pub(crate) config: DatabaseConfig,
    /// Its hosts: roles, health, lag; shared with their health-check tasks.
    pub(crate) cluster: Arc<DbCluster>,
    /// Where its transactions went.
    pub(crate) counters: RouteCounters,
    /// PAUSE and DISABLE; carried over by RELOAD.
    pub(crate) control: Arc<DbControl>,
}

/// Routing counters of one database, made once so the hot path does not look them up.
#[derive(Debug)]
pub(crate) struct RouteCounters {
    /// Transactions given a primary server.
    pub(crate) primary: metrics::Counter,
    /// Transactions given a replica server.
    pub(crate) replica: metrics::Counter,
    /// Requests sqlparser could not parse (sent to the primary).
    pub(crate) unparsed: metrics::Counter,
    /// Decisions by reason (`Reason::index`), to the primary and to a replica.
    decisions: [Vec<metrics::Counter>; 2],
}

impl RouteCounters {
    fn new(database: &str) -> Self {
        let routed = |role: &'static str| metrics::counter!(names::ROUTED_TOTAL, "database" => database.to_owned(), "role" => role);
        let decided = |target: &'static str| {
            Reason::ALL
                .iter()
                .map(|r| metrics::counter!(names::ROUTING_DECISIONS_TOTAL, "database" => database.to_owned(), "target" => target, "reason" => r.as_str()))
                .collect()
        };
        Self {
            primary: routed("primary"),
            replica: routed("replica"),
            unparsed: metrics::counter!(names::ROUTER_UNPARSED_TOTAL, "database" => database.to_owned()),
            decisions: [decided("primary"), decided("replica")],
        }
    }

    /// Counts one transaction given to the primary or a replica, and why.
    pub(crate) fn routed(&self, replica: bool, why: Reason) {
        let (role, target) = if replica {
            (&self.replica, 1)
        } else {
            (&self.primary, 0)
        };
        role.increment(1);
        if let Some(c) = self.decisions.get(target).and_then(|d| d.get(why.index())) {
            c.increment(1);
        }
    }
}

/// Configuration and everything derived from it, swapped whole on reload.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The validated configuration.
    pub(crate) config: Config,
    /// Users with their derived keys (shared with the previous snapshot when `[[users]]`
    /// did not change, so SET and RELOAD do not derive every key again).
    pub(crate) users: Arc<UserTable>,
    /// Databases by client-facing name.
    pub(crate) databases: HashMap<String, Arc<Database>>,
    /// 0 for the configuration weir started with, then one more per RELOAD or SET.
    pub(crate) generation: u64,
    /// What TLS clients are offered (`[tls]` with a mode other than `disable`), with the
    /// certificate as read when this snapshot was built.
    pub(crate) tls: Option<crate::net::tls::Offered>,
    /// TLS toward the servers, for every `ServerTarget` of this snapshot.
    pub(crate) server_tls: ServerTls,
}

/// Why a configuration that validated cannot be put to use.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    /// The user list is unusable.
    #[error(transparent)]
    Users(#[from] AuthConfigError),
    /// The certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsConfigError),
}

impl Snapshot {
    /// Derives users and databases from a validated configuration. With `previous` (a
    /// reload), a database whose hosts, health-check and routing settings did not change
    /// keeps its cluster (and what the health checks know), and every database keeps its
    /// PAUSE / DISABLE switches.
    pub(crate) fn build(
        config: Config,
        previous: Option<&Snapshot>,
    ) -> Result<Self, SnapshotError> {
        let tls = crate::net::tls::offered(&config)?;
        let server_tls = ServerTls {
            settings: config.server_tls.clone(),
            config: crate::net::tls::client_config(&config.server_tls)?,
        };
        let users = match previous {
            Some(p)
                if p.config.auth.method == config.auth.method
                    && p.config
                        .users
                        .iter()
                        .map(UserConfig::credentials)
                        .eq(config.users.iter().map(UserConfig::credentials)) =>
            {
                p.users.clone()
            }
            _ => Arc::new(UserTable::build(
                &config.users,
                config.auth.method,
                previous.map(|p| &*p.users),
            )?),
        };
        let databases = config
            .databases
            .iter()
            .map(|d| {
                let old = previous.and_then(|p| p.databases.get(&d.name));
                let same_cluster = |o: &&Arc<Database>| {
                    let p = &previous.map(|p| &p.config);
                    o.config.hosts == d.hosts
                        && p.is_some_and(|p| {
                            p.cluster == config.cluster && p.routing == config.routing
                        })
                };
                let cluster = match old.filter(same_cluster) {
                    Some(o) => o.cluster.clone(),
                    None => {
                        let routing = &config.routing;
                        let functions =
                            WriteFunctions::new(&routing.write_functions, &routing.read_functions);
                        let addrs = d.hosts.iter().map(ToString::to_string).collect();
                        Arc::new(DbCluster::new(
                            d.name.clone(),
                            addrs,
                            functions,
                            config.cluster.clone(),
                        ))
                    }
                };
                let db = Database {
                    config: d.clone(),
                    cluster,
                    counters: RouteCounters::new(&d.name),
                    control: old.map(|o| o.control.clone()).unwrap_or_default(),
                };
                (d.name.clone(), Arc::new(db))
            })
            .collect();
        Ok(Self {
            config,
            users,
            databases,
            generation: previous.map_or(0, |p| p.generation + 1),
            tls,
            server_tls,
        })
    }

    /// The pool of (`db`, `user`) for a client of this snapshot.
    pub(crate) fn pool(
        &self,
        pools: &PoolRegistry,
        db: &DatabaseConfig,
        user: &UserEntry,
    ) -> Arc<DbUserPool> {
        let targets = self.targets(db, user);
        let want = Want {
            generation: self.generation,
            targets: &targets,
            settings: &self.config.pool,
        };
        pools.pool_for(&db.name, &user.name, &want)
    }

    /// Logins for the hosts of `db` as `user`, in configuration order.
    pub(crate) fn targets(&self, db: &DatabaseConfig, user: &UserEntry) -> Vec<ServerTarget> {
        db.hosts
            .iter()
            .map(|h| ServerTarget {
                host: h.host.clone(),
                port: h.port,
                dbname: db.dbname.clone(),
                user: user.name.clone(),
                password: user.server_password.clone(),
                tls: self.server_tls.clone(),
            })
            .collect()
    }

    /// The user health checks log in as: `cluster.health_check_user`, else the first user
    /// with a password servers can be answered with, else the first user.
    fn health_check_user(&self) -> Option<Arc<UserEntry>> {
        if let Some(name) = &self.config.cluster.health_check_user {
            return self.users.get(name);
        }
        let entries: Vec<Arc<UserEntry>> = self
            .config
            .users
            .iter()
            .filter_map(|u| self.users.get(&u.name))
            .collect();
        entries
            .iter()
            .find(|u| {
                matches!(
                    u.server_password,
                    ServerPassword::Plain(_) | ServerPassword::Md5(_)
                )
            })
            .or_else(|| entries.first())
            .cloned()
    }

    /// Starts one health-check task per host of every database with several hosts, and
    /// with `cluster.auto_promote` one promotion task per such database. Databases whose
    /// cluster came from `previous` already have theirs. The tasks end when their cluster
    /// is retired (a reload replaced it, or shutdown).
    fn watch_hosts(&self, previous: Option<&Snapshot>) {
        let inherited = |db: &Database| {
            previous
                .and_then(|p| p.databases.get(&db.config.name))
                .is_some_and(|o| Arc::ptr_eq(&o.cluster, &db.cluster))
        };
        let Some(user) = self.health_check_user() else {
            tracing::warn!("no [[users]] entry to run health checks as: replicas get no reads");
            return;
        };
        let routing = &self.config.routing;
        // A single host is the primary by definition and has nothing to route: it gets
        // no extra connection, so `pool.size` stays the exact count of weir's servers.
        for db in self
            .databases
            .values()
            .filter(|db| db.config.hosts.len() > 1 && !inherited(db))
        {
            for (index, target) in self.targets(&db.config, &user).into_iter().enumerate() {
                tokio::spawn(db.cluster.clone().watch(
                    index,
                    target,
                    self.config.cluster.clone(),
                    (
                        routing.write_functions.clone(),
                        routing.read_functions.clone(),
                    ),
                    db.cluster.stop_signal(),
                ));
            }
            if self.config.cluster.auto_promote {
                let promoter = match &self.config.cluster.promote_user {
                    Some(name) => self.users.get(name),
                    None => Some(user.clone()),
                };
                if let Some(promoter) = promoter {
                    tokio::spawn(db.cluster.clone().promote_when_needed(
                        self.targets(&db.config, &promoter),
                        self.config.cluster.clone(),
                        db.cluster.stop_signal(),
                    ));
                }
            }
        }
    }
}

/// State shared by every task, passed explicitly as one `Arc`.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The current snapshot; readers clone the `Arc` and work lock-free.
    snapshot: RwLock<Arc<Snapshot>>,
    /// Client cancel keys.
    pub(crate) cancel: Arc<CancelRegistry>,
    /// Clients per user and per database, for their `max_client_conn`.
    pub(crate) limits: Arc<crate::limits::ClientLimits>,
    /// Server pools.
    pub(crate) pools: PoolRegistry,
    /// Connected clients (for `max_client_conn`).
    pub(crate) clients: AtomicUsize,
    /// `true` once shutdown began: clients leave after their transaction.
    pub(crate) shutdown: watch::Sender<bool>,
    /// `true` once weir stopped taking new clients (SHUTDOWN WAIT_FOR_CLIENTS, or shutdown).
    pub(crate) closing: watch::Sender<bool>,
    /// `true` once every client is gone: the metrics listener (which answers 503 while
    /// weir shuts down) stops then.
    pub(crate) stopped: watch::Sender<bool>,
    /// The generation of the snapshot in force (`Snapshot::generation`), set after each
    /// swap: a client compares it with its own snapshot's before each transaction.
    generation: AtomicU64,
    /// The file the configuration came from, for RELOAD and SIGHUP.
    source: Option<PathBuf>,
    /// Serialises reconfiguration (RELOAD, SIGHUP, SET), from loading the file to storing
    /// the SET values.
    reconfigure: tokio::sync::Mutex<()>,
    /// Values given with SET since the last RELOAD, applied over the file.
    settings: Mutex<Vec<(String, String)>>,
    /// Totals per database, sampled by the janitor, for SHOW STATS_AVERAGES.
    pub(crate) history: crate::stats::StatsHistory,
    /// Failed logins by client address, for `auth.failure_delay`.
    pub(crate) failures: crate::limits::Failures,
    /// Users learned through `auth.query`.
    pub(crate) auth_cache: crate::client::AuthCache,
}

impl Shared {
    /// The entry of `user` for a client of `database` under `snap`: its `[[users]]` entry;
    /// else, while `auth.user` is set, what `auth.query` last returned for it (so every
    /// session of the user follows a changed verifier to the same pool), or, if the cache
    /// no longer has it, `looked_up`, the entry the client's own login used.
    pub(crate) fn user_entry(
        &self,
        snap: &Snapshot,
        database: &str,
        user: &str,
        looked_up: Option<&Arc<UserEntry>>,
    ) -> Option<Arc<UserEntry>> {
        snap.users.get(user).or_else(|| {
            snap.config.auth.user.as_ref()?;
            self.auth_cache
                .known(database, user)
                .or_else(|| looked_up.cloned())
        })
    }

    /// The configuration snapshot in force now.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The snapshot generation now (see `generation`).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Why weir could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The user list is unusable.
    #[error(transparent)]
    Users(Box<dyn std::error::Error + Send + Sync>),
    /// A certificate, key or CA file (`[tls]`, `[server_tls]`) is unusable.
    #[error(transparent)]
    Tls(Box<dyn std::error::Error + Send + Sync>),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another socket holds the client address: another program, or another weir when
    /// not every process on the port sets `listen.reuse_port`.
    #[error(
        "cannot listen on {addr}: {source}: another process listens there (to run several weir processes on one port, set listen.reuse_port = true in every one of them)"
    )]
    AddrInUse {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// One backend host as [`Weir::hosts`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    /// `host:port` as configured.
    pub addr: String,
    /// `primary`, `replica`, or `unknown` before its first answer.
    pub role: &'static str,
    /// Whether its last health check succeeded.
    pub healthy: bool,
    /// A replica's distance behind the primary, in bytes of WAL.
    pub lag_bytes: Option<u64>,
    /// A replica's delay (zero when caught up).
    pub lag: Option<Duration>,
    /// When its role last changed (from unknown too).
    pub last_role_change: Option<SystemTime>,
}

/// A running weir. Dropping it does not stop it; call [`Weir::shutdown`].
#[derive(Debug)]
pub struct Weir {
    /// The address clients connect to.
    addr: SocketAddr,
    /// The address of the metrics listener, if any.
    metrics_addr: Option<SocketAddr>,
    /// Shared state, for shutdown.
    shared: Arc<Shared>,
    /// The listener task; ends when every client is gone or the shutdown timeout passed.
    listener: tokio::task::JoinHandle<()>,
}

impl Weir {
    /// Binds the listener and starts serving. Must run inside a tokio runtime. RELOAD has
    /// no file to read; see [`Weir::start_from_file`].
    pub async fn start(config: Config) -> Result<Weir, StartError> {
        Self::start_with_source(config, None).await
    }

    /// [`Weir::start`] for a configuration loaded from `path`, which RELOAD and SIGHUP
    /// read again.
    pub async fn start_from_file(config: Config, path: &Path) -> Result<Weir, StartError> {
        Self::start_with_source(config, Some(path.to_path_buf())).await
    }

    async fn start_with_source(
        config: Config,
        source: Option<PathBuf>,
    ) -> Result<Weir, StartError> {
        let listen = config.listen.addr;
        let socket = socket::bind(&config.listen)?;
        let addr = socket.local_addr().map_err(|source| StartError::Listen {
            addr: listen,
            source,
        })?;
        let metrics = config.metrics.clone();
        if metrics.is_some() {
            // Before anything makes its metric handles, or they would record nowhere.
            crate::metrics::handle();
        }
        let snapshot = Snapshot::build(config, None).map_err(|e| match e {
            SnapshotError::Users(e) => StartError::Users(Box::new(e)),
            SnapshotError::Tls(e) => StartError::Tls(Box::new(e)),
        })?;
        snapshot.watch_hosts(None);
        let shared = Arc::new(Shared {
            snapshot: RwLock::new(Arc::new(snapshot)),
            cancel: Arc::new(CancelRegistry::default()),
            pools: PoolRegistry::default(),
            clients: AtomicUsize::new(0),
            limits: Arc::default(),
            shutdown: watch::channel(false).0,
            closing: watch::channel(false).0,
            stopped: watch::channel(false).0,
            generation: AtomicU64::new(0),
            source,
            reconfigure: tokio::sync::Mutex::new(()),
            settings: Mutex::new(Vec::new()),
            history: Default::default(),
            auth_cache: Default::default(),
            failures: Default::default(),
        });
        let metrics_addr = match metrics {
            Some(m) => Some(crate::http::start(m.listen, shared.clone()).await.map_err(
                |source| StartError::Listen {
                    addr: m.listen,
                    source,
                },
            )?),
            None => None,
        };
        tokio::spawn(janitor(shared.clone()));
        tokio::spawn(retire_on_shutdown(shared.clone()));
        let listener = tokio::spawn(listen_loop(socket, shared.clone()));
        tracing::info!(%addr, "weir is accepting clients");
        Ok(Weir {
            addr,
            metrics_addr,
            shared,
            listener,
        })
    }

    /// The address `/metrics` and `/health` are served on, when `[metrics]` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The address weir listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hosts of `database` as the health checks see them now (empty for an unknown
    /// database); what `SHOW HOSTS` will print.
    pub fn hosts(&self, database: &str) -> Vec<HostReport> {
        let snap = self.shared.snapshot();
        let Some(db) = snap.databases.get(database) else {
            return Vec::new();
        };
        db.cluster
            .hosts()
            .into_iter()
            .map(|h| HostReport {
                addr: h.addr,
                role: h.role.as_str(),
                healthy: h.healthy,
                lag_bytes: h.lag_bytes,
                lag: h.lag,
                last_role_change: h.last_role_change,
            })
            .collect()
    }

    /// Stops accepting, lets running transactions finish (up to `listen.shutdown_timeout`),
    /// tells idle clients weir is going away, and closes everything.
    pub async fn shutdown(self) {
        let _ = self.shared.shutdown.send(true);
        let _ = self.listener.await;
        for pool in self.shared.pools.all() {
            pool.close();
        }
    }

    /// Waits until a shutdown started elsewhere (e.g. a signal handler) has finished.
    pub async fn wait(self) {
        let _ = self.listener.await;
    }

    /// A handle that can start a shutdown while the caller waits on [`Weir::wait`].
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger(self.shared.clone())
    }
}

/// Starts a graceful shutdown (or a reload) from another task (a signal handler).
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(Arc<Shared>);

impl ShutdownTrigger {
    /// Begins the shutdown; see [`Weir::shutdown`].
    pub fn trigger(&self) {
        let _ = self.0.shutdown.send(true);
    }

    /// Reads the configuration file again and applies it (SIGHUP). On error the
    /// configuration in force stays, and the reason is returned.
    pub async fn reload(&self) -> Result<(), String> {
        self.0.reload().await.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// Decrements the client count when a client task ends, however it ends.
struct ClientCount(Arc<Shared>);

impl Drop for ClientCount {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn listen_loop(socket: TcpListener, shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    let mut shutdown = shared.shutdown.subscribe();
    let mut closing = shared.closing.subscribe();
    loop {
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, _peer)) => spawn_client(&mut tasks, stream, &shared),
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => break,
            _ = closing.changed() => break,
        }
    }
    drop(socket);
    let _ = shared.closing.send(true);
    if !*shared.shutdown.borrow() {
        // SHUTDOWN WAIT_FOR_CLIENTS: no new clients; the others leave when they want,
        // unless a plain shutdown comes meanwhile.
        tracing::info!(
            clients = tasks.len(),
            "not accepting new clients: waiting for the connected ones to leave"
        );
        let drain = async { while tasks.join_next().await.is_some() {} };
        tokio::select! {
            _ = drain => {}
            _ = shutdown.wait_for(|down| *down) => {}
        }
        let _ = shared.shutdown.send(true);
    }
    shared.cancel.wake_all();
    let limit = shared.snapshot().config.listen.shutdown_timeout;
    tracing::info!(
        clients = tasks.len(),
        "shutting down: waiting up to {limit:?} for transactions to finish"
    );
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(limit, drain).await.is_err() {
        tracing::warn!(
            clients = tasks.len(),
            "shutdown timeout reached: closing remaining clients"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let _ = shared.stopped.send(true);
}

fn spawn_client(tasks: &mut JoinSet<()>, stream: TcpStream, shared: &Arc<Shared>) {
    shared.clients.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(names::CLIENTS_ACCEPTED_TOTAL).increment(1);
    let guard = ClientCount(shared.clone());
    let shared = shared.clone();
    // Boxed: a client's future is kilobytes, and spawning moves it several times (into
    // the task's cell, and its stages); a box moves as a pointer.
    tasks.spawn(Box::pin(async move {
        let _guard = guard;
        crate::client::serve(stream, shared).await;
    }));
}

/// Stops the health checks of the clusters in force when weir shuts down.
async fn retire_on_shutdown(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let _ = shutdown.wait_for(|down| *down).await;
    for db in shared.snapshot().databases.values() {
        db.cluster.retire();
    }
}

async fn janitor(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut tick = tokio::time::interval(JANITOR_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                shared.history.sample(shared.pools.totals_by_database());
                shared.pools.sweep_retired();
                if let Some(handle) = crate::metrics::handle_if_installed() {
                    // Histogram samples wait in buffers until upkeep folds them in.
                    handle.run_upkeep();
                }
                let snap = shared.snapshot();
                for pool in shared.pools.all() {
                    match snap.databases.get(&pool.database) {
                        Some(db) => {
                            let cluster = &db.cluster;
                            let primary = cluster.primary_index();
                            pool.maintain(primary, |h| cluster.is_down(h)).await;
                        }
                        None => pool.maintain(None, |_| false).await,
                    }
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
