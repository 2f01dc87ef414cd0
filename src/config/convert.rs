//! Raw file structs to validated settings: the only place configuration values are checked.
//!
//! Owns: parsing every leaf value, defaults, and the rules between keys (`min_size <= size`,
//! unique names, reserved names, `cert` needs `[tls]`...). Every error names its key path.
//! Does not: read files or the environment, or check a password's form (`auth` does).

use std::collections::HashMap;
use std::time::Duration;

use super::error::{ConfigError, Problem};
use super::model::{
    AdminSettings, AuthMethod, AuthSettings, ClusterSettings, Config, DatabaseConfig, HostAddr,
    LimitsSettings, ListenSettings, MetricsSettings, PoolMode, PoolSettings, PrimaryReads, Routing,
    RoutingSettings, ServerTlsMode, ServerTlsSettings, TlsMode, TlsSettings, TransactionRouting,
    UserConfig, DEFAULT_AUTH_CACHE_TTL, DEFAULT_AUTH_QUERY, MAX_FAILURE_DELAY, MAX_MESSAGE_SIZE,
};
use super::raw::{
    RawAdmin, RawAuth, RawCluster, RawConfig, RawDatabase, RawLimits, RawListen, RawMetrics,
    RawPool, RawRouting, RawServerTls, RawTls, RawUser, Scalar, StringList,
};
use super::values::{
    boolean, cert_and_key, check_name, choice, duration, non_zero, or, parse_host_addr, path,
    required, size, socket_addr, string, unique, whole, Zero,
};

/// Database names that open the admin console instead of a pool.
pub const RESERVED_DATABASES: [&str; 2] = ["weir", "pgbouncer"];

/// Checks and converts the whole file.
pub(crate) fn config(raw: RawConfig) -> Result<Config, ConfigError> {
    let config = Config {
        listen: listen(raw.listen.unwrap_or_default())?,
        pool: pool(raw.pool.unwrap_or_default())?,
        auth: auth(raw.auth.unwrap_or_default())?,
        admin: admin(raw.admin.unwrap_or_default())?,
        metrics: raw.metrics.map(metrics).transpose()?.flatten(),
        tls: raw.tls.map(tls).transpose()?.flatten(),
        server_tls: server_tls(raw.server_tls.unwrap_or_default())?,
        cluster: cluster(raw.cluster.unwrap_or_default())?,
        routing: routing(raw.routing.unwrap_or_default())?,
        limits: limits(raw.limits.unwrap_or_default())?,
        users: users(raw.users.unwrap_or_default().0)?,
        databases: databases(raw.databases.unwrap_or_default().0)?,
    };
    cross_check(&config)?;
    Ok(config)
}

/// Most threads `listen.workers` may ask for.
const MAX_WORKERS: u32 = 1024;

/// `[listen]`.
fn listen(raw: RawListen) -> Result<ListenSettings, ConfigError> {
    let d = ListenSettings::default();
    Ok(ListenSettings {
        addr: or(raw.addr, d.addr, |v| socket_addr("listen.addr", v))?,
        client_login_timeout: or(raw.client_login_timeout, d.client_login_timeout, |v| {
            duration("listen.client_login_timeout", v, Zero::Refused)
        })?,
        shutdown_timeout: or(raw.shutdown_timeout, d.shutdown_timeout, |v| {
            duration("listen.shutdown_timeout", v, Zero::Allowed)
        })?,
        workers: or(raw.workers, d.workers, |v| {
            let n = whole("listen.workers", v, 0)?;
            if n > MAX_WORKERS {
                return Err(ConfigError::invalid(
                    "listen.workers",
                    Problem::OutOfRange {
                        value: n.to_string(),
                        min: 0,
                        max: MAX_WORKERS.into(),
                    },
                ));
            }
            Ok(n)
        })?,
        reuse_port: or(raw.reuse_port, d.reuse_port, |v| {
            boolean("listen.reuse_port", v)
        })?,
    })
}

