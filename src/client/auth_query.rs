//! `auth_query`: learning the verifier of a user that is not in `[[users]]` from the
//! primary, and keeping it for `auth.cache_ttl`.
//!
//! Owns: [`AuthCache`], the lookups (one short-lived server connection as `auth.user`
//! each, the user name bound as `$1`), and the entries they produced.
//! Does not: check passwords (`login` does, with the entry this returns), or list users
//! (SHOW USERS shows `[[users]]`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::app::{Database, Snapshot};
use crate::auth::UserEntry;
use crate::config::UserConfig;
use crate::server::ServerConn;

use super::SessionError;

/// Most entries kept. Past it, expired ones are dropped first; a lookup that still finds
/// no room is used for its login and not kept.
const MAX_ENTRIES: usize = 10_000;

/// Lookups running at once: each is a server connection, opened before any password is
/// checked, so a stream of made-up names must not turn into a stream of connections.
const MAX_LOOKUPS: usize = 4;

/// How long a name the query did not find stays "not found" (or `auth.cache_ttl`, if
/// shorter): long enough to absorb a burst of guesses, short enough for a new role.
const NOT_FOUND_TTL: Duration = Duration::from_secs(5);

/// One looked-up user.
struct Cached {
    /// What the user is checked against and logs in to servers with; `None` when the
    /// query found no password for the name.
    entry: Option<Arc<UserEntry>>,
    /// When the query returned it.
    fetched: Instant,
}

impl Cached {
    /// Still usable under `ttl`; a name not found for at most `NOT_FOUND_TTL`.
    fn fresh(&self, ttl: Duration) -> bool {
        let ttl = if self.entry.is_some() {
            ttl
        } else {
            ttl.min(NOT_FOUND_TTL)
        };
        self.fetched.elapsed() < ttl
    }
}

/// Users learned through `auth.query`, by (database as clients name it, user).
pub(crate) struct AuthCache {
    /// The entries.
    entries: Mutex<HashMap<(String, String), Cached>>,
    /// Permits for `MAX_LOOKUPS` lookups at once.
    lookups: tokio::sync::Semaphore,
}

impl Default for AuthCache {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            lookups: tokio::sync::Semaphore::new(MAX_LOOKUPS),
        }
    }
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("AuthCache").field("entries", &len).finish()
    }
}

/// What the cache holds for a key.
enum Hit {
    /// Fresh: use it (`None`: the name is not a user).
    Fresh(Option<Arc<UserEntry>>),
    /// Stale or absent; the previous entry, if any, keeps what pass-through learned.
    Stale(Option<Arc<UserEntry>>),
}

impl AuthCache {
    /// The entry of `user`, who is not in `[[users]]`, for a login to `db`: from the cache
    /// while fresh, else from `auth.query` on the primary. `Ok(None)` when `auth_query` is
    /// off or the query finds no password for the user: the login then fails like a
    /// wrong password. Details of a failure go to the log, not to the client, who has not
    /// logged in yet.
    pub(crate) async fn lookup(
        &self,
        snap: &Snapshot,
        db: &Database,
        user: &str,
    ) -> Result<Option<Arc<UserEntry>>, SessionError> {
        let auth = &snap.config.auth;
        let Some(auth_user) = auth.user.as_deref().and_then(|n| snap.users.get(n)) else {
            return Ok(None);
        };
        let key = (db.config.name.clone(), user.to_owned());
        if let Hit::Fresh(entry) = self.hit(&key, auth.cache_ttl) {
            return Ok(entry);
        }
        let failed = |reason: String| {
            tracing::warn!(user, database = %db.config.name, "auth_query failed: {reason}");
            SessionError::AuthQuery {
                user: user.to_owned(),
            }
        };
        let mut targets = snap.targets(&db.config, &auth_user);
        if let Some(dbname) = &auth.dbname {
            for t in &mut targets {
                t.dbname.clone_from(dbname);
            }
        }
        let limit = snap.config.pool.server_connect_timeout;
        let deadline = tokio::time::Instant::now() + snap.config.cluster.failover_timeout;
        // The primary first, without a permit: a database waiting out a failover must not
        // hold back lookups for the others.
        let host = db
            .cluster
            .primary(&targets, limit, deadline)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let target = targets
            .get(host)
            .ok_or_else(|| failed("the database has no such host".to_owned()))?;
        let _permit = tokio::time::timeout(limit, self.lookups.acquire())
            .await
            .map_err(|_| {
                failed(format!(
                    "{MAX_LOOKUPS} lookups already running for {limit:?}"
                ))
            })?
            .map_err(|e| failed(e.to_string()))?;
        // Another login may have looked the same name up while this one waited.
        let previous = match self.hit(&key, auth.cache_ttl) {
            Hit::Fresh(entry) => return Ok(entry),
            Hit::Stale(previous) => previous,
        };
        let mut conn = ServerConn::connect(target, limit)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let rows = tokio::time::timeout(limit, conn.query_with_param(&auth.query, user)).await;
        // The Terminate goes out on its own time, not the next lookup's.
        tokio::spawn(conn.terminate());
        let rows = rows
            .map_err(|_| {
                failed(format!(
                    "no answer within server_connect_timeout ({limit:?})"
                ))
            })?
            .map_err(|e| failed(e.to_string()))?;
        // PgBouncer's convention: the password is the last column of the first row.
        let Some(password) = rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().last().flatten())
        else {
            self.keep(key, None, auth.cache_ttl);
            return Ok(None);
        };
        let config = UserConfig {
            name: user.to_owned(),
            password: Some(password),
            auth_method: None,
            max_client_conn: None,
            previous_passwords: Vec::new(),
        };
        let method = auth.method;
        // Deriving keys from a plaintext password is PBKDF2: off the async workers.
        let built = tokio::task::spawn_blocking(move || {
            UserEntry::build(&config, 0, method, previous.as_deref())
        })
        .await
        .map_err(|e| failed(e.to_string()))?;
        let entry = match built {
            Ok(entry) => Arc::new(entry),
            Err(e) => {
                // Refused like a wrong password: a stranger learns nothing about the name.
                tracing::warn!(user, "auth_query returned a password weir cannot use: {e}");
                self.keep(key, None, auth.cache_ttl);
                return Ok(None);
            }
        };
        self.keep(key, Some(entry.clone()), auth.cache_ttl);
        Ok(Some(entry))
    }

    /// What the cache holds for `key` under `ttl`.
    fn hit(&self, key: &(String, String), ttl: Duration) -> Hit {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key) {
            Some(c) if c.fresh(ttl) => Hit::Fresh(c.entry.clone()),
            Some(c) => Hit::Stale(c.entry.clone()),
            None => Hit::Stale(None),
        }
    }

    /// Forgets every entry: a RELOAD changed `[auth]` or a database, so what a lookup
    /// found may no longer be what it would find. Sessions keep the entries they hold.
    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The entry a client of `database` last logged in with as `user`, fresh or not: what
    /// a RELOAD keeps the user's pool for.
    pub(crate) fn known(&self, database: &str, user: &str) -> Option<Arc<UserEntry>> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(database.to_owned(), user.to_owned()))
            .and_then(|c| c.entry.clone())
    }

    /// Stores what a lookup found, making room by dropping expired entries.
    fn keep(&self, key: (String, String), entry: Option<Arc<UserEntry>>, ttl: Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, c| c.fresh(ttl));
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(
            key,
            Cached {
                entry,
                fetched: Instant::now(),
            },
        );
    }
}
