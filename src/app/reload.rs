//! RELOAD, SIGHUP and SET: loading the file again and swapping in a new snapshot without
//! dropping a client.
//!
//! Owns: the order of a reconfiguration (load, build, publish, adjust pools, retire
//! clusters) and why one is refused. Does not: parse or validate (see `config`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::SnapshotError;
use super::{Shared, Snapshot};
use crate::config::{Config, ConfigError};

/// Why a RELOAD or SET was refused; the configuration in force stays.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// weir was started from a configuration built in code.
    #[error(
        "weir was not started from a configuration file (--config FILE): nothing to reload or SET"
    )]
    NoFile,
    /// The new configuration does not load or validate.
    #[error("the configuration was not reloaded: {0}")]
    Invalid(#[from] ConfigError),
    /// The new user list or certificate is unusable.
    #[error("the configuration was not reloaded: {0}")]
    Unusable(#[from] SnapshotError),
    /// The task loading or applying it failed (a bug: it panicked).
    #[error("the configuration was not reloaded: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Shared {
    /// RELOAD / SIGHUP: reads the configuration file again and applies it. A file that
    /// does not load or validate changes nothing.
    /// Values given with SET are dropped: the file is the configuration again.
    pub(crate) async fn reload(self: &Arc<Self>) -> Result<Vec<String>, ReloadError> {
        self.reconfigure_with(None).await
    }

    /// Runs a reconfiguration to its end in a task of its own, so a caller that goes away
    /// (a console client leaving) cannot stop it halfway and let another one overlap it.
    async fn reconfigure_with(
        self: &Arc<Self>,
        set: Option<(String, String)>,
    ) -> Result<Vec<String>, ReloadError> {
        let shared = self.clone();
        tokio::spawn(async move {
            let _one_at_a_time = shared.reconfigure.lock().await;
            let mut settings = match &set {
                Some(_) => shared
                    .settings
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
                None => Vec::new(),
            };
            if let Some((key, value)) = set {
                settings.retain(|(k, _)| *k != key);
                settings.push((key, value));
            }
            let ignored = shared.apply(shared.load(settings.clone()).await?).await?;
            *shared
                .settings
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = settings;
            Ok(ignored)
        })
        .await?
    }

    /// SET: the file with `key = value` (and earlier SETs) over it, validated and applied
    /// like a RELOAD.
    pub(crate) async fn set(
        self: &Arc<Self>,
        key: &str,
        value: &str,
    ) -> Result<Vec<String>, ReloadError> {
        self.reconfigure_with(Some((key.to_owned(), value.to_owned())))
            .await
    }

    /// Loads the configuration file with `settings` over it, off the async workers.
    async fn load(&self, settings: Vec<(String, String)>) -> Result<Config, ReloadError> {
        let path = self.source.clone().ok_or(ReloadError::NoFile)?;
        let loaded = tokio::task::spawn_blocking(move || {
            crate::config::load_with_settings(&path, &settings)
        })
        .await;
        Ok(loaded??)
    }

    /// Swaps in a new configuration without dropping a client: pools are resized in
    /// place, pools whose hosts or logins changed are replaced (their clients move at
    /// their next transaction), clients of a removed database or user are told at theirs.
    /// Returns what could not change without a restart. Runs off the async workers: a
    /// changed user list derives SCRAM keys. The caller holds `reconfigure`.
    async fn apply(self: &Arc<Self>, config: Config) -> Result<Vec<String>, ReloadError> {
        let shared = self.clone();
        tokio::task::spawn_blocking(move || shared.apply_now(config)).await?
    }

    fn apply_now(&self, config: Config) -> Result<Vec<String>, ReloadError> {
        let old = self.snapshot();
        let mut ignored = Vec::new();
        if config.listen.addr != old.config.listen.addr {
            ignored.push("listen.addr".to_owned());
        }
        if config.listen.workers != old.config.listen.workers {
            ignored.push("listen.workers".to_owned());
        }
        if config.listen.reuse_port != old.config.listen.reuse_port {
            ignored.push("listen.reuse_port".to_owned());
        }
        if config.metrics != old.config.metrics {
            ignored.push("metrics.listen".to_owned());
        }
        let snap = Arc::new(Snapshot::build(config, Some(&old))?);
        snap.watch_hosts(Some(&old));
        if snap.config.auth != old.config.auth || snap.config.databases != old.config.databases {
            // What auth_query found under the old query, user or hosts is asked again.
            self.auth_cache.clear();
        }
        // The snapshot first, then its generation: a client that sees the new generation
        // finds the new snapshot.
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = snap.clone();
        self.generation.store(snap.generation, Ordering::Release);
        self.pools.publish(snap.generation);
        for pool in self.pools.all() {
            let db = snap.databases.get(&pool.database);
            let user = self.user_entry(&snap, &pool.database, &pool.user, None);
            let (Some(db), Some(user)) = (db, user) else {
                self.pools.remove(&pool);
                continue;
            };
            if snap.targets(&db.config, &user) == pool.targets() {
                pool.adopt(snap.generation, &snap.config.pool);
            } else {
                self.pools.remove(&pool);
            }
        }
        for (name, db) in &old.databases {
            let kept = snap
                .databases
                .get(name)
                .is_some_and(|n| Arc::ptr_eq(&n.cluster, &db.cluster));
            if !kept {
                db.cluster.retire();
            }
        }
        for key in &ignored {
            tracing::warn!("{key} changed: it takes effect at the next restart");
        }
        tracing::info!("configuration reloaded");
        Ok(ignored)
    }
}
