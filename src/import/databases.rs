//! Maps `[databases]` entries to `[[databases]]`, and sorts the ini's sections.
//!
//! Owns: host lists (TCP hosts, Unix sockets, IPv6, per-host ports), `dbname`, the `*`
//! fallback entry, per-database client limits and `target_session_attrs`, and the warnings
//! for per-database and per-user parameters weir has no place for.
//! Does not: decide pool sizes or modes (`pools.rs`) or `auth_user` (`accounts.rs`).

use std::net::Ipv6Addr;
use std::time::Duration;

use super::connstr::{self, Pair};
use super::error::{ImportError, Origin};
use super::general::{clamp_non_zero, Globals};
use super::ini::Entry;
use super::reasons;
use super::settings::shown;
use super::values::{seconds, whole};
use super::{LastWins, Plan, Warnings};
use crate::config::{DatabaseConfig, HostAddr, Routing, RESERVED_DATABASES};

/// PostgreSQL truncates longer names, so weir refuses them.
const NAME_MAX_BYTES: usize = 63;

/// The ini's entries by the section they belong to.
pub(crate) struct Sections {
    /// `[pgbouncer]`.
    pub(crate) pgbouncer: Vec<Entry>,
    /// `[databases]`.
    pub(crate) databases: Vec<Entry>,
    /// `[users]`.
    pub(crate) users: Vec<Entry>,
}

impl Sections {
    /// Sorts `entries`; `[peers]` and unknown sections are warned about and dropped.
    pub(crate) fn split(entries: Vec<Entry>, w: &mut Warnings) -> Self {
        let mut s = Sections {
            pgbouncer: Vec::new(),
            databases: Vec::new(),
            users: Vec::new(),
        };
        for e in entries {
            match e.section.as_str() {
                "pgbouncer" => s.pgbouncer.push(e),
                "databases" => s.databases.push(e),
                "users" => s.users.push(e),
                "peers" => w.at(&e.at, format!(
                    "[peers] {} is not carried over: weir has no peering: a cancel request that reaches another weir process sharing the port is lost (docs/scaling.md); one weir process uses every core, so one per host needs none",
                    e.key
                )),
                other => w.at(&e.at, format!(
                    "[{other}] {} is not carried over: [{other}] is not a PgBouncer section",
                    e.key
                )),
            }
        }
        s
    }
}

/// A `[databases]` or `[users]` entry: a name and its connection-string pairs.
pub(crate) struct Named {
    /// The database or user name.
    pub(crate) name: String,
    /// Where it was written.
    pub(crate) at: Origin,
    /// Its parameters, in order.
    pub(crate) params: Vec<Pair>,
}

impl Named {
    /// The value of `key` (the last one, if repeated).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key` parsed with `parse`; a bad value is an error naming the entry.
    pub(crate) fn parsed<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ImportError> {
        self.get(key)
            .map(|v| {
                parse(v).map_err(|problem| ImportError::Value {
                    at: self.at.clone(),
                    key: format!("{} {key}", self.name),
                    problem,
                })
            })
            .transpose()
    }
}

/// Splits each entry's connection string. A string PgBouncer could not read either is an
/// error naming the line.
pub(crate) fn parse(entries: Vec<Entry>) -> Result<Vec<Named>, ImportError> {
    entries
        .into_iter()
        .map(|e| {
            let params = connstr::parse(&e.value).map_err(|problem| ImportError::Syntax {
                at: e.at.clone(),
                problem: format!("{}: {problem}", e.key),
            })?;
            Ok(Named {
                name: e.key,
                at: e.at,
                params,
            })
        })
        .collect()
}

/// Whether weir can use `name` as a user or database name; the reason if not.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("the name is empty")
    } else if name.len() > NAME_MAX_BYTES {
        Some("the name is longer than 63 bytes, which PostgreSQL truncates")
    } else if name.contains('\0') {
        Some("the name contains a NUL character")
    } else {
        None
    }
}

