//! Why weir does without each PgBouncer setting it does not carry over, in one table.
//!
//! Owns: the reason shown in each "is not carried over" warning, and the values at which
//! a setting changes nothing (so it gets no warning). docs/migration.md lists the same.
//! Does not: map anything; the settings weir has are mapped in `general.rs`,
//! `accounts.rs`, `pools.rs` and `databases.rs`.

/// What leaving a setting behind costs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing: weir already behaves as this value asks.
    Harmless,
    /// Something, for this reason.
    Lost(&'static str),
}

const LOGS: &str =
    "weir logs to stderr; let the service manager keep the log (journald), or redirect it";
const LOG_LEVEL: &str =
    "weir's log detail is set with the WEIR_LOG environment variable (e.g. WEIR_LOG=debug)";
const UNIX: &str =
    "weir listens on TCP only (listen.addr); point Unix-socket clients at that address";
const DNS: &str = "weir resolves host names through the operating system each time it connects";
const TCP: &str =
    "weir leaves TCP keepalive, buffer and accept options at the operating system's defaults";
const TLS_VERSIONS: &str = "weir offers TLS 1.2 and 1.3 only (rustls)";
const TLS_CIPHERS: &str = "weir uses rustls's own cipher suites and key exchange groups";
const CHECK: &str = "weir runs no check query: before it reuses a free server connection it checks the socket, and replaces one the server closed";

/// `[pgbouncer]` settings weir does without: (key, values that change nothing, reason).
/// A harmless value of `*` means every value (the setting only names or labels things).
const GENERAL: &[(&str, &[&str], &str)] = &[
    ("logfile", &[""], LOGS),
    ("pidfile", &[""], "weir writes no PID file; the service manager tracks the process"),
    ("syslog", &["0"], LOGS),
    ("syslog_ident", &[], LOGS),
    ("syslog_facility", &[], LOGS),
    ("log_connections", &[], LOG_LEVEL),
    ("log_disconnections", &[], LOG_LEVEL),
    ("log_pooler_errors", &[], LOG_LEVEL),
    ("log_stats", &[], LOG_LEVEL),
    ("verbose", &["0"], LOG_LEVEL),
    ("user", &[""], "weir does not switch users itself; start it as that user (systemd's User=)"),
    ("stats_period", &[], "weir's SHOW STATS averages cover the last 15 s"),
    ("conffile", &["*"], ""),
    ("service_name", &["*"], ""),
    ("job_name", &["*"], ""),
    ("ignore_startup_parameters", &["*"], ""),
    ("track_extra_parameters", &["*"], ""),
    ("listen_backlog", &[], "weir sets its own listen backlog"),
    ("unix_socket_dir", &[""], UNIX),
    ("unix_socket_mode", &[], UNIX),
    ("unix_socket_group", &[], UNIX),
    ("reserve_pool_size", &["0"], "weir has no reserve pool; raise pool.size instead"),
    ("reserve_pool_timeout", &["*"], ""),
    ("max_db_connections", &["0"], "weir limits server connections per pool (pool.size), not per database"),
    ("max_user_connections", &["0"], "weir limits server connections per pool (pool.size), not per user"),
    ("server_round_robin", &["0"], "weir has no round-robin reuse of server connections"),
    ("disable_pqexec", &["0"], "weir cannot refuse the simple query protocol"),
    ("application_name_add_host", &["0"], "weir does not add the client's address to application_name"),
    ("peer_id", &["0"], "weir has no peering: a cancel request that reaches another weir process sharing the port is lost (docs/scaling.md); one weir process uses every core, so one per host needs none"),
    ("scram_iterations", &["4096"], "weir derives SCRAM keys from plaintext passwords with PostgreSQL's 4096 iterations"),
    ("server_reset_query", &["DISCARD ALL", "DISCARD ALL;"], "weir always resets session-mode servers with DISCARD ALL"),
    ("server_reset_query_always", &["0"], "weir never resets servers between transactions; in transaction mode it carries each client's settings to the next server instead"),
    ("server_check_delay", &[], CHECK),
    ("server_check_query", &[], CHECK),
    ("server_fast_close", &["0"], "weir has no equivalent: in session mode a client keeps its server until it disconnects"),
    ("server_login_retry", &[], "weir has no pause between failed server logins"),
    ("autodb_idle_timeout", &["3600"], "weir has no automatically created databases"),
    ("pool_idle_timeout", &["0"], "weir keeps the pools of its configured databases and users"),
    ("dns_max_ttl", &[], DNS),
    ("dns_nxdomain_ttl", &[], DNS),
    ("dns_zone_check_period", &["0"], DNS),
    ("resolv_conf", &[""], DNS),
    ("query_wait_notify", &["0"], "weir sends no notice to clients waiting for a server"),
    ("login_notify_message", &[""], "weir sends no message at login"),
    ("cancel_wait_timeout", &[], "weir has no equivalent"),
    ("transaction_timeout", &["0"], "weir has no limit on a whole transaction; pool.idle_transaction_timeout and pool.query_timeout are there"),
    ("suspend_timeout", &[], "weir has no online restart (SUSPEND, -R): for a rolling restart start a new weir and send SHUTDOWN WAIT_FOR_CLIENTS to the old one"),
    ("pkt_buf", &[], "weir sizes its buffers itself; the message size limit is limits.max_message_size (PgBouncer's max_packet_size)"),
    ("sbuf_loopcnt", &[], "weir is multi-threaded and needs no per-connection loop limit"),
    ("tcp_defer_accept", &["0"], TCP),
    ("tcp_socket_buffer", &[""], TCP),
    ("tcp_keepalive", &["0"], TCP),
    ("tcp_keepcnt", &["0"], TCP),
    ("tcp_keepidle", &["0"], TCP),
    ("tcp_keepintvl", &["0"], TCP),
    ("tcp_user_timeout", &["0"], TCP),
    ("client_tls_protocols", &["secure", "tlsv1.2,tlsv1.3", "tlsv1.3,tlsv1.2"], TLS_VERSIONS),
    ("server_tls_protocols", &["secure", "tlsv1.2,tlsv1.3", "tlsv1.3,tlsv1.2"], TLS_VERSIONS),
    ("client_tls_ciphers", &["default", "secure", "fast", "normal"], TLS_CIPHERS),
    ("server_tls_ciphers", &["default", "secure", "fast", "normal"], TLS_CIPHERS),
    ("client_tls13_ciphers", &[""], TLS_CIPHERS),
    ("server_tls13_ciphers", &[""], TLS_CIPHERS),
    ("client_tls_ecdhcurve", &["auto"], TLS_CIPHERS),
    ("client_tls_dheparams", &["auto", "none"], TLS_CIPHERS),
];