/// `[pool]`.
fn pool(raw: RawPool) -> Result<PoolSettings, ConfigError> {
    let d = PoolSettings::default();
    let settings = PoolSettings {
        mode: or(raw.mode, d.mode, |v| {
            choice("pool.mode", v, PoolMode::VARIANTS)
        })?,
        size: or(raw.size, d.size, |v| non_zero("pool.size", v))?,
        min_size: or(raw.min_size, d.min_size, |v| whole("pool.min_size", v, 0))?,
        max_client_conn: or(raw.max_client_conn, d.max_client_conn, |v| {
            non_zero("pool.max_client_conn", v)
        })?,
        query_wait_timeout: or(raw.query_wait_timeout, d.query_wait_timeout, |v| {
            duration("pool.query_wait_timeout", v, Zero::Refused)
        })?,
        server_lifetime: or(raw.server_lifetime, d.server_lifetime, |v| {
            duration("pool.server_lifetime", v, Zero::Refused)
        })?,
        server_idle_timeout: or(raw.server_idle_timeout, d.server_idle_timeout, |v| {
            duration("pool.server_idle_timeout", v, Zero::Refused)
        })?,
        server_connect_timeout: or(raw.server_connect_timeout, d.server_connect_timeout, |v| {
            duration("pool.server_connect_timeout", v, Zero::Refused)
        })?,
        client_idle_timeout: or(raw.client_idle_timeout, d.client_idle_timeout, |v| {
            duration("pool.client_idle_timeout", v, Zero::Allowed)
        })?,
        idle_transaction_timeout: or(
            raw.idle_transaction_timeout,
            d.idle_transaction_timeout,
            |v| duration("pool.idle_transaction_timeout", v, Zero::Allowed),
        )?,
        query_timeout: or(raw.query_timeout, d.query_timeout, |v| {
            duration("pool.query_timeout", v, Zero::Allowed)
        })?,
        max_prepared_statements: or(
            raw.max_prepared_statements,
            d.max_prepared_statements,
            |v| whole("pool.max_prepared_statements", v, 1),
        )?,
    };
    if settings.min_size > settings.size.get() {
        return Err(ConfigError::invalid(
            "pool.min_size",
            Problem::MinAboveSize {
                min_size: settings.min_size,
                size: settings.size.get(),
            },
        ));
    }
    Ok(settings)
}

/// `[auth]`.
fn auth(raw: RawAuth) -> Result<AuthSettings, ConfigError> {
    Ok(AuthSettings {
        method: or(raw.method, AuthMethod::default(), |v| {
            choice("auth.method", v, AuthMethod::VARIANTS)
        })?,
        failure_delay: or(raw.failure_delay, Duration::ZERO, |v| {
            let delay = duration("auth.failure_delay", v, Zero::Allowed)?;
            if delay > MAX_FAILURE_DELAY {
                return Err(ConfigError::invalid(
                    "auth.failure_delay",
                    Problem::Rule("at most 10s: a longer delay only holds connections open"),
                ));
            }
            Ok(delay)
        })?,
        user: raw
            .user
            .map(|v| string("auth.user", v).and_then(|n| check_name("auth.user", n)))
            .transpose()?,
        query: or(raw.query, DEFAULT_AUTH_QUERY.to_owned(), |v| {
            let query = string("auth.query", v)?;
            if !query.contains("$1") {
                return Err(ConfigError::invalid(
                    "auth.query",
                    Problem::Rule("the query must take the user name as $1"),
                ));
            }
            Ok(query)
        })?,
        dbname: raw
            .dbname
            .map(|v| string("auth.dbname", v).and_then(|n| check_name("auth.dbname", n)))
            .transpose()?,
        cache_ttl: or(raw.cache_ttl, DEFAULT_AUTH_CACHE_TTL, |v| {
            duration("auth.cache_ttl", v, Zero::Allowed)
        })?,
    })
}

/// `[limits]`.
fn limits(raw: RawLimits) -> Result<LimitsSettings, ConfigError> {
    Ok(LimitsSettings {
        max_message_size: or(raw.max_message_size, MAX_MESSAGE_SIZE, |v| {
            size("limits.max_message_size", v)
        })?,
    })
}

