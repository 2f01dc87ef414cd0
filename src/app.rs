//! Assembles a running weir: shared state, the listener, the janitor, shutdown.
//!
//! Owns: `Shared` (the one piece of state every task sees) and the `Weir` handle.
//! Does not: parse configuration files (see `config`) or serve clients (see `client`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::{AuthConfigError, ServerPassword, UserEntry, UserTable};
use crate::cancel::CancelRegistry;
use crate::cluster::DbCluster;
use crate::config::{Config, DatabaseConfig};
use crate::metrics::names;
use crate::pool::PoolRegistry;
use crate::router::WriteFunctions;
use crate::server::ServerTarget;

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
}

impl RouteCounters {
    fn new(database: &str) -> Self {
        let routed = |role: &'static str| metrics::counter!(names::ROUTED_TOTAL, "database" => database.to_owned(), "role" => role);
        Self {
            primary: routed("primary"),
            replica: routed("replica"),
            unparsed: metrics::counter!(names::ROUTER_UNPARSED_TOTAL, "database" => database.to_owned()),
        }
    }
}

/// Configuration and everything derived from it, swapped whole on reload.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The validated configuration.
    pub(crate) config: Config,
    /// Users with their derived keys.
    pub(crate) users: UserTable,
    /// Databases by client-facing name.
    pub(crate) databases: HashMap<String, Arc<Database>>,
}

impl Snapshot {
    /// Derives users and databases from a validated configuration.
    pub(crate) fn build(config: Config) -> Result<Self, AuthConfigError> {
        let users = UserTable::build(&config.users, config.auth.method)?;
        let databases = config
            .databases
            .iter()
            .map(|d| {
                let routing = &config.routing;
                let functions =
                    WriteFunctions::new(&routing.write_functions, &routing.read_functions);
                let addrs = d.hosts.iter().map(ToString::to_string).collect();
                let db = Database {
                    config: d.clone(),
                    cluster: Arc::new(DbCluster::new(
                        d.name.clone(),
                        addrs,
                        functions,
                        config.cluster.clone(),
                    )),
                    counters: RouteCounters::new(&d.name),
                };
                (d.name.clone(), Arc::new(db))
            })
            .collect();
        Ok(Self {
            config,
            users,
            databases,
        })
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
    /// with `cluster.auto_promote` one promotion task per such database.
    fn watch_hosts(&self, shutdown: &watch::Sender<bool>) {
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
            .filter(|db| db.config.hosts.len() > 1)
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
                    shutdown.subscribe(),
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
                        shutdown.subscribe(),
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
    /// Server pools.
    pub(crate) pools: PoolRegistry,
    /// Connected clients (for `max_client_conn`).
    pub(crate) clients: AtomicUsize,
    /// `true` once shutdown began.
    pub(crate) shutdown: watch::Sender<bool>,
}

impl Shared {
    /// The configuration snapshot in force now.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Why weir could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The user list is unusable.
    #[error(transparent)]
    Users(Box<dyn std::error::Error + Send + Sync>),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
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
}

/// A running weir. Dropping it does not stop it; call [`Weir::shutdown`].
#[derive(Debug)]
pub struct Weir {
    /// The address clients connect to.
    addr: SocketAddr,
    /// Shared state, for shutdown.
    shared: Arc<Shared>,
    /// The listener task; ends when every client is gone or the shutdown timeout passed.
    listener: tokio::task::JoinHandle<()>,
}

impl Weir {
    /// Binds the listener and starts serving. Must run inside a tokio runtime.
    pub async fn start(config: Config) -> Result<Weir, StartError> {
        let listen = config.listen.addr;
        let socket = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: listen,
                source,
            })?;
        let addr = socket.local_addr().map_err(|source| StartError::Listen {
            addr: listen,
            source,
        })?;
        if let Some(m) = &config.metrics {
            crate::metrics::install(m.listen);
        }
        let snapshot = Snapshot::build(config).map_err(|e| StartError::Users(Box::new(e)))?;
        let (shutdown, _) = watch::channel(false);
        snapshot.watch_hosts(&shutdown);
        let shared = Arc::new(Shared {
            snapshot: RwLock::new(Arc::new(snapshot)),
            cancel: Arc::new(CancelRegistry::default()),
            pools: PoolRegistry::default(),
            clients: AtomicUsize::new(0),
            shutdown,
        });
        tokio::spawn(janitor(shared.clone()));
        let listener = tokio::spawn(listen_loop(socket, shared.clone()));
        tracing::info!(%addr, "weir is accepting clients");
        Ok(Weir {
            addr,
            shared,
            listener,
        })
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

/// Starts a graceful shutdown from another task (a signal handler).
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(Arc<Shared>);

impl ShutdownTrigger {
    /// Begins the shutdown; see [`Weir::shutdown`].
    pub fn trigger(&self) {
        let _ = self.0.shutdown.send(true);
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
        }
    }
    drop(socket);
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
}

fn spawn_client(tasks: &mut JoinSet<()>, stream: TcpStream, shared: &Arc<Shared>) {
    shared.clients.fetch_add(1, Ordering::Relaxed);
    let guard = ClientCount(shared.clone());
    let shared = shared.clone();
    tasks.spawn(async move {
        let _guard = guard;
        crate::client::serve(stream, shared).await;
    });
}

async fn janitor(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut tick = tokio::time::interval(JANITOR_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let snap = shared.snapshot();
                for pool in shared.pools.all() {
                    match snap.databases.get(&pool.database) {
                        Some(db) => {
                            let cluster = &db.cluster;
                            pool.maintain(cluster.primary_index(), |h| cluster.is_down(h)).await;
                        }
                        None => pool.maintain(None, |_| false).await,
                    }
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
