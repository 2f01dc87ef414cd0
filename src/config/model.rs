//! The validated configuration the rest of weir sees: typed, defaults applied.
//!
//! Owns: the settings types, their defaults, and how they print (passwords never).
//! Does not: read files, parse text or validate; `convert.rs` builds these from `raw.rs`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

/// A `NonZeroU32` constant without `unwrap` (`NonZeroU32::new` is not usable in `const` with `?`).
const fn non_zero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

/// The whole configuration: one immutable snapshot, swapped whole on reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Where clients connect and how long they get to log in; `[listen]`.
    pub listen: ListenSettings,
    /// How server connections are shared and when waits give up; `[pool]`.
    pub pool: PoolSettings,
    /// The client-facing login method unless a user overrides it; `[auth]`.
    pub auth: AuthSettings,
    /// Who may use the admin console (`weir` / `pgbouncer` database); `[admin]`.
    pub admin: AdminSettings,
    /// The Prometheus listener; `None` when `[metrics]` is absent or `listen` is empty.
    pub metrics: Option<MetricsSettings>,
    /// Client-facing TLS; `None` when `[tls]` is absent (then weir refuses `SSLRequest`).
    pub tls: Option<TlsSettings>,
    /// TLS toward the servers.
    pub server_tls: ServerTlsSettings,
    /// How weir watches the hosts of each database; `[cluster]`.
    pub cluster: ClusterSettings,
    /// How statements are split between the primary and the replicas; `[routing]`.
    pub routing: RoutingSettings,
    /// `[limits]`: bounds on what one client may send.
    pub limits: LimitsSettings,
    /// The users clients may log in as (`[[users]]`), in file order, names unique.
    pub users: Vec<UserConfig>,
    /// The databases clients may connect to (`[[databases]]`), in file order, names unique.
    pub databases: Vec<DatabaseConfig>,
}

impl Config {
    /// The `[[users]]` entry a client names in its startup packet, if any.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The `[[databases]]` entry a client names in its startup packet, if any.
    pub fn database(&self, name: &str) -> Option<&DatabaseConfig> {
        self.databases.iter().find(|d| d.name == name)
    }

    /// The method a user must log in with: its own `auth_method`, else `auth.method`.
    pub fn auth_method_for(&self, user: &UserConfig) -> AuthMethod {
        user.auth_method.unwrap_or(self.auth.method)
    }
}

/// `[listen]`: the client-facing socket and the deadlines that belong to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenSettings {
    /// Address clients connect to; PgBouncer's `listen_addr` + `listen_port` in one value.
    pub addr: SocketAddr,
    /// A client that has not finished startup + authentication by then is disconnected,
    /// so half-open connections cannot pin slots forever. Never zero.
    pub client_login_timeout: Duration,
    /// On shutdown, how long running transactions get to finish before their clients are
    /// cut off. Zero closes everything at once.
    pub shutdown_timeout: Duration,
    /// Threads serving clients; 0 = one per CPU core. Read at start only.
    pub workers: u32,
    /// Bind `addr` with `SO_REUSEPORT`, so several weir processes on one host can share
    /// the port and the kernel spreads new connections over them (PgBouncer's
    /// `so_reuseport`). Every process on the port must set it. Read at start only.
    pub reuse_port: bool,
}

impl ListenSettings {
    /// Default client-facing address: loopback only, PgBouncer's port, so a fresh install is
    /// not reachable from the network by accident.
    pub const DEFAULT_ADDR: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6432));
}

impl Default for ListenSettings {
    fn default() -> Self {
        Self {
            addr: Self::DEFAULT_ADDR,
            client_login_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            workers: 0,
            reuse_port: false,
        }
    }
}