/// Maps every `[databases]` entry into `plan.config.databases`, in file order (a name
/// given twice keeps its later entry, as PgBouncer does).
pub(crate) fn apply(
    dbs: &[Named],
    globals: &Globals,
    plan: &mut Plan,
    w: &mut Warnings,
) -> Result<(), ImportError> {
    let mut out = LastWins::new();
    for db in dbs {
        if db.name == "*" {
            fallback(db, plan, w);
            continue;
        }
        if let Some(problem) = name_problem(&db.name) {
            w.at(
                &db.at,
                format!("database {} is not carried over: {problem}", db.name),
            );
            continue;
        }
        if RESERVED_DATABASES.contains(&db.name.as_str()) {
            w.at(&db.at, format!(
                "database {} is not carried over: weir keeps that name for its admin console; give it another name",
                db.name
            ));
            continue;
        }
        let Some(config) = database(db, globals, w)? else {
            continue;
        };
        warn_params(db, plan, w);
        if out.insert(&db.name, config) {
            w.at(
                &db.at,
                format!(
                    "database {} is listed twice: the later entry is used",
                    db.name
                ),
            );
        }
    }
    plan.config.databases = out.into_vec();
    Ok(())
}

/// One database, or `None` (with a warning) when weir cannot reach what it names.
fn database(
    db: &Named,
    globals: &Globals,
    w: &mut Warnings,
) -> Result<Option<DatabaseConfig>, ImportError> {
    let dbname = db.get("dbname").unwrap_or(&db.name).to_owned();
    if let Some(problem) = name_problem(&dbname) {
        w.at(
            &db.at,
            format!(
                "database {}: dbname={dbname} is not carried over: {problem}",
                db.name
            ),
        );
        return Ok(None);
    }
    let Some(hosts) = hosts(db, globals, w)? else {
        return Ok(None);
    };
    let routing = match db
        .get("target_session_attrs")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("any") => Routing::ReadWrite,
        Some("read-write" | "primary") => Routing::PrimaryOnly,
        Some(other) => {
            w.at(&db.at, format!(
                "database {}: target_session_attrs={other} is not carried over: weir sends a database's writes to its primary and reads to replicas; a client can ask for replicas with weir.route = replica",
                db.name
            ));
            Routing::ReadWrite
        }
    };
    if hosts.len() > 1 && routing == Routing::ReadWrite {
        w.at(&db.at, format!(
            "database {}: host={} changes meaning: PgBouncer spread connections over these hosts in turn; weir finds which one is the primary and sends writes there and plain reads to the others (routing = \"read_write\")",
            db.name,
            db.get("host").unwrap_or_default()
        ));
    }
    let limit = db
        .parsed("max_db_client_connections", whole)?
        .unwrap_or(globals.max_db_client_connections);
    Ok(Some(DatabaseConfig {
        name: db.name.clone(),
        dbname,
        hosts,
        routing,
        max_client_conn: (limit > 0).then(|| clamp_non_zero(limit)),
    }))
}

/// A database's servers. Unix sockets (a `host=` starting with `/` or `@`, or no `host=`
/// at all) become `127.0.0.1` on the same port, with a warning: weir connects over TCP,
/// and a server reached by socket is on the same machine.
fn hosts(
    db: &Named,
    globals: &Globals,
    w: &mut Warnings,
) -> Result<Option<Vec<HostAddr>>, ImportError> {
    let port = match db.parsed("port", whole)? {
        None => HostAddr::DEFAULT_PORT,
        Some(p) => u16::try_from(p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| ImportError::Value {
                at: db.at.clone(),
                key: format!("{} port", db.name),
                problem: format!("{p} is not a TCP port (1 to 65535)"),
            })?,
    };
    let written = db.get("host").unwrap_or("");
    let items: Vec<&str> = written
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let mut socket = items.is_empty().then(|| globals.unix_socket_dir.clone());
    let mut hosts: Vec<HostAddr> = Vec::new();
    for item in items.iter().copied() {
        let host = if item.starts_with('/') || item.starts_with('@') {
            socket = Some(item.to_owned());
            HostAddr {
                host: "127.0.0.1".to_owned(),
                port,
            }
        } else {
            match tcp_host(item, port) {
                Ok(h) => h,
                Err(problem) => {
                    w.at(
                        &db.at,
                        format!(
                            "database {} is not carried over: host={item} {problem}",
                            db.name
                        ),
                    );
                    return Ok(None);
                }
            }
        };
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    if let Some(dir) = socket {
        let socket = if dir.is_empty() {
            "Unix socket (unix_socket_dir is empty)".to_owned()
        } else {
            format!("Unix socket in {dir}")
        };
        w.at(&db.at, format!(
            "database {}: the {socket} is carried over as 127.0.0.1:{port}: weir connects to servers over TCP only (the server's listen_addresses and pg_hba.conf must accept TCP from 127.0.0.1)",
            db.name
        ));
        if hosts.is_empty() {
            hosts.push(HostAddr {
                host: "127.0.0.1".to_owned(),
                port,
            });
        }
    }
    Ok(Some(hosts))
}

/// One TCP host: `name`, `name:port`, an IPv6 literal, or `[v6]:port`.
fn tcp_host(item: &str, port: u16) -> Result<HostAddr, &'static str> {
    let (host, port_text) = if let Some(rest) = item.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("has no closing ]")?;
        (host, after.strip_prefix(':'))
    } else if item.matches(':').count() == 1 {
        let (host, p) = item.split_once(':').ok_or("is not a host")?;
        (host, Some(p))
    } else {
        (item, None)
    };
    let port = match port_text {
        None => port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or("has a port that is not 1 to 65535")?,
    };
    let valid = if host.contains(':') {
        host.parse::<Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !valid {
        return Err(if host.contains(['$', '{', '%']) {
            "looks like an environment variable, which PgBouncer does not expand: expand it (e.g. with envsubst) and import again"
        } else {
            "is not a host name or IP address"
        });
    }
    Ok(HostAddr {
        host: host.to_owned(),
        port,
    })
}