/// `[admin]`.
fn admin(raw: RawAdmin) -> Result<AdminSettings, ConfigError> {
    let StringList(names) = raw.users.unwrap_or_default();
    let users = names
        .into_iter()
        .enumerate()
        .map(|(i, n)| check_name(&format!("admin.users[{i}]"), n))
        .collect::<Result<_, _>>()?;
    Ok(AdminSettings { users })
}

/// `[metrics]`: no section, no `listen`, or an empty `listen` all mean no listener.
fn metrics(raw: RawMetrics) -> Result<Option<MetricsSettings>, ConfigError> {
    match raw.listen {
        None => Ok(None),
        Some(Scalar::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => Ok(Some(MetricsSettings {
            listen: socket_addr("metrics.listen", v)?,
        })),
    }
}

/// `[tls]`: without files, no TLS (and a `mode` that needs them is refused); otherwise
/// both files are required.
fn tls(raw: RawTls) -> Result<Option<TlsSettings>, ConfigError> {
    let mode = raw
        .mode
        .map(|v| choice("tls.mode", v, TlsMode::VARIANTS))
        .transpose()?;
    let pair = cert_and_key(
        ("tls.cert", raw.cert),
        ("tls.key", raw.key),
        "[tls] needs both cert and key",
    )?;
    match pair {
        None => match mode {
            None | Some(TlsMode::Disable) => Ok(None),
            Some(_) => Err(ConfigError::invalid(
                "tls.mode",
                Problem::Missing("TLS needs tls.cert and tls.key (or tls.mode = \"disable\")"),
            )),
        },
        Some((cert, key)) => Ok(Some(TlsSettings {
            cert,
            key,
            mode: mode.unwrap_or_default(),
            client_ca: raw
                .client_ca
                .map(|v| path("tls.client_ca", v))
                .transpose()?,
        })),
    }
}

/// `[server_tls]`: the verifying modes need the CA file.
fn server_tls(raw: RawServerTls) -> Result<ServerTlsSettings, ConfigError> {
    let mode = raw
        .mode
        .map(|v| choice("server_tls.mode", v, ServerTlsMode::VARIANTS))
        .transpose()?
        .unwrap_or_default();
    let ca = raw.ca.map(|v| path("server_tls.ca", v)).transpose()?;
    if mode.verifies() && ca.is_none() {
        return Err(ConfigError::invalid(
            "server_tls.ca",
            Problem::Missing(
                "server_tls.mode = \"verify-ca\" or \"verify-full\" needs the CA file",
            ),
        ));
    }
    let cert = cert_and_key(
        ("server_tls.cert", raw.cert),
        ("server_tls.key", raw.key),
        "a client certificate needs both cert and key",
    )?;
    Ok(ServerTlsSettings { mode, ca, cert })
}

/// `[cluster]`.
fn cluster(raw: RawCluster) -> Result<ClusterSettings, ConfigError> {
    let d = ClusterSettings::default();
    Ok(ClusterSettings {
        health_check_interval: or(raw.health_check_interval, d.health_check_interval, |v| {
            duration("cluster.health_check_interval", v, Zero::Refused)
        })?,
        health_check_timeout: or(raw.health_check_timeout, d.health_check_timeout, |v| {
            duration("cluster.health_check_timeout", v, Zero::Refused)
        })?,
        health_check_user: raw
            .health_check_user
            .map(|v| {
                let key = "cluster.health_check_user";
                check_name(key, string(key, v)?)
            })
            .transpose()?,
        down_after: or(raw.down_after, d.down_after, |v| {
            whole("cluster.down_after", v, 1)
        })?,
        failover_timeout: or(raw.failover_timeout, d.failover_timeout, |v| {
            duration("cluster.failover_timeout", v, Zero::Allowed)
        })?,
        auto_promote: or(raw.auto_promote, d.auto_promote, |v| {
            boolean("cluster.auto_promote", v)
        })?,
        promote_after: or(raw.promote_after, d.promote_after, |v| {
            duration("cluster.promote_after", v, Zero::Refused)
        })?,
        promote_user: raw
            .promote_user
            .map(|v| {
                let key = "cluster.promote_user";
                check_name(key, string(key, v)?)
            })
            .transpose()?,
    })
}

/// `[routing]`.
fn routing(raw: RawRouting) -> Result<RoutingSettings, ConfigError> {
    let d = RoutingSettings::default();
    Ok(RoutingSettings {
        transactions: or(raw.transactions, d.transactions, |v| {
            choice("routing.transactions", v, TransactionRouting::VARIANTS)
        })?,
        read_your_writes: or(raw.read_your_writes, d.read_your_writes, |v| {
            boolean("routing.read_your_writes", v)
        })?,
        max_replica_lag: or(raw.max_replica_lag, d.max_replica_lag, |v| {
            duration("routing.max_replica_lag", v, Zero::Allowed)
        })?,
        max_replica_lag_bytes: or(raw.max_replica_lag_bytes, d.max_replica_lag_bytes, |v| {
            whole("routing.max_replica_lag_bytes", v, 0).map(u64::from)
        })?,
        primary_reads: or(raw.primary_reads, d.primary_reads, |v| {
            choice("routing.primary_reads", v, PrimaryReads::VARIANTS)
        })?,
        write_functions: function_names("routing.write_functions", raw.write_functions)?,
        read_functions: function_names("routing.read_functions", raw.read_functions)?,
    })
}

/// A list of function names, none empty.
fn function_names(key: &str, raw: Option<StringList>) -> Result<Vec<String>, ConfigError> {
    let StringList(names) = raw.unwrap_or_default();
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(ConfigError::invalid(format!("{key}[{i}]"), Problem::Empty));
        }
    }
    Ok(names)
}