/// `[pool]`: server-connection pools, one per (backend host, database, user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// When a server connection goes back to the pool (after the session, transaction or
    /// statement).
    pub mode: PoolMode,
    /// Most server connections per (host, database, user); PgBouncer's `default_pool_size`.
    pub size: NonZeroU32,
    /// Server connections kept open even when idle, so a burst after a quiet period does not
    /// pay for connects; always `<= size`.
    pub min_size: u32,
    /// Most client connections weir accepts in total; more get SQLSTATE 53300.
    pub max_client_conn: NonZeroU32,
    /// A client waiting for a server connection gives up with 08001 after this. Never zero.
    pub query_wait_timeout: Duration,
    /// An idle server connection older than this is closed instead of reused, so servers
    /// shed per-connection memory and pick up `ALTER ROLE ... SET` changes. Never zero.
    pub server_lifetime: Duration,
    /// A server connection idle in the pool for this long is closed (down to `min_size`).
    /// Never zero.
    pub server_idle_timeout: Duration,
    /// Connecting to and logging in on a server must finish within this. Never zero.
    pub server_connect_timeout: Duration,
    /// A client idle (outside a transaction) this long is disconnected; zero = off.
    pub client_idle_timeout: Duration,
    /// A client idle inside a transaction this long is disconnected and its server rolled
    /// back, so one stuck client cannot hold a server and its locks; zero = off.
    pub idle_transaction_timeout: Duration,
    /// A query running this long is cancelled on the server; zero = off. Meant as a
    /// backstop slightly above the server's own `statement_timeout`.
    pub query_timeout: Duration,
    /// Named prepared statements weir keeps per server connection in transaction mode;
    /// past it the least recently used one is closed on that server (clients keep theirs
    /// and get it re-prepared when they use it).
    pub max_prepared_statements: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            mode: PoolMode::Transaction,
            size: non_zero(20),
            min_size: 0,
            max_client_conn: non_zero(10_000),
            query_wait_timeout: Duration::from_secs(30),
            server_lifetime: Duration::from_secs(3600),
            server_idle_timeout: Duration::from_secs(600),
            server_connect_timeout: Duration::from_secs(5),
            client_idle_timeout: Duration::ZERO,
            idle_transaction_timeout: Duration::ZERO,
            query_timeout: Duration::ZERO,
            max_prepared_statements: 200,
        }
    }
}

/// When a server connection is handed back to the pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PoolMode {
    /// After the client disconnects: every session feature works, least sharing.
    Session,
    /// After each transaction: the default, the reason weir exists.
    #[default]
    Transaction,
    /// After each statement: multi-statement transactions are refused.
    Statement,
}

