//! Backend hosts of each database and which one is the primary.
//!
//! Owns: the primary of each database, found with `pg_is_in_recovery()` over a
//! short-lived connection. Health checks, lag and failover build on this.
//! Does not: pool connections or route statements.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::server::{BackendError, ServerConn, ServerTarget};

/// No primary known yet.
const UNKNOWN: usize = usize::MAX;

/// Why no primary could be found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClusterError {
    /// Every host was down or in recovery.
    #[error("no primary among the hosts of database {database}: {detail}")]
    NoPrimary {
        /// Client-facing database name.
        database: String,
        /// What each host said.
        detail: String,
    },
}

/// The hosts of one database and what weir knows about them.
#[derive(Debug)]
pub(crate) struct DbCluster {
    /// Client-facing name.
    pub(crate) name: String,
    /// Index of the primary in the configured host list, or `UNKNOWN`.
    primary: AtomicUsize,
    /// Serialises probing so a burst of clients probes once.
    probe_lock: tokio::sync::Mutex<()>,
    /// Number of hosts.
    hosts: usize,
}

impl DbCluster {
    /// A database with `hosts` hosts; a single host is the primary without asking.
    pub(crate) fn new(name: String, hosts: usize) -> Self {
        Self {
            name,
            primary: AtomicUsize::new(if hosts == 1 { 0 } else { UNKNOWN }),
            probe_lock: tokio::sync::Mutex::new(()),
            hosts,
        }
    }

    /// The primary's index, probing the hosts (as the given logins) when unknown.
    pub(crate) async fn primary(
        &self,
        targets: &[ServerTarget],
        limit: Duration,
    ) -> Result<usize, ClusterError> {
        let known = self.primary.load(Ordering::Acquire);
        if known != UNKNOWN {
            return Ok(known);
        }
        let _guard = self.probe_lock.lock().await;
        let known = self.primary.load(Ordering::Acquire);
        if known != UNKNOWN {
            return Ok(known);
        }
        let mut detail = Vec::new();
        for (i, target) in targets.iter().enumerate().take(self.hosts) {
            match probe(target, limit).await {
                Ok(false) => {
                    self.primary.store(i, Ordering::Release);
                    tracing::info!(database = %self.name, host = %format!("{}:{}", target.host, target.port), "primary found");
                    return Ok(i);
                }
                Ok(true) => detail.push(format!("{}:{} is in recovery", target.host, target.port)),
                Err(e) => detail.push(format!("{}:{}: {e}", target.host, target.port)),
            }
        }
        Err(ClusterError::NoPrimary {
            database: self.name.clone(),
            detail: detail.join("; "),
        })
    }

    /// Forgets the primary (its connections failed); the next transaction probes again.
    pub(crate) fn primary_failed(&self, index: usize) {
        if self.hosts > 1 {
            let _ =
                self.primary
                    .compare_exchange(index, UNKNOWN, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// Whether the host is in recovery (a replica).
async fn probe(target: &ServerTarget, limit: Duration) -> Result<bool, BackendError> {
    let mut conn = ServerConn::connect(target, limit).await?;
    let rows = tokio::time::timeout(
        limit,
        conn.simple_query("SELECT pg_catalog.pg_is_in_recovery()"),
    )
    .await
    .map_err(|_| BackendError::LoginTimeout(format!("{}:{}", target.host, target.port)))??;
    conn.terminate().await;
    Ok(matches!(rows.first().and_then(|r| r.first()), Some(Some(v)) if v == "t"))
}
