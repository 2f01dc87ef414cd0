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

use crate::auth::{AuthConfigError, UserTable};
use crate::cancel::CancelRegistry;
use crate::cluster::DbCluster;
use crate::config::{Config, DatabaseConfig};
use crate::pool::PoolRegistry;

/// How often idle-timeout, lifetime and warm-connection upkeep runs.
const JANITOR_INTERVAL: Duration = Duration::from_secs(1);

/// A database clients can connect to.
#[derive(Debug)]
pub(crate) struct Database {
    /// Its configuration.
    pub(crate) config: DatabaseConfig,
    /// Its hosts and which is the primary.
    pub(crate) cluster: DbCluster,
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
                let db = Database {
                    config: d.clone(),
                    cluster: DbCluster::new(d.name.clone(), d.hosts.len()),
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
                for pool in shared.pools.all() {
                    pool.maintain().await;
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
