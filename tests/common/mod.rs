//! Test harness: one real PostgreSQL cluster per test binary (started by weir's own
//! `pgcluster`), one fresh database per test, and an in-process weir on port 0.
#![allow(dead_code)]

pub mod admin;
pub mod backends;
pub mod external;
pub mod pgbouncer;
pub mod process;
pub mod raw;
pub mod routed;
pub mod scrape;
pub mod tools;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use weir::pgcluster::{ClusterOptions, PgCluster};
use weir::Weir;

/// The role every test connects as (stored as SCRAM on the server).
pub const USER: &str = "app";
/// Its password.
pub const PASSWORD: &str = "app-secret";
/// A role stored as md5 on the server.
pub const MD5_USER: &str = "legacy";
/// Its password.
pub const MD5_PASSWORD: &str = "legacy-secret";

static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The shared cluster, started on first use.
pub fn pg() -> &'static PgCluster {
    CLUSTER.get_or_init(|| {
        let opts = ClusterOptions {
            hba_lines: vec![format!("host all {MD5_USER} 127.0.0.1/32 md5")],
            ..ClusterOptions::default()
        };
        let cluster = PgCluster::start(&opts).expect("start PostgreSQL");
        cluster.create_role(USER, PASSWORD).expect("create role");
        cluster
            .create_role_md5(MD5_USER, MD5_PASSWORD)
            .expect("create md5 role");
        cluster
    })
}

/// A new, empty database owned by `USER`; its name is unique in this cluster.
pub fn fresh_database() -> String {
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    pg().create_database(&name, USER).expect("create database");
    pg().psql(
        pg().primary().port,
        &name,
        &format!("GRANT ALL ON SCHEMA public TO {MD5_USER}"),
    )
    .expect("grant");
    name
}

/// A loopback port nothing listens on right now (probed: another process may take it
/// before the caller binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("bind a probe socket on 127.0.0.1:0")
        .port()
}

/// Runs SQL on the primary directly (as superuser), returning psql's unaligned output.
pub fn psql(db: &str, sql: &str) -> String {
    pg().psql(pg().primary().port, db, sql).expect("psql")
}

/// A weir configuration for one database on the shared cluster. `extra` is TOML appended
/// inside `[pool]` (e.g. "size = 5").
pub fn config_toml(db: &str, pool_extra: &str, tail: &str) -> String {
    config_toml_with(
        db,
        Settings {
            pool_extra,
            tail,
            ..Settings::default()
        },
    )
}

/// The default `[[users]]` entries: `USER` with its plaintext password (challenged with the
/// default method) and `MD5_USER` with its plaintext password and `auth_method = "md5"`.
pub fn default_users() -> String {
    format!(
        r#"[[users]]
name = "{USER}"
password = "{PASSWORD}"
[[users]]
name = "{MD5_USER}"
password = "{MD5_PASSWORD}"
auth_method = "md5"
"#
    )
}

/// What `config_toml_with` varies; `Default` gives `config_toml(db, "", "")`.
#[derive(Clone, Copy)]
pub struct Settings<'a> {
    /// `pool.mode`.
    pub mode: &'a str,
    /// TOML appended inside `[pool]`; `size = 5` is added unless it sets `size`.
    pub pool_extra: &'a str,
    /// TOML appended inside `[listen]`.
    pub listen_extra: &'a str,
    /// `auth.method`.
    pub auth_method: &'a str,
    /// The `[[users]]` entries; `None` for `default_users()`.
    pub users: Option<&'a str>,
    /// TOML appended after the `[[databases]]` entry.
    pub tail: &'a str,
}

impl Default for Settings<'_> {
    fn default() -> Self {
        Settings {
            mode: "transaction",
            pool_extra: "",
            listen_extra: "",
            auth_method: "scram-sha-256",
            users: None,
            tail: "",
        }
    }
}

/// A weir configuration for one database on the shared cluster, with `settings` applied.
pub fn config_toml_with(db: &str, settings: Settings<'_>) -> String {
    let Settings {
        mode,
        pool_extra,
        listen_extra,
        auth_method,
        users,
        tail,
    } = settings;
    let users = users.map_or_else(default_users, str::to_owned);
    format!(
        r#"
[listen]
addr = "127.0.0.1:0"
{listen_extra}
[pool]
mode = "{mode}"
{size}
{pool_extra}
[auth]
method = "{auth_method}"
{users}
[[databases]]
name = "{db}"
hosts = ["127.0.0.1:{port}"]
{tail}
"#,
        port = pg().primary().port,
        size = if pool_extra.contains("size") {
            ""
        } else {
            "size = 5"
        },
    )
}

