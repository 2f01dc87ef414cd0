//! Maps the `[pgbouncer]` settings that are one value for the whole pooler: the listen
//! address, timeouts, limits, and TLS toward clients and servers.
//!
//! Owns: those mappings, PgBouncer's defaults for them (a setting PgBouncer leaves at a
//! default different from weir's is written out, so behaviour stays the same), and what
//! a zero PgBouncer reads as "off" becomes where weir needs a deadline.
//! Does not: map users, authentication, pools or databases.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use super::error::{ImportError, Origin};
use super::settings::Settings;
use super::values::{duration_text, seconds, switch, whole};
use super::{Plan, Warnings};
use crate::config::{Config, LimitsSettings, PoolMode, ServerTlsMode, TlsMode, TlsSettings};

/// Where Debian, Ubuntu and Alpine keep the system's CA certificates in one file.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The pool settings `pools.rs` reconciles with per-database and per-user overrides.
pub(crate) struct Globals {
    /// `pool_mode` (PgBouncer's default: session) and where it was set.
    pub(crate) pool_mode: (PoolMode, Option<Origin>),
    /// `default_pool_size` (default 20).
    pub(crate) pool_size: (u64, Option<Origin>),
    /// `min_pool_size` (default 0).
    pub(crate) min_pool_size: (u64, Option<Origin>),
    /// `max_db_client_connections` (0: no limit).
    pub(crate) max_db_client_connections: u64,
    /// `max_user_client_connections` (0: no limit).
    pub(crate) max_user_client_connections: u64,
    /// `unix_socket_dir`, where PgBouncer found servers given without `host=`.
    pub(crate) unix_socket_dir: String,
}

/// Maps the pooler-wide settings into `plan` and returns the pool defaults.
pub(crate) fn apply(
    s: &mut Settings,
    plan: &mut Plan,
    w: &mut Warnings,
) -> Result<Globals, ImportError> {
    // Read before `listen` takes an empty one: it also says where servers without host= were.
    let unix_socket_dir = s
        .peek("unix_socket_dir")
        .map_or_else(|| "/tmp".to_owned(), |d| d.value.clone());
    listen(s, plan, w)?;
    timeouts(s, plan, w)?;
    limits(s, plan, w)?;
    client_tls(s, &mut plan.config, w)?;
    server_tls(s, &mut plan.config, w)?;
    let pool_mode = s
        .take_parsed("pool_mode", pool_mode)?
        .map_or((PoolMode::Session, None), |(m, at)| (m, Some(at)));
    let pool_size = s
        .take_parsed("default_pool_size", whole)?
        .map_or((20, None), |(n, at)| (n, Some(at)));
    let min_pool_size = s
        .take_parsed("min_pool_size", whole)?
        .map_or((0, None), |(n, at)| (n, Some(at)));
    Ok(Globals {
        pool_mode,
        pool_size,
        min_pool_size,
        max_db_client_connections: taken_or(s, "max_db_client_connections", 0)?,
        max_user_client_connections: taken_or(s, "max_user_client_connections", 0)?,
        unix_socket_dir,
    })
}

/// PgBouncer's `pool_mode` values (also used per database and per user).
pub(crate) fn pool_mode(text: &str) -> Result<PoolMode, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "session" => Ok(PoolMode::Session),
        "transaction" => Ok(PoolMode::Transaction),
        "statement" => Ok(PoolMode::Statement),
        _ => Err(format!(
            "{text:?} is not a pool mode (session, transaction or statement)"
        )),
    }
}

/// A whole-number setting, or `default` when it is not written.
fn taken_or(s: &mut Settings, key: &str, default: u64) -> Result<u64, ImportError> {
    Ok(s.take_parsed(key, whole)?.map_or(default, |(n, _)| n))
}