impl PoolMode {
    /// Every accepted spelling, in the order error messages list them.
    pub const VARIANTS: &'static [(&'static str, Self)] = &[
        ("session", Self::Session),
        ("transaction", Self::Transaction),
        ("statement", Self::Statement),
    ];

    /// The configuration-file spelling, also used by `SHOW CONFIG` / `SHOW POOLS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Transaction => "transaction",
            Self::Statement => "statement",
        }
    }
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[limits]`: bounds on what one client may send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsSettings {
    /// Largest message a client may send, in bytes: its length word and body, as the
    /// length word counts them (the type byte aside). Larger ones end the connection
    /// with `08P01`. Messages are relayed as they arrive, never buffered whole, whatever
    /// this is.
    pub max_message_size: usize,
}

/// PostgreSQL's own limit on a message (MaxAllocSize - 1): the default.
pub const MAX_MESSAGE_SIZE: usize = crate::protocol::MAX_MESSAGE_LEN;

impl Default for LimitsSettings {
    fn default() -> Self {
        Self {
            max_message_size: MAX_MESSAGE_SIZE,
        }
    }
}

/// `[auth]`: client-facing authentication defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    /// The method clients log in with unless their `[[users]]` entry says otherwise.
    pub method: AuthMethod,
    /// How long a failed login waits before its error is sent (zero: not at all).
    pub failure_delay: Duration,
    /// `auth_query`: the `[[users]]` entry weir runs `query` as, to learn the verifier of a
    /// user that is not listed. `None`: only listed users log in.
    pub user: Option<String>,
    /// Returns the user's name and password verifier for `$1`, the user name.
    pub query: String,
    /// The database on the servers `query` runs in (`None`: the client's database's).
    pub dbname: Option<String>,
    /// How long a verifier `query` returned is used before it is asked again (zero: asked
    /// on every login).
    pub cache_ttl: Duration,
}

/// PgBouncer's default `auth_query`.
pub const DEFAULT_AUTH_QUERY: &str =
    "SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1";

/// The longest `auth.failure_delay`, and the longest wait it grows to for repeated
/// failures from one address.
pub const MAX_FAILURE_DELAY: Duration = Duration::from_secs(10);

/// The default `auth.cache_ttl`.
pub const DEFAULT_AUTH_CACHE_TTL: Duration = Duration::from_secs(30);

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            method: AuthMethod::default(),
            failure_delay: Duration::ZERO,
            user: None,
            query: DEFAULT_AUTH_QUERY.to_owned(),
            dbname: None,
            cache_ttl: DEFAULT_AUTH_CACHE_TTL,
        }
    }
}

/// How a client proves who it is to weir.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// SCRAM-SHA-256 (`"scram-sha-256"`): the default; the password never crosses the wire.
    #[default]
    ScramSha256,
    /// MD5 challenge (`"md5"`): for old clients; also used for users stored as md5 verifiers.
    Md5,
    /// No password (`"trust"`): the user name must still be listed.
    Trust,
    /// TLS client certificate (`"cert"`): the certificate's CN is the user name; needs `[tls]`.
    Cert,
}

impl AuthMethod {
    /// Every accepted spelling, in the order error messages list them.
    pub const VARIANTS: &'static [(&'static str, Self)] = &[
        ("scram-sha-256", Self::ScramSha256),
        ("md5", Self::Md5),
        ("trust", Self::Trust),
        ("cert", Self::Cert),
    ];

    /// The configuration-file spelling (PgBouncer's `auth_type` values).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScramSha256 => "scram-sha-256",
            Self::Md5 => "md5",
            Self::Trust => "trust",
            Self::Cert => "cert",
        }
    }

    /// Whether a user logging in this way must have a `password` configured.
    pub fn needs_password(self) -> bool {
        matches!(self, Self::ScramSha256 | Self::Md5)
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[admin]`: access to the admin console.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminSettings {
    /// Users allowed to connect to the `weir` / `pgbouncer` database and run every command;
    /// PgBouncer's `admin_users`. Empty = nobody.
    pub users: Vec<String>,
}

impl AdminSettings {
    /// Whether `user` may use the admin console.
    pub fn is_admin(&self, user: &str) -> bool {
        self.users.iter().any(|u| u == user)
    }
}

/// `[metrics]`: the Prometheus exporter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Address of the HTTP listener serving `/metrics`, kept apart from the client port.
    pub listen: SocketAddr,
}

/// `[tls]`: the certificate weir presents to clients that ask for TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, as written (relative paths resolve against the working directory).
    pub cert: PathBuf,
    /// PEM private key for `cert`, as written.
    pub key: PathBuf,
    /// Whether clients may, or must, use TLS.
    pub mode: TlsMode,
    /// PEM CA certificates that sign client certificates: with it, clients are asked for
    /// one (and may still connect without), and a certificate they present must chain to
    /// it. Needed by auth method `cert`.
    pub client_ca: Option<PathBuf>,
}

/// `tls.mode`: what weir offers clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS: `SSLRequest` is answered `N`.
    Disable,
    /// TLS for clients that ask (the default with a certificate).
    #[default]
    Allow,
    /// TLS or nothing: a plaintext login is refused with `28000`.
    Require,
}

impl TlsMode {
    /// Every accepted spelling, in the order error messages list them.
    pub const VARIANTS: &'static [(&'static str, Self)] = &[
        ("disable", Self::Disable),
        ("allow", Self::Allow),
        ("require", Self::Require),
    ];

    /// The configuration-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Require => "require",
        }
    }
}

/// `[server_tls]`: TLS toward the servers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerTlsSettings {
    /// Whether TLS is tried, required, and how the server's certificate is checked.
    pub mode: ServerTlsMode,
    /// PEM file of the CA certificates that sign the servers' certificates (`verify-ca`,
    /// `verify-full`).
    pub ca: Option<PathBuf>,
    /// weir's own certificate chain and key, shown to servers that ask for a client
    /// certificate (PostgreSQL's `cert` authentication, `clientcert=verify-*`).
    pub cert: Option<(PathBuf, PathBuf)>,
}