/// `[[users]]`: names present, valid and unique.
fn users(raw: Vec<RawUser>) -> Result<Vec<UserConfig>, ConfigError> {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut users = Vec::with_capacity(raw.len());
    for (i, u) in raw.into_iter().enumerate() {
        let at = format!("users[{i}]");
        let name_key = format!("{at}.name");
        let name = required(&name_key, u.name, "every [[users]] entry needs a name")?;
        let name = check_name(&name_key, string(&name_key, name)?)?;
        unique(&mut seen, &name, &name_key)?;
        let password = u
            .password
            .map(|v| {
                let key = format!("{at}.password");
                let password = string(&key, v)?;
                if password.is_empty() {
                    return Err(ConfigError::invalid(key, Problem::Empty));
                }
                Ok(password)
            })
            .transpose()?;
        let auth_method = u
            .auth_method
            .map(|v| choice(&format!("{at}.auth_method"), v, AuthMethod::VARIANTS))
            .transpose()?;
        let max_client_conn = u
            .max_client_conn
            .map(|v| non_zero(&format!("{at}.max_client_conn"), v))
            .transpose()?;
        let previous_passwords = u
            .previous_passwords
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(j, v)| {
                let key = format!("{at}.previous_passwords[{j}]");
                let password = string(&key, v)?;
                if password.is_empty() {
                    return Err(ConfigError::invalid(key, Problem::Empty));
                }
                Ok(password)
            })
            .collect::<Result<Vec<_>, _>>()?;
        users.push(UserConfig {
            name,
            password,
            auth_method,
            max_client_conn,
            previous_passwords,
        });
    }
    Ok(users)
}

/// `[[databases]]`: names present, valid, unique and not reserved; at least one host each.
fn databases(raw: Vec<RawDatabase>) -> Result<Vec<DatabaseConfig>, ConfigError> {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut databases = Vec::with_capacity(raw.len());
    for (i, d) in raw.into_iter().enumerate() {
        let at = format!("databases[{i}]");
        let name_key = format!("{at}.name");
        let name = required(&name_key, d.name, "every [[databases]] entry needs a name")?;
        let name = check_name(&name_key, string(&name_key, name)?)?;
        if RESERVED_DATABASES.contains(&name.as_str()) {
            return Err(ConfigError::invalid(name_key, Problem::Reserved(name)));
        }
        unique(&mut seen, &name, &name_key)?;
        let dbname = match d.dbname {
            Some(v) => {
                let key = format!("{at}.dbname");
                check_name(&key, string(&key, v)?)?
            }
            None => name.clone(),
        };
        let hosts = hosts(&format!("{at}.hosts"), d.hosts)?;
        let routing = or(d.routing, Routing::default(), |v| {
            choice(&format!("{at}.routing"), v, Routing::VARIANTS)
        })?;
        let max_client_conn = d
            .max_client_conn
            .map(|v| non_zero(&format!("{at}.max_client_conn"), v))
            .transpose()?;
        databases.push(DatabaseConfig {
            name,
            dbname,
            hosts,
            routing,
            max_client_conn,
        });
    }
    Ok(databases)
}