/// `listen_addr` + `listen_port` -> `listen.addr`. weir listens on one TCP address.
fn listen(s: &mut Settings, plan: &mut Plan, w: &mut Warnings) -> Result<(), ImportError> {
    let port = match s.take_parsed("listen_port", whole)? {
        None => 6432,
        Some((p, at)) => {
            u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ImportError::Value {
                    at,
                    key: "listen_port".to_owned(),
                    problem: format!("{p} is not a TCP port (1 to 65535)"),
                })?
        }
    };
    if s.peek("unix_socket_dir")
        .is_some_and(|d| d.value.is_empty())
    {
        s.take("unix_socket_dir");
    }
    let addr = s.take("listen_addr");
    let names = addr
        .as_ref()
        .map(|a| super::values::list(&a.value))
        .unwrap_or_default();
    let (ip, note) = match (names.first(), &addr) {
        (Some(first), Some(setting)) => {
            if names.len() > 1 {
                w.at(&setting.at, format!(
                    "listen_addr = {} is carried over only in part: weir listens on one address, the first ({first})",
                    setting.value
                ));
            }
            let ip = listen_ip(first).unwrap_or_else(|| {
                w.at(&setting.at, format!(
                    "listen_addr = {first} is not carried over: weir listens on an IP address, not a host name; it listens on 127.0.0.1 (write the address, or 0.0.0.0 for all)"
                ));
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            });
            (
                ip,
                format!("listen_addr = {}, listen_port = {port}", setting.value),
            )
        }
        _ => {
            w.maybe_at(addr.as_ref().map(|a| &a.at), format!(
                "listen_addr is not set: PgBouncer then accepted only Unix-socket connections; weir listens on TCP only, on 127.0.0.1:{port}"
            ));
            (
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                format!("listen_port = {port}; no listen_addr"),
            )
        }
    };
    if let Some((reuse, _)) = s.take_parsed("so_reuseport", switch)? {
        plan.config.listen.reuse_port = reuse;
        plan.note("listen.reuse_port", "so_reuseport");
    }
    plan.config.listen.addr = SocketAddr::new(ip, port);
    plan.note("listen.addr", note);
    Ok(())
}

/// An address PgBouncer listened on, as an IP: `*` is every IPv4 address, `localhost` the
/// loopback; other names are not resolved here (the file may come from another host).
fn listen_ip(name: &str) -> Option<IpAddr> {
    match name {
        "*" => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        "localhost" => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        other => other
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok(),
    }
}

/// Where a duration goes in weir's configuration.
type Field = fn(&mut Config) -> &mut Duration;

/// One timeout: PgBouncer's name and default (ms), weir's key, and what a PgBouncer zero
/// becomes (`None`: zero is "off" in weir too).
struct Timeout {
    /// PgBouncer's setting.
    pgbouncer: &'static str,
    /// PgBouncer's default, in milliseconds, used when the file does not set it.
    default_ms: u64,
    /// weir's key, for notes and warnings.
    weir: &'static str,
    /// Where the value goes.
    field: Field,
    /// What a zero becomes; `None` when zero means "off" in weir too.
    zero: Option<Zero>,
}

/// What a PgBouncer zero becomes where weir insists on a limit.
struct Zero {
    /// The value weir gets instead.
    instead: Duration,
    /// What zero meant to PgBouncer.
    meaning: &'static str,
    /// Why weir cannot do the same.
    why: &'static str,
}

/// Every timeout weir has, with PgBouncer's defaults. Where PgBouncer reads zero as "no
/// limit" and weir insists on one, the zero becomes a long limit, said in a warning.
const TIMEOUTS: &[Timeout] = &[
    Timeout {
        pgbouncer: "query_wait_timeout",
        default_ms: 120_000,
        weir: "pool.query_wait_timeout",
        field: |c| &mut c.pool.query_wait_timeout,
        zero: Some(Zero {
            instead: Duration::from_secs(3600),
            meaning: "no limit",
            why: "weir always bounds the wait for a server",
        }),
    },
    Timeout {
        pgbouncer: "server_lifetime",
        default_ms: 3_600_000,
        weir: "pool.server_lifetime",
        field: |c| &mut c.pool.server_lifetime,
        zero: Some(Zero {
            instead: Duration::from_secs(1),
            meaning: "close after one use",
            why:
                "weir cannot close a server after a single use; a one-second lifetime comes nearest",
        }),
    },
    Timeout {
        pgbouncer: "server_idle_timeout",
        default_ms: 600_000,
        weir: "pool.server_idle_timeout",
        field: |c| &mut c.pool.server_idle_timeout,
        zero: Some(Zero {
            instead: Duration::from_secs(30 * 86_400),
            meaning: "no limit",
            why: "weir always closes idle servers at some point",
        }),
    },
    Timeout {
        pgbouncer: "server_connect_timeout",
        default_ms: 15_000,
        weir: "pool.server_connect_timeout",
        field: |c| &mut c.pool.server_connect_timeout,
        zero: Some(Zero {
            instead: Duration::from_secs(60),
            meaning: "no limit",
            why: "weir always bounds a server connect",
        }),
    },
    Timeout {
        pgbouncer: "client_login_timeout",
        default_ms: 60_000,
        weir: "listen.client_login_timeout",
        field: |c| &mut c.listen.client_login_timeout,
        zero: Some(Zero {
            instead: Duration::from_secs(3600),
            meaning: "no limit",
            why: "weir always bounds a client's login",
        }),
    },
    Timeout {
        pgbouncer: "client_idle_timeout",
        default_ms: 0,
        weir: "pool.client_idle_timeout",
        field: |c| &mut c.pool.client_idle_timeout,
        zero: None,
    },
    Timeout {
        pgbouncer: "idle_transaction_timeout",
        default_ms: 0,
        weir: "pool.idle_transaction_timeout",
        field: |c| &mut c.pool.idle_transaction_timeout,
        zero: None,
    },
    Timeout {
        pgbouncer: "query_timeout",
        default_ms: 0,
        weir: "pool.query_timeout",
        field: |c| &mut c.pool.query_timeout,
        zero: None,
    },
];