/// `server_tls.mode`, as libpq's `sslmode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServerTlsMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, else plaintext; the certificate is not checked.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS, with a certificate signed by `server_tls.ca`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host weir connects to.
    VerifyFull,
}

impl ServerTlsMode {
    /// Every accepted spelling, in the order error messages list them.
    pub const VARIANTS: &'static [(&'static str, Self)] = &[
        ("disable", Self::Disable),
        ("prefer", Self::Prefer),
        ("require", Self::Require),
        ("verify-ca", Self::VerifyCa),
        ("verify-full", Self::VerifyFull),
    ];

    /// The configuration-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate must be checked against the CA.
    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

/// `[cluster]`: the health checks that find each database's primary and replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// How often every host is asked for its role and WAL position. Never zero.
    pub health_check_interval: Duration,
    /// A check (connect, log in, query) not answered within this fails. Never zero.
    pub health_check_timeout: Duration,
    /// The `[[users]]` entry the checks log in as; `None`: the first user weir can log in
    /// to servers with (a plaintext password or an md5 verifier).
    pub health_check_user: Option<String>,
    /// A host is down after this many checks in a row failed (a server connection that
    /// breaks without a word takes it down at once, and asks for a check). At least 1.
    pub down_after: u32,
    /// While no primary is known, a transaction that needs one waits this long for the
    /// checks to find one, then fails with 08001. Zero: fail at once.
    pub failover_timeout: Duration,
    /// Promote a replica when the primary has been gone for `promote_after`.
    pub auto_promote: bool,
    /// How long without a primary before weir promotes one (with `auto_promote`).
    pub promote_after: Duration,
    /// The `[[users]]` entry that runs `pg_promote()`; `None`: the health-check user.
    pub promote_user: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            health_check_interval: Duration::from_secs(1),
            health_check_timeout: Duration::from_secs(2),
            health_check_user: None,
            down_after: 3,
            failover_timeout: Duration::from_secs(30),
            auto_promote: false,
            promote_after: Duration::from_secs(10),
            promote_user: None,
        }
    }
}

/// `[routing]`: read/write splitting, for databases with `routing = "read_write"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingSettings {
    /// What decides where an explicit transaction runs.
    pub transactions: TransactionRouting,
    /// After a client commits a write, its reads go to the primary until a replica has
    /// replayed that commit.
    pub read_your_writes: bool,
    /// A replica further behind than this (by its last replayed commit) gets no reads;
    /// zero = no time limit.
    pub max_replica_lag: Duration,
    /// A replica further behind than this many bytes of WAL gets no reads; 0 = no limit.
    pub max_replica_lag_bytes: u64,
    /// Whether reads may run on the primary.
    pub primary_reads: PrimaryReads,
    /// Functions (besides the built-in list and the primary's VOLATILE ones) whose call
    /// sends a statement to the primary.
    pub write_functions: Vec<String>,
    /// Functions that only read, even if listed or VOLATILE: they win over every list.
    pub read_functions: Vec<String>,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            transactions: TransactionRouting::Explicit,
            read_your_writes: true,
            max_replica_lag: Duration::from_secs(10),
            max_replica_lag_bytes: 0,
            primary_reads: PrimaryReads::Fallback,
            write_functions: Vec::new(),
            read_functions: Vec::new(),
        }
    }
}

/// `routing.transactions`: how an explicit transaction (`BEGIN` ... `COMMIT`) is routed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TransactionRouting {
    /// `"explicit"`: to the primary, unless it is declared read only (`BEGIN READ ONLY`,
    /// `default_transaction_read_only`).
    #[default]
    Explicit,
    /// `"first_statement"`: by its first statement after BEGIN; a later write in a
    /// transaction that started with a read fails on the replica with 25006.
    FirstStatement,
}

impl TransactionRouting {
    /// Every accepted spelling, in the order error messages list them.
    pub const VARIANTS: &'static [(&'static str, Self)] = &[
        ("explicit", Self::Explicit),
        ("first_statement", Self::FirstStatement),
    ];
}