/// A database's `hosts`: at least one, each a valid host:port, none twice.
fn hosts(key: &str, raw: Option<StringList>) -> Result<Vec<HostAddr>, ConfigError> {
    let StringList(entries) = raw.unwrap_or_default();
    if entries.is_empty() {
        return Err(ConfigError::invalid(
            key,
            Problem::Missing(r#"at least one server is needed, e.g. hosts = ["127.0.0.1:5432"]"#),
        ));
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut hosts = Vec::with_capacity(entries.len());
    for (j, entry) in entries.into_iter().enumerate() {
        let at = format!("{key}[{j}]");
        let host = parse_host_addr(&entry).map_err(|reason| {
            ConfigError::invalid(
                at.clone(),
                Problem::NotAHostPort {
                    value: entry.clone(),
                    reason,
                },
            )
        })?;
        unique(&mut seen, &host.to_string(), &at)?;
        hosts.push(host);
    }
    Ok(hosts)
}

/// Rules that involve more than one key.
fn cross_check(config: &Config) -> Result<(), ConfigError> {
    if let Some(metrics) = &config.metrics {
        if metrics.listen == config.listen.addr && metrics.listen.port() != 0 {
            return Err(ConfigError::invalid(
                "metrics.listen",
                Problem::AddressClash {
                    addr: metrics.listen.to_string(),
                    other: "listen.addr",
                },
            ));
        }
    }
    // Users weir logs in as on its own, before any client has: they must exist, and a
    // SCRAM verifier alone is not enough for them (pass-through needs a client's login).
    for (key, name) in [
        (
            "cluster.health_check_user",
            &config.cluster.health_check_user,
        ),
        ("cluster.promote_user", &config.cluster.promote_user),
        ("auth.user", &config.auth.user),
    ] {
        let Some(name) = name else { continue };
        let Some(user) = config.user(name) else {
            return Err(ConfigError::invalid(
                key,
                Problem::UnknownUser(name.clone()),
            ));
        };
        if user
            .password
            .as_deref()
            .is_some_and(|p| p.starts_with("SCRAM-SHA-256$"))
        {
            return Err(ConfigError::invalid(
                key,
                Problem::Rule("weir logs in as this user before any client does, so its password must be plaintext or an md5 verifier, not a SCRAM verifier"),
            ));
        }
    }
    let client_certs = config
        .tls
        .as_ref()
        .is_some_and(|t| t.mode != TlsMode::Disable && t.client_ca.is_some());
    if !client_certs && config.auth.method == AuthMethod::Cert {
        return Err(ConfigError::invalid(
            "auth.method",
            Problem::CertWithoutTls(AuthMethod::Cert.as_str()),
        ));
    }
    for (i, user) in config.users.iter().enumerate() {
        let method = config.auth_method_for(user);
        if method == AuthMethod::Cert && !client_certs {
            return Err(ConfigError::invalid(
                format!("users[{i}].auth_method"),
                Problem::CertWithoutTls(method.as_str()),
            ));
        }
        match &user.password {
            None if method.needs_password() => {
                return Err(ConfigError::invalid(
                    format!("users[{i}].password"),
                    Problem::PasswordRequired {
                        user: user.name.clone(),
                        method: method.as_str(),
                    },
                ));
            }
            Some(p) if method == AuthMethod::Md5 && p.starts_with("SCRAM-SHA-256$") => {
                return Err(ConfigError::invalid(
                    format!("users[{i}].password"),
                    Problem::ScramVerifierWithMd5(user.name.clone()),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