/// The timeouts, with PgBouncer's defaults where the file gives none.
fn timeouts(s: &mut Settings, plan: &mut Plan, w: &mut Warnings) -> Result<(), ImportError> {
    for t in TIMEOUTS {
        let taken = s.take_parsed(t.pgbouncer, seconds)?;
        let (value, at) = match taken {
            Some((d, at)) => (d, Some(at)),
            None => (Duration::from_millis(t.default_ms), None),
        };
        let value = match t.zero {
            Some(Zero {
                instead,
                meaning,
                why,
            }) if value.is_zero() => {
                w.maybe_at(
                    at.as_ref(),
                    format!(
                        "{} = 0 ({meaning}) is carried over as {} = \"{}\": {why}",
                        t.pgbouncer,
                        t.weir,
                        duration_text(instead)
                    ),
                );
                instead
            }
            _ => value,
        };
        *(t.field)(&mut plan.config) = value;
        plan.note(t.weir, source(t.pgbouncer, at.is_some()));
    }
    let max_clients = s.take_parsed("max_client_conn", whole)?;
    match &max_clients {
        Some((0, at)) => w.at(
            at,
            "max_client_conn = 0 is not carried over: weir needs room for at least one client"
                .to_owned(),
        ),
        _ => {
            let n = max_clients.as_ref().map_or(100, |(n, _)| *n);
            plan.config.pool.max_client_conn = clamp_non_zero(n);
            plan.note(
                "pool.max_client_conn",
                source("max_client_conn", max_clients.is_some()),
            );
        }
    }
    if let Some((n, at)) = s.take_parsed("max_prepared_statements", whole)? {
        if n == 0 {
            w.at(&at, "max_prepared_statements = 0 is not carried over: weir always keeps a client's named prepared statements working in transaction mode (200 per server connection)".to_owned());
        } else {
            plan.config.pool.max_prepared_statements = u32::try_from(n).unwrap_or(u32::MAX);
            plan.note("pool.max_prepared_statements", "max_prepared_statements");
        }
    }
    Ok(())
}

/// The note for a value: the setting's name, or that PgBouncer's default stood in.
fn source(name: &str, written: bool) -> String {
    if written {
        name.to_owned()
    } else {
        format!("PgBouncer's default {name}")
    }
}

/// A PgBouncer count as weir's non-zero `u32` (at least 1, at most `u32::MAX`).
pub(crate) fn clamp_non_zero(n: u64) -> NonZeroU32 {
    NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
}

/// `max_packet_size` -> `limits.max_message_size`. PgBouncer's default (2 GB) and anything
/// from 1 GB up is weir's default: PostgreSQL accepts no longer message anyway.
fn limits(s: &mut Settings, plan: &mut Plan, w: &mut Warnings) -> Result<(), ImportError> {
    let Some((bytes, at)) = s.take_parsed("max_packet_size", whole)? else {
        return Ok(());
    };
    let max = LimitsSettings::default().max_message_size;
    let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    if bytes >= max {
        return Ok(());
    }
    let limit = if bytes < 1024 {
        w.at(&at, format!("max_packet_size = {bytes} is carried over as limits.max_message_size = 1024: weir's smallest limit"));
        1024
    } else {
        bytes
    };
    plan.config.limits.max_message_size = limit;
    plan.note("limits.max_message_size", "max_packet_size");
    Ok(())
}