/// What leaving the `[pgbouncer]` setting `key = value` behind costs.
pub(crate) fn general(key: &str, value: &str) -> Verdict {
    match GENERAL.iter().find(|(k, _, _)| *k == key) {
        Some((_, harmless, reason)) => {
            if harmless.iter().any(|h| *h == "*" || same_value(h, value)) {
                Verdict::Harmless
            } else {
                Verdict::Lost(reason)
            }
        }
        None => Verdict::Lost("it is not a PgBouncer setting weir knows"),
    }
}

/// Why a `[databases]` connection-string parameter is not carried over; `None` for the
/// ones other steps map.
pub(crate) fn database_param(key: &str) -> Option<&'static str> {
    Some(match key {
        "host" | "port" | "dbname" | "pool_size" | "pool_mode" | "min_pool_size"
        | "auth_user" | "auth_query" | "auth_dbname" | "max_db_client_connections"
        | "target_session_attrs" => return None,
        "user" => "weir logs in to the servers as each client's own user (one pool per user); PgBouncer's forced user has no equivalent",
        "password" => "weir takes server passwords from the [[users]] entries",
        "reserve_pool" | "reserve_pool_size" => "weir has no reserve pool; raise pool.size instead",
        "connect_query" => "weir runs no query on new server connections; ALTER ROLE or ALTER DATABASE ... SET sets session defaults on the server",
        "client_encoding" | "datestyle" | "timezone" => "weir passes each client's own settings on; set defaults on the server with ALTER DATABASE ... SET",
        "max_db_connections" => "weir limits server connections per pool (pool.size), not per database",
        "load_balance_hosts" => "weir finds the primary among the hosts and spreads reads over the replicas itself",
        "server_lifetime" | "query_wait_timeout" => "weir has one value for every database, in [pool]",
        _ => "it is not a connection parameter weir knows",
    })
}

/// Why a `[users]` parameter is not carried over; `None` for the ones other steps map.
pub(crate) fn user_param(key: &str) -> Option<&'static str> {
    Some(match key {
        "pool_mode" | "pool_size" | "max_user_client_connections" => return None,
        "reserve_pool_size" => "weir has no reserve pool; raise pool.size instead",
        "max_user_connections" => {
            "weir limits server connections per pool (pool.size), not per user"
        }
        "query_timeout"
        | "query_wait_timeout"
        | "idle_transaction_timeout"
        | "client_idle_timeout" => "weir has one value for every user, in [pool]",
        "transaction_timeout" => "weir has no limit on a whole transaction",
        _ => "it is not a user parameter weir knows",
    })
}

/// Whether two spellings of a value are the same: equal ignoring case and spaces, or equal
/// as numbers (`0` and `0.0`).
fn same_value(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let (a, b) = (norm(a), norm(b));
    if a == b {
        return true;
    }
    matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmless_values_get_no_warning() {
        assert_eq!(general("peer_id", "0"), Verdict::Harmless);
        assert_eq!(general("reserve_pool_size", "0.0"), Verdict::Harmless);
        assert_eq!(
            general("client_tls_protocols", "TLSv1.2, TLSv1.3"),
            Verdict::Harmless
        );
        assert_eq!(general("conffile", "/etc/x.ini"), Verdict::Harmless);
        assert_eq!(general("unix_socket_dir", ""), Verdict::Harmless);
        // What weir does anyway, in any case, with or without the `;`.
        for reset in ["DISCARD ALL", "discard all;", " Discard  All ; "] {
            assert_eq!(general("server_reset_query", reset), Verdict::Harmless);
        }
    }

    #[test]
    fn lost_settings_say_why() {
        assert_eq!(
            general("server_reset_query", "RESET ALL"),
            Verdict::Lost("weir always resets session-mode servers with DISCARD ALL")
        );
        assert!(matches!(
            general("unix_socket_dir", "/tmp"),
            Verdict::Lost(_)
        ));
        assert!(matches!(general("no_such_setting", "1"), Verdict::Lost(_)));
        assert_eq!(database_param("host"), None);
        assert!(database_param("connect_query").is_some());
        assert_eq!(user_param("pool_mode"), None);
        assert!(user_param("max_user_connections").is_some());
    }

    #[test]
    fn every_lost_setting_has_a_reason() {
        for (key, harmless, reason) in GENERAL {
            assert!(
                harmless.contains(&"*") || !reason.is_empty(),
                "{key} needs a reason"
            );
        }
    }
}
