//! The configuration exactly as written: serde structs that mirror the TOML tables.
//!
//! Owns: the shape of the file (table and key names, unknown keys refused).
//! Does not: interpret values, apply defaults or validate; `convert.rs` does all of that,
//! so every message about a value is written there, with its key path.
//!
//! Leaf values are kept as [`Scalar`]s rather than typed fields: TOML gives typed values
//! but environment overrides give strings, and parsing both in one place gives one set of
//! clear messages (`pool.mode: unknown value "tranaction" (...)`) instead of serde's.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// The whole file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a TOML document of tables")]
pub(crate) struct RawConfig {
    /// `[listen]`
    pub listen: Option<RawListen>,
    /// `[pool]`
    pub pool: Option<RawPool>,
    /// `[auth]`
    pub auth: Option<RawAuth>,
    /// `[admin]`
    pub admin: Option<RawAdmin>,
    /// `[metrics]`
    pub metrics: Option<RawMetrics>,
    /// `[tls]`
    pub tls: Option<RawTls>,
    /// `[server_tls]`
    pub server_tls: Option<RawServerTls>,
    /// `[cluster]`
    pub cluster: Option<RawCluster>,
    /// `[routing]`
    pub routing: Option<RawRouting>,
    /// `[limits]`
    pub limits: Option<RawLimits>,
    /// `[[users]]`
    pub users: Option<Entries<RawUser>>,
    /// `[[databases]]`
    pub databases: Option<Entries<RawDatabase>>,
}

/// The entries of an array of tables (`[[users]]`, `[[databases]]`). Its own type only for
/// the message when someone writes a single `[databases]` table, PgBouncer style.
pub(crate) struct Entries<T>(pub Vec<T>);

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

/// The `[[name]]` an entry type is written under.
pub(crate) trait TableName {
    /// `users` or `databases`.
    const NAME: &'static str;
}

impl TableName for RawUser {
    const NAME: &'static str = "users";
}

impl TableName for RawDatabase {
    const NAME: &'static str = "databases";
}

impl<'de, T: Deserialize<'de> + TableName> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EntriesVisitor(std::marker::PhantomData))
    }
}