/// `routing.primary_reads`: whether the primary serves reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PrimaryReads {
    /// `"fallback"`: only when no replica qualifies (down, or lagging past the limit).
    #[default]
    Fallback,
    /// `"always"`: the primary is one more read server, chosen by the same least-busy rule.
    Always,
    /// `"never"`: a read fails at once with 08001 when no replica qualifies.
    Never,
}

impl PrimaryReads {
    /// Every accepted spelling, in the order error messages list them.
    pub const VARIANTS: &'static [(&'static str, Self)] = &[
        ("fallback", Self::Fallback),
        ("always", Self::Always),
        ("never", Self::Never),
    ];
}

/// One `[[users]]` entry: a user clients may log in as, and the credentials weir uses on
/// the servers for it.
#[derive(Clone, PartialEq, Eq)]
pub struct UserConfig {
    /// The user name clients send in the startup packet (and weir sends to the servers).
    pub name: String,
    /// Plaintext, or a stored verifier (`SCRAM-SHA-256$...`, or `md5` + 32 hex digits); the
    /// `auth` module checks its form. `None` only for users logging in with trust or cert.
    pub password: Option<String>,
    /// Per-user override of `auth.method`.
    pub auth_method: Option<AuthMethod>,
    /// Most clients logged in as this user at once (`None`: only `pool.max_client_conn`).
    pub max_client_conn: Option<NonZeroU32>,
    /// Passwords clients may still log in with during a rotation (plaintext or verifiers,
    /// like `password`); servers get `password`.
    pub previous_passwords: Vec<String>,
}

impl UserConfig {
    /// What a login is checked against: two entries that agree on this authenticate
    /// alike (limits aside).
    pub fn credentials(&self) -> (&str, Option<&str>, &[String], Option<AuthMethod>) {
        (
            &self.name,
            self.password.as_deref(),
            &self.previous_passwords,
            self.auth_method,
        )
    }
}

impl fmt::Debug for UserConfig {
    /// Prints everything but the password, which shows only whether one is set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth_method", &self.auth_method)
            .field("max_client_conn", &self.max_client_conn)
            .field("previous_passwords", &self.previous_passwords.len())
            .finish()
    }
}

/// One `[[databases]]` entry: a name clients connect to and the servers behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// The name clients put in their startup packet; unique, never `weir` or `pgbouncer`.
    pub name: String,
    /// The database name on the servers (defaults to `name`), so a pool can be renamed
    /// without renaming the real database.
    pub dbname: String,
    /// The servers, at least one, in file order. Primary and replicas are discovered with
    /// `pg_is_in_recovery()`, not configured.
    pub hosts: Vec<HostAddr>,
    /// Whether plain reads may go to replicas.
    pub routing: Routing,
    /// Most clients connected to this database at once (`None`: only
    /// `pool.max_client_conn`).
    pub max_client_conn: Option<NonZeroU32>,
}

/// Where the statements of one database may go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Routing {
    /// `"read_write"`: reads to a healthy replica within the lag limit, the rest to the primary.
    #[default]
    ReadWrite,
    /// `"primary_only"`: everything to the primary; replicas are only failover candidates.
    PrimaryOnly,
}

impl Routing {
    /// Every accepted spelling, in the order error messages list them.
    pub const VARIANTS: &'static [(&'static str, Self)] = &[
        ("read_write", Self::ReadWrite),
        ("primary_only", Self::PrimaryOnly),
    ];

    /// The configuration-file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "read_write",
            Self::PrimaryOnly => "primary_only",
        }
    }
}

impl fmt::Display for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend server as configured: a host name or IP literal and a port. Host names are
/// resolved when connecting, not here, so DNS changes are picked up.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostAddr {
    /// Host name or IP address, without brackets for IPv6.
    pub host: String,
    /// TCP port; 5432 when the configuration gave none.
    pub port: u16,
}

impl HostAddr {
    /// PostgreSQL's port, used when an entry names only a host.
    pub const DEFAULT_PORT: u16 = 5432;
}

impl fmt::Display for HostAddr {
    /// `host:port`, with brackets around IPv6 literals (`[::1]:5432`), so it parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