/// A weir running in this process.
pub struct Proxy {
    /// The running instance.
    pub weir: Option<Weir>,
    /// Where it listens.
    pub port: u16,
}

impl Proxy {
    /// Starts weir with a configuration from `config_toml`.
    pub async fn start(toml: &str) -> Proxy {
        if let Ok(filter) = std::env::var("WEIR_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let config = weir::config::from_toml_str(toml).expect("valid config");
        let weir = Weir::start(config).await.expect("weir starts");
        let port = weir.local_addr().port();
        Proxy {
            weir: Some(weir),
            port,
        }
    }

    /// Starts weir from a configuration file, which RELOAD reads again.
    pub async fn start_file(path: &std::path::Path) -> Proxy {
        let config = weir::config::load(path).expect("valid config");
        let weir = Weir::start_from_file(config, path)
            .await
            .expect("weir starts");
        let port = weir.local_addr().port();
        Proxy {
            weir: Some(weir),
            port,
        }
    }

    /// A libpq-style connection string through weir.
    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgresql://{user}:{password}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// A tokio-postgres client through weir as `USER`.
    pub async fn client(&self, db: &str) -> tokio_postgres::Client {
        self.try_client(USER, PASSWORD, db)
            .await
            .expect("connect through weir")
    }

    /// A tokio-postgres client through weir whose connection task is kept: the handle
    /// resolves when the connection ends, with the error weir sent if it sent one (an
    /// unsolicited FATAL such as 57P01 makes it resolve to `Err`).
    pub async fn watched_client(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> (tokio_postgres::Client, ConnectionEnd) {
        let (client, conn) =
            tokio_postgres::connect(&self.url(user, password, db), tokio_postgres::NoTls)
                .await
                .expect("connect through weir");
        (client, ConnectionEnd(tokio::spawn(conn)))
    }

    /// Like `client`, but returns the error.
    pub async fn try_client(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) =
            tokio_postgres::connect(&self.url(user, password, db), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// The error of a login that must fail.
    pub async fn login_error(
        &self,
        user: &str,
        password: &str,
        db: &str,
        why: &str,
    ) -> tokio_postgres::Error {
        match self.try_client(user, password, db).await {
            Ok(_) => panic!("login succeeded but must fail: {why}"),
            Err(e) => e,
        }
    }

    /// Stops weir gracefully.
    pub async fn stop(mut self) {
        if let Some(w) = self.weir.take() {
            w.shutdown().await;
        }
    }
}

/// The SQLSTATE of a tokio-postgres error, if the server (or weir) sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_owned())
}

/// The message of the ErrorResponse behind a tokio-postgres error (empty if there was none).
pub fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default()
}

/// Polls `f` until it returns true or `limit` passes.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

/// Polls the async `f` until it returns true or `limit` passes.
pub async fn eventually_async<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f().await
}

/// The connection task of a `Proxy::watched_client`.
pub struct ConnectionEnd(pub tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>);

impl ConnectionEnd {
    /// Waits (at most `limit`, else panics) for the connection to end; returns the SQLSTATE
    /// weir sent as it closed, or `None` if it just closed.
    pub async fn sqlstate_within(self, limit: Duration) -> Option<String> {
        match tokio::time::timeout(limit, self.0).await {
            Err(_) => panic!("the connection was still open after {limit:?}"),
            Ok(joined) => match joined.expect("connection task") {
                Ok(()) => None,
                Err(e) => sqlstate(&e),
            },
        }
    }

    /// Whether the connection has ended.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// Whether weir still serves a fresh client: logs in and runs a query within 10 s.
pub async fn assert_serving(proxy: &Proxy, db: &str) {
    let check = async {
        let c = proxy.client(db).await;
        simple_value(&c, "SELECT 41 + 1").await
    };
    let got = tokio::time::timeout(Duration::from_secs(10), check)
        .await
        .expect("weir answered a normal client within 10 s");
    assert_eq!(got, "42");
}

/// The first column of the first row of a simple query (which needs no named statement, so
/// it works on any server of the pool), as text.
pub async fn simple_value(client: &tokio_postgres::Client, sql: &str) -> String {
    let messages = client.simple_query(sql).await.expect("simple query");
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some(row.get(0).unwrap_or("NULL").to_owned())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no row from {sql}"))
}
