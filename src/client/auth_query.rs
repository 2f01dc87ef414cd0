//! `auth_query`: learning the verifier of a user that is not in `[[users]]` from the
//! primary, and keeping it for `auth.cache_ttl`.
//!
//! Owns: [`AuthCache`], the lookups (one short-lived server connection as `auth.user`
//! each, the user name bound as `$1`), and the entries they produced.
//! Does not: check passwords (`login` does, with the entry this returns), or list users
//! (SHOW USERS shows `[[users]]`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::app::{Database, Snapshot};
use crate::auth::UserEntry;
use crate::config::UserConfig;
use crate::server::ServerConn;

use super::SessionError;

/// Most entries kept. Past it, expired ones are dropped first; a lookup that still finds
/// no room is used for its login and not kept.
const MAX_ENTRIES: usize = 10_000;

/// One looked-up user.
struct Cached {
    /// What the user is checked against, and logs in to servers with.
    entry: Arc<UserEntry>,
    /// When the query returned it.
    fetched: Instant,
}

/// Users learned through `auth.query`, by (database as clients name it, user).
#[derive(Default)]
pub(crate) struct AuthCache {
    /// The entries.
    entries: Mutex<HashMap<(String, String), Cached>>,
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

impl AuthCache {
    /// The entry of `user`, who is not in `[[users]]`, for a login to `db`: from the cache
    /// while fresh, else from `auth.query` on the primary. `Ok(None)` when `auth_query` is
    /// off or the query finds no password for the user: the login then fails like a
    /// wrong password.
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
        let previous = {
            let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            match entries.get(&key) {
                Some(c) if c.fetched.elapsed() < auth.cache_ttl => {
                    return Ok(Some(c.entry.clone()))
                }
                Some(c) => Some(c.entry.clone()),
                None => None,
            }
        };
        let failed = |reason: String| {
            tracing::warn!(user, database = %db.config.name, "auth_query failed: {reason}");
            SessionError::AuthQuery(format!(
                "cannot look up user \"{user}\" with auth.query: {reason}"
            ))
        };
        let mut targets = snap.targets(&db.config, &auth_user);
        if let Some(dbname) = &auth.dbname {
            for t in &mut targets {
                t.dbname.clone_from(dbname);
            }
        }
        let limit = snap.config.pool.server_connect_timeout;
        let deadline = tokio::time::Instant::now() + snap.config.cluster.failover_timeout;
        let host = db.cluster.primary(&targets, limit, deadline).await?;
        let target = targets
            .get(host)
            .ok_or_else(|| failed("the database has no such host".to_owned()))?;
        let mut conn = ServerConn::connect(target, limit)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let rows = conn.query_with_param(&auth.query, user).await;
        conn.terminate().await;
        let rows = rows.map_err(|e| failed(e.to_string()))?;
        // PgBouncer's convention: the password is the last column of the first row.
        let Some(password) = rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().last().flatten())
        else {
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
                tracing::warn!(user, "auth_query returned a password weir cannot use: {e}");
                return Err(SessionError::NotAuthorized(format!(
                    "the password auth.query returned for user \"{user}\" cannot be used to log in"
                )));
            }
        };
        self.keep(key, entry.clone(), auth.cache_ttl);
        Ok(Some(entry))
    }

    /// The entry a client of `database` logged in with as `user`, fresh or not: what its
    /// session keeps using (and its pool is built for) until it leaves.
    pub(crate) fn known(&self, database: &str, user: &str) -> Option<Arc<UserEntry>> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(database.to_owned(), user.to_owned()))
            .map(|c| c.entry.clone())
    }

    /// Stores a fresh entry, making room by dropping expired ones.
    fn keep(&self, key: (String, String), entry: Arc<UserEntry>, ttl: std::time::Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, c| c.fetched.elapsed() < ttl);
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
