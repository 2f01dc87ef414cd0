//! SHOW CONFIG and SET: weir's settings by key path, their values now and by default,
//! and which of them a RELOAD or SET applies without a restart.
//!
//! Owns: the list of keys the console shows, and PgBouncer's names for the ones SET
//! accepts under those names. Does not: validate values (SET goes through the same
//! loader as the file, see `config::load_with_settings`).

use std::time::Duration;

use crate::config::{Config, PrimaryReads, TransactionRouting};

/// One key: its path, how to print it, and whether it changes without a restart.
struct Key {
    path: &'static str,
    value: fn(&Config) -> String,
    changeable: bool,
}

/// PgBouncer's names for weir keys, so `SET default_pool_size = 30` works as it did.
const PGBOUNCER_NAMES: &[(&str, &str)] = &[
    ("default_pool_size", "pool.size"),
    ("min_pool_size", "pool.min_size"),
    ("max_client_conn", "pool.max_client_conn"),
    ("query_wait_timeout", "pool.query_wait_timeout"),
    ("query_timeout", "pool.query_timeout"),
    ("server_lifetime", "pool.server_lifetime"),
    ("server_idle_timeout", "pool.server_idle_timeout"),
    ("server_connect_timeout", "pool.server_connect_timeout"),
    ("client_idle_timeout", "pool.client_idle_timeout"),
    ("idle_transaction_timeout", "pool.idle_transaction_timeout"),
    ("max_prepared_statements", "pool.max_prepared_statements"),
    ("client_login_timeout", "listen.client_login_timeout"),
];

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn list(items: &[String]) -> String {
    items.join(",")
}

