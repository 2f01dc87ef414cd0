//! A primary with a streaming replica of its own, and weir routing between them: for the
//! tests of read/write splitting (tests/routing.rs, tests/drivers.rs).

use std::time::Duration;

use weir::pgcluster::{ClusterOptions, PgCluster};

use super::admin::{ADMIN, ADMIN_PASSWORD};
use super::{Proxy, PASSWORD, USER};

/// The database routed tests use, owned by `USER`.
pub const DB: &str = "routed";

/// Starts a primary with one streaming replica (with `settings` in postgresql.conf), and
/// creates `USER` and `DB` on it.
pub fn start_cluster(settings: &[(&str, &str)]) -> PgCluster {
    let opts = ClusterOptions {
        replicas: 1,
        settings: settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..ClusterOptions::default()
    };
    let cluster = PgCluster::start(&opts).expect("start primary and replica");
    cluster.create_role(USER, PASSWORD).expect("create role");
    cluster.create_database(DB, USER).expect("create database");
    cluster
}

/// Runs `sql` on the primary as `USER`, then waits until the replica has replayed it.
pub fn on_primary_then_replayed(cluster: &PgCluster, sql: &str) {
    cluster
        .psql_as(cluster.primary().port, DB, USER, Some(PASSWORD), sql)
        .expect("SQL on the primary");
    cluster
        .wait_for_replay(cluster.replicas()[0].port)
        .expect("replica catches up");
}

/// weir in front of `cluster`'s primary and replica, health-checked every 100 ms, with
/// `routing` appended inside `[routing]`.
pub fn toml(cluster: &PgCluster, routing: &str) -> String {
    format!(
        r#"
[listen]
addr = "127.0.0.1:0"
[pool]
size = 4
[cluster]
health_check_interval = "100ms"
[routing]
{routing}
[admin]
users = ["{ADMIN}"]
[[users]]
name = "{USER}"
password = "{PASSWORD}"
[[users]]
name = "{ADMIN}"
password = "{ADMIN_PASSWORD}"
[[databases]]
name = "{DB}"
hosts = ["127.0.0.1:{primary}", "127.0.0.1:{replica}"]
"#,
        primary = cluster.primary().port,
        replica = cluster.replicas()[0].port,
    )
}

/// Starts weir from `toml` and waits until its health checks know the primary and the
/// replica of `DB`.
pub async fn start_proxy(toml: &str) -> Proxy {
    let proxy = Proxy::start(toml).await;
    wait_for_roles(&proxy).await;
    proxy
}

/// Waits until weir's health checks know the primary and the replica of `DB`.
pub async fn wait_for_roles(proxy: &Proxy) {
    let known = super::eventually_async(Duration::from_secs(10), || async {
        let hosts = proxy.weir.as_ref().expect("running").hosts(DB);
        hosts.iter().any(|h| h.role == "primary" && h.healthy)
            && hosts.iter().any(|h| h.role == "replica" && h.healthy)
    })
    .await;
    assert!(known, "weir never saw a healthy primary and replica");
}