/// Accepts a list of tables; explains the `[[name]]` syntax when given one table.
struct EntriesVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de> + TableName> Visitor<'de> for EntriesVisitor<T> {
    type Value = Entries<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a list of tables, each under its own [[{}]] header",
            T::NAME
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entries<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<T>()? {
            items.push(item);
        }
        Ok(Entries(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<Entries<T>, A::Error> {
        Err(de::Error::custom(format_args!(
            "found a single [{0}] table; write each entry under its own [[{0}]] header (double brackets)",
            T::NAME
        )))
    }
}

/// `[listen]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [listen] table")]
pub(crate) struct RawListen {
    /// `addr = "127.0.0.1:6432"`
    pub addr: Option<Scalar>,
    /// `client_login_timeout = "60s"`
    pub client_login_timeout: Option<Scalar>,
    /// `shutdown_timeout = "30s"`
    pub shutdown_timeout: Option<Scalar>,
    /// `workers = 0`
    pub workers: Option<Scalar>,
    /// `reuse_port = false`
    pub reuse_port: Option<Scalar>,
}

/// `[pool]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [pool] table")]
pub(crate) struct RawPool {
    /// `mode = "transaction"`
    pub mode: Option<Scalar>,
    /// `size = 20`
    pub size: Option<Scalar>,
    /// `min_size = 0`
    pub min_size: Option<Scalar>,
    /// `max_client_conn = 10000`
    pub max_client_conn: Option<Scalar>,
    /// `query_wait_timeout = "30s"`
    pub query_wait_timeout: Option<Scalar>,
    /// `server_lifetime = "1h"`
    pub server_lifetime: Option<Scalar>,
    /// `server_idle_timeout = "10m"`
    pub server_idle_timeout: Option<Scalar>,
    /// `server_connect_timeout = "5s"`
    pub server_connect_timeout: Option<Scalar>,
    /// `client_idle_timeout = 0`
    pub client_idle_timeout: Option<Scalar>,
    /// `idle_transaction_timeout = 0`
    pub idle_transaction_timeout: Option<Scalar>,
    /// `query_timeout = 0`
    pub query_timeout: Option<Scalar>,
    /// `max_prepared_statements = 200`
    pub max_prepared_statements: Option<Scalar>,
}

/// `[auth]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [auth] table")]
pub(crate) struct RawAuth {
    /// `method = "scram-sha-256"`
    pub method: Option<Scalar>,
    /// `failure_delay = "0s"`
    pub failure_delay: Option<Scalar>,
    /// `user = "pgbouncer_auth"`
    pub user: Option<Scalar>,
    /// `query = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1"`
    pub query: Option<Scalar>,
    /// `dbname = "postgres"`
    pub dbname: Option<Scalar>,
    /// `cache_ttl = "30s"`
    pub cache_ttl: Option<Scalar>,
}

/// `[limits]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [limits] table")]
pub(crate) struct RawLimits {
    /// `max_message_size = "64MB"`
    pub max_message_size: Option<Scalar>,
}

/// `[admin]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an [admin] table")]
pub(crate) struct RawAdmin {
    /// `users = ["admin"]`
    pub users: Option<StringList>,
}

/// `[metrics]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [metrics] table")]
pub(crate) struct RawMetrics {
    /// `listen = "127.0.0.1:9930"`
    pub listen: Option<Scalar>,
}

/// `[tls]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [tls] table")]
pub(crate) struct RawTls {
    /// `cert = "etc/tls/server.crt"`
    pub cert: Option<Scalar>,
    /// `key = "etc/tls/server.key"`
    pub key: Option<Scalar>,
    /// `mode = "allow"`
    pub mode: Option<Scalar>,
    /// `client_ca = "etc/tls/client-ca.crt"`
    pub client_ca: Option<Scalar>,
}

/// `[server_tls]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [server_tls] table")]
pub(crate) struct RawServerTls {
    /// `mode = "prefer"`
    pub mode: Option<Scalar>,
    /// `ca = "etc/tls/ca.crt"`
    pub ca: Option<Scalar>,
    /// `cert = "etc/tls/weir-client.crt"`
    pub cert: Option<Scalar>,
    /// `key = "etc/tls/weir-client.key"`
    pub key: Option<Scalar>,
}

/// `[cluster]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [cluster] table")]
pub(crate) struct RawCluster {
    /// `health_check_interval = "1s"`
    pub health_check_interval: Option<Scalar>,
    /// `health_check_timeout = "2s"`
    pub health_check_timeout: Option<Scalar>,
    /// `health_check_user = "app"`
    pub health_check_user: Option<Scalar>,
    /// `down_after = 3`
    pub down_after: Option<Scalar>,
    /// `failover_timeout = "30s"`
    pub failover_timeout: Option<Scalar>,
    /// `auto_promote = false`
    pub auto_promote: Option<Scalar>,
    /// `promote_after = "10s"`
    pub promote_after: Option<Scalar>,
    /// `promote_user = "admin"`
    pub promote_user: Option<Scalar>,
}

/// `[routing]` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [routing] table")]
pub(crate) struct RawRouting {
    /// `transactions = "explicit"`
    pub transactions: Option<Scalar>,
    /// `read_your_writes = true`
    pub read_your_writes: Option<Scalar>,
    /// `max_replica_lag = "10s"`
    pub max_replica_lag: Option<Scalar>,
    /// `max_replica_lag_bytes = 0`
    pub max_replica_lag_bytes: Option<Scalar>,
    /// `primary_reads = "fallback"`
    pub primary_reads: Option<Scalar>,
    /// `write_functions = ["audit"]`
    pub write_functions: Option<StringList>,
    /// `read_functions = ["lookup"]`
    pub read_functions: Option<StringList>,
}

/// One `[[users]]` entry as written. No `Debug`: it holds a password.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[users]] table")]
pub(crate) struct RawUser {
    /// `name = "app"`
    pub name: Option<Scalar>,
    /// `password = "..."`
    pub password: Option<Scalar>,
    /// `auth_method = "md5"`
    pub auth_method: Option<Scalar>,
    /// `max_client_conn = 100`
    pub max_client_conn: Option<Scalar>,
    /// `previous_passwords = ["..."]`
    pub previous_passwords: Option<Vec<Scalar>>,
}

/// One `[[databases]]` entry as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[databases]] table")]
pub(crate) struct RawDatabase {
    /// `name = "appdb"`
    pub name: Option<Scalar>,
    /// `dbname = "appdb"`
    pub dbname: Option<Scalar>,
    /// `hosts = ["127.0.0.1:5432"]`
    pub hosts: Option<StringList>,
    /// `routing = "read_write"`
    pub routing: Option<Scalar>,
    /// `max_client_conn = 100`
    pub max_client_conn: Option<Scalar>,
}

/// One leaf value as written. The file gives typed values; the environment gives strings.
/// No `Debug`, so a password can never be printed by accident.
pub(crate) enum Scalar {
    /// A TOML string, or any environment value.
    Str(String),
    /// A TOML integer (`i128` holds both serde's `i64` and `u64`).
    Int(i128),
    /// A TOML float.
    Float(f64),
    /// A TOML boolean.
    Bool(bool),
}

impl Scalar {
    /// What kind of value this is, for "expected X, found Y" messages that must not echo
    /// the value itself (it may be a password).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Int(_) => "an integer",
            Self::Float(_) => "a decimal number",
            Self::Bool(_) => "a boolean",
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Accepts any single value; refuses tables and arrays.
struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a single value (a string or a number)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
}

/// A list of strings: a TOML array (`["a", "b"]`), or one comma-separated string
/// (`"a, b"`), which is how lists arrive from the environment (`WEIR_ADMIN__USERS=a,b`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StringListVisitor)
    }
}

/// Accepts an array of strings or one comma-separated string.
struct StringListVisitor;

impl<'de> Visitor<'de> for StringListVisitor {
    type Value = StringList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a list of strings, e.g. ["a", "b"]"#)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
        if v.trim().is_empty() {
            return Ok(StringList(Vec::new()));
        }
        Ok(StringList(
            v.split(',').map(|s| s.trim().to_owned()).collect(),
        ))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<StringItem>()? {
            items.push(item.0);
        }
        Ok(StringList(items))
    }
}

/// One element of a [`StringList`] array: strings only, so `[5432]` is refused rather
/// than silently turned into `"5432"`.
struct StringItem(String);

impl<'de> Deserialize<'de> for StringItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StringItemVisitor)
    }
}

/// Accepts a string and nothing else.
struct StringItemVisitor;

impl<'de> Visitor<'de> for StringItemVisitor {
    type Value = StringItem;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string in quotes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StringItem, E> {
        Ok(StringItem(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<StringItem, E> {
        Ok(StringItem(v))
    }
}