fn name_of<T: PartialEq + Copy>(variants: &[(&'static str, T)], v: T) -> String {
    variants
        .iter()
        .find(|(_, x)| *x == v)
        .map_or_else(String::new, |(n, _)| (*n).to_owned())
}

macro_rules! key {
    ($path:literal, $changeable:literal, |$c:ident| $value:expr) => {
        Key {
            path: $path,
            value: |$c: &Config| $value,
            changeable: $changeable,
        }
    };
}

const KEYS: &[Key] = &[
    key!("listen.addr", false, |c| c.listen.addr.to_string()),
    key!("listen.client_login_timeout", true, |c| secs(
        c.listen.client_login_timeout
    )),
    key!("listen.shutdown_timeout", true, |c| secs(
        c.listen.shutdown_timeout
    )),
    key!("listen.workers", false, |c| c.listen.workers.to_string()),
    key!("listen.reuse_port", false, |c| c
        .listen
        .reuse_port
        .to_string()),
    key!("pool.mode", false, |c| c.pool.mode.as_str().to_owned()),
    key!("pool.size", true, |c| c.pool.size.to_string()),
    key!("pool.min_size", true, |c| c.pool.min_size.to_string()),
    key!("pool.max_client_conn", true, |c| c
        .pool
        .max_client_conn
        .to_string()),
    key!("pool.query_wait_timeout", true, |c| secs(
        c.pool.query_wait_timeout
    )),
    key!("pool.server_lifetime", true, |c| secs(
        c.pool.server_lifetime
    )),
    key!("pool.server_idle_timeout", true, |c| secs(
        c.pool.server_idle_timeout
    )),
    key!("pool.server_connect_timeout", true, |c| secs(
        c.pool.server_connect_timeout
    )),
    key!("pool.client_idle_timeout", true, |c| secs(
        c.pool.client_idle_timeout
    )),
    key!("pool.idle_transaction_timeout", true, |c| secs(
        c.pool.idle_transaction_timeout
    )),
    key!("pool.query_timeout", true, |c| secs(c.pool.query_timeout)),
    key!("pool.max_prepared_statements", true, |c| c
        .pool
        .max_prepared_statements
        .to_string()),
    key!("auth.method", true, |c| c.auth.method.as_str().to_owned()),
    key!("auth.failure_delay", true, |c| secs(c.auth.failure_delay)),
    key!("auth.user", true, |c| c
        .auth
        .user
        .clone()
        .unwrap_or_default()),
    key!("auth.query", true, |c| c.auth.query.clone()),
    key!("auth.dbname", true, |c| c
        .auth
        .dbname
        .clone()
        .unwrap_or_default()),
    key!("auth.cache_ttl", true, |c| secs(c.auth.cache_ttl)),
    key!("admin.users", true, |c| list(&c.admin.users)),
    key!("limits.max_message_size", true, |c| c
        .limits
        .max_message_size
        .to_string()),
    key!("metrics.listen", false, |c| c
        .metrics
        .as_ref()
        .map_or_else(String::new, |m| m.listen.to_string())),
    key!("cluster.health_check_interval", true, |c| secs(
        c.cluster.health_check_interval
    )),
    key!("cluster.health_check_timeout", true, |c| secs(
        c.cluster.health_check_timeout
    )),
    key!("cluster.health_check_user", true, |c| c
        .cluster
        .health_check_user
        .clone()
        .unwrap_or_default()),
    key!("cluster.down_after", true, |c| c
        .cluster
        .down_after
        .to_string()),
    key!("cluster.failover_timeout", true, |c| secs(
        c.cluster.failover_timeout
    )),
    key!("cluster.auto_promote", true, |c| c
        .cluster
        .auto_promote
        .to_string()),
    key!("cluster.promote_after", true, |c| secs(
        c.cluster.promote_after
    )),
    key!("cluster.promote_user", true, |c| c
        .cluster
        .promote_user
        .clone()
        .unwrap_or_default()),
    key!("routing.transactions", true, |c| name_of(
        TransactionRouting::VARIANTS,
        c.routing.transactions
    )),
    key!("routing.read_your_writes", true, |c| c
        .routing
        .read_your_writes
        .to_string()),
    key!("routing.max_replica_lag", true, |c| secs(
        c.routing.max_replica_lag
    )),
    key!("routing.max_replica_lag_bytes", true, |c| c
        .routing
        .max_replica_lag_bytes
        .to_string()),
    key!("routing.primary_reads", true, |c| name_of(
        PrimaryReads::VARIANTS,
        c.routing.primary_reads
    )),
    key!("routing.write_functions", true, |c| list(
        &c.routing.write_functions
    )),
    key!("routing.read_functions", true, |c| list(
        &c.routing.read_functions
    )),
];

/// SHOW CONFIG's rows: key, value, default, changeable.
pub(super) fn rows(config: &Config) -> Vec<Vec<Option<String>>> {
    let defaults = Config::default();
    KEYS.iter()
        .map(|k| {
            vec![
                Some(k.path.to_owned()),
                Some((k.value)(config)),
                Some((k.value)(&defaults)),
                Some(if k.changeable { "yes" } else { "no" }.to_owned()),
            ]
        })
        .collect()
}

/// The weir key path `SET` means by `name` (a path itself, or a PgBouncer name), if it is
/// a key that changes without a restart.
pub(super) fn settable(name: &str) -> Result<&'static str, NotSettable> {
    let lower = name.to_ascii_lowercase();
    let path = PGBOUNCER_NAMES
        .iter()
        .find(|(pgb, _)| *pgb == lower)
        .map_or(lower.as_str(), |(_, path)| path);
    match KEYS.iter().find(|k| k.path == path) {
        Some(k) if k.changeable => Ok(k.path),
        Some(k) => Err(NotSettable::NeedsRestart(k.path)),
        None => Err(NotSettable::Unknown(name.to_owned())),
    }
}

/// Why SET refuses a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum NotSettable {
    /// The key exists but only a restart changes it.
    #[error("{0} cannot change while weir runs: edit the file and restart")]
    NeedsRestart(&'static str),
    /// No such key.
    #[error(
        "unknown setting \"{0}\": SHOW CONFIG lists the keys (SET takes those marked changeable)"
    )]
    Unknown(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_prints_and_pgbouncer_names_map() {
        let rows = rows(&Config::default());
        assert_eq!(rows.len(), KEYS.len());
        let size = rows
            .iter()
            .find(|r| r[0].as_deref() == Some("pool.size"))
            .expect("pool.size listed");
        assert_eq!(size[1].as_deref(), Some("20"));
        assert_eq!(size[3].as_deref(), Some("yes"));
        assert_eq!(settable("default_pool_size"), Ok("pool.size"));
        assert_eq!(settable("POOL.SIZE"), Ok("pool.size"));
        assert!(settable("listen.addr").is_err());
        assert!(settable("nonsense").is_err());
    }
}