/// The `*` fallback entry: weir serves only the databases it lists, so it becomes a
/// commented template at the end of the file.
fn fallback(db: &Named, plan: &mut Plan, w: &mut Warnings) {
    w.at(&db.at, "* (the fallback database) is not carried over: weir serves only the databases it lists; add a [[databases]] entry for each database clients use (a template is at the end of the output)".to_owned());
    let port = db
        .get("port")
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(HostAddr::DEFAULT_PORT);
    let host = db
        .get("host")
        .and_then(|h| h.split(',').next())
        .and_then(|h| tcp_host(h.trim(), port).ok())
        .unwrap_or(HostAddr {
            host: "127.0.0.1".to_owned(),
            port,
        });
    plan.trailer.extend([
        "PgBouncer's fallback database (*) has no equivalent in weir. Add an entry like this"
            .to_owned(),
        "for each database clients connect to:".to_owned(),
        "[[databases]]".to_owned(),
        "name = \"DATABASE\"".to_owned(),
        format!("hosts = [\"{host}\"]"),
    ]);
}

/// A warning for each parameter of `db` weir has no place for (timeouts the same as
/// weir's single value pass).
fn warn_params(db: &Named, plan: &Plan, w: &mut Warnings) {
    let pool = &plan.config.pool;
    let weir_value = |key: &str| match key {
        "server_lifetime" => Some(pool.server_lifetime),
        "query_wait_timeout" => Some(pool.query_wait_timeout),
        _ => None,
    };
    warn_unplaced("database", db, weir_value, reasons::database_param, w);
}

/// A warning for each `[users]` parameter weir has no place for (timeouts the same as
/// weir's single value pass).
pub(crate) fn warn_user_params(users: &[Named], plan: &Plan, w: &mut Warnings) {
    let pool = &plan.config.pool;
    let weir_value = |key: &str| match key {
        "query_timeout" => Some(pool.query_timeout),
        "query_wait_timeout" => Some(pool.query_wait_timeout),
        "idle_transaction_timeout" => Some(pool.idle_transaction_timeout),
        "client_idle_timeout" => Some(pool.client_idle_timeout),
        _ => None,
    };
    for user in users {
        warn_unplaced("user", user, weir_value, reasons::user_param, w);
    }
}

/// A warning, with `reason`, for each parameter of the `kind` entry `named` that has one,
/// except a timeout equal to weir's single value for it (`weir_value`).
fn warn_unplaced(
    kind: &str,
    named: &Named,
    weir_value: impl Fn(&str) -> Option<Duration>,
    reason: fn(&str) -> Option<&'static str>,
    w: &mut Warnings,
) {
    for (key, value) in last_of_each(&named.params) {
        if weir_value(key).is_some_and(|weir| seconds(value).is_ok_and(|d| d == weir)) {
            continue;
        }
        if let Some(reason) = reason(key) {
            w.at(
                &named.at,
                format!(
                    "{kind} {}: {key}={} is not carried over: {reason}",
                    named.name,
                    shown(key, value)
                ),
            );
        }
    }
}

/// The pairs in order, each key once with its last value (PgBouncer's reading).
fn last_of_each(params: &[Pair]) -> impl Iterator<Item = (&String, &String)> {
    params
        .iter()
        .enumerate()
        .filter(move |(i, (k, _))| !params.iter().skip(i + 1).any(|(later, _)| later == k))
        .map(|(_, (k, v))| (k, v))
}