/// `client_tls_*` -> `[tls]`.
fn client_tls(s: &mut Settings, config: &mut Config, w: &mut Warnings) -> Result<(), ImportError> {
    let sslmode = s.take("client_tls_sslmode");
    let cert = s.take_given("client_tls_cert_file");
    let key = s.take_given("client_tls_key_file");
    let ca = s.take_given("client_tls_ca_file");
    let Some(sslmode) = sslmode else {
        return Ok(()); // PgBouncer's default is disable: no TLS, whatever the files say.
    };
    let (mode, verify) = match sslmode.value.to_ascii_lowercase().as_str() {
        "disable" => return Ok(()),
        "allow" | "prefer" => (TlsMode::Allow, false),
        "require" => (TlsMode::Require, false),
        "verify-ca" | "verify-full" => (TlsMode::Require, true),
        _ => {
            return Err(ImportError::Value {
                at: sslmode.at,
                key: "client_tls_sslmode".to_owned(),
                problem: format!(
                    "{:?} is not one of disable, allow, prefer, require, verify-ca, verify-full",
                    sslmode.value
                ),
            })
        }
    };
    let (Some(cert), Some(key)) = (cert, key) else {
        w.at(&sslmode.at, format!(
            "client_tls_sslmode = {} is not carried over: it needs client_tls_cert_file and client_tls_key_file (PgBouncer could not offer TLS without them either)",
            sslmode.value
        ));
        return Ok(());
    };
    let cert_auth = s
        .peek("auth_type")
        .is_some_and(|a| a.value.eq_ignore_ascii_case("cert"));
    if verify {
        w.at(&sslmode.at, format!(
            "client_tls_sslmode = {} is carried over as tls.mode = \"require\" with tls.client_ca: weir checks the certificates clients present, but asks every client for one only with auth method cert",
            sslmode.value
        ));
        if ca.is_none() {
            w.at(&sslmode.at, format!(
                "client_tls_sslmode = {} has no client_tls_ca_file: no client certificate can be checked",
                sslmode.value
            ));
        }
    }
    // Without verify or cert auth PgBouncer ignored client certificates, so the CA stays out.
    let client_ca = ca
        .filter(|_| verify || cert_auth)
        .map(|c| PathBuf::from(c.value));
    config.tls = Some(TlsSettings {
        cert: PathBuf::from(cert.value),
        key: PathBuf::from(key.value),
        mode,
        client_ca,
    });
    Ok(())
}

/// `server_tls_*` -> `[server_tls]`.
fn server_tls(s: &mut Settings, config: &mut Config, w: &mut Warnings) -> Result<(), ImportError> {
    let ca = s.take_given("server_tls_ca_file");
    let cert = s.take_given("server_tls_cert_file");
    let key = s.take_given("server_tls_key_file");
    let tls = &mut config.server_tls;
    tls.ca = ca.map(|c| PathBuf::from(c.value));
    match (cert, key) {
        (Some(cert), Some(key)) => {
            tls.cert = Some((PathBuf::from(cert.value), PathBuf::from(key.value)));
        }
        (Some(one), None) | (None, Some(one)) => w.at(&one.at, "server_tls_cert_file and server_tls_key_file are not carried over: weir needs both of them".to_owned()),
        (None, None) => {}
    }
    let Some(sslmode) = s.take("server_tls_sslmode") else {
        return Ok(()); // weir's default, prefer, is PgBouncer's since 1.21.
    };
    tls.mode = match sslmode.value.to_ascii_lowercase().as_str() {
        "disable" => ServerTlsMode::Disable,
        "allow" => {
            w.at(&sslmode.at, "server_tls_sslmode = allow is carried over as server_tls.mode = \"prefer\": weir has no allow; prefer asks for TLS first".to_owned());
            ServerTlsMode::Prefer
        }
        "prefer" => ServerTlsMode::Prefer,
        "require" => ServerTlsMode::Require,
        "verify-ca" => ServerTlsMode::VerifyCa,
        "verify-full" => ServerTlsMode::VerifyFull,
        _ => {
            return Err(ImportError::Value {
                at: sslmode.at,
                key: "server_tls_sslmode".to_owned(),
                problem: format!(
                    "{:?} is not one of disable, allow, prefer, require, verify-ca, verify-full",
                    sslmode.value
                ),
            })
        }
    };
    if tls.mode.verifies() && tls.ca.is_none() {
        // PgBouncer then checks against the system's CA store; weir needs the file
        // named. Never `require` instead: that would stop checking certificates.
        w.at(&sslmode.at, format!(
            "server_tls_sslmode = {} has no server_tls_ca_file: server_tls.ca is set to the system's CA bundle, {SYSTEM_CA_BUNDLE} (PgBouncer used the system's store); point it at your servers' CA if that file is elsewhere",
            sslmode.value
        ));
        tls.ca = Some(std::path::PathBuf::from(SYSTEM_CA_BUNDLE));
    }
    Ok(())
}
