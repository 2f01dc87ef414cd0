//! `weir demo`: a throwaway primary and streaming replica with weir in front, for trying
//! weir without writing a configuration. Uses the same cluster code as the tests.

use crate::pgcluster::{ClusterOptions, PgCluster};
use crate::Weir;

/// Runs the demo until Ctrl-C (or SIGTERM), then removes everything it created.
pub async fn run(listen: &str) -> Result<(), String> {
    eprintln!(
        "weir demo: starting a PostgreSQL primary and a streaming replica (takes a few seconds)..."
    );
    let cluster = tokio::task::spawn_blocking(|| -> Result<PgCluster, String> {
        let opts = ClusterOptions {
            replicas: 1,
            ..ClusterOptions::default()
        };
        let cluster = PgCluster::start(&opts).map_err(|e| e.to_string())?;
        cluster
            .create_role("app", "app")
            .map_err(|e| e.to_string())?;
        cluster
            .create_database("appdb", "app")
            .map_err(|e| e.to_string())?;
        // The replica must have the database before weir's first health check asks it.
        for replica in cluster.replicas() {
            cluster
                .wait_for_replay(replica.port)
                .map_err(|e| e.to_string())?;
        }
        Ok(cluster)
    })
    .await
    .map_err(|e| format!("demo set-up failed: {e}"))??;
    let hosts: Vec<String> = std::iter::once(cluster.primary())
        .chain(cluster.replicas())
        .map(|s| format!("\"127.0.0.1:{}\"", s.port))
        .collect();
    let toml = format!(
        r#"
[listen]
addr = "{listen}"
[pool]
mode = "transaction"
size = 10
[auth]
method = "scram-sha-256"
[[users]]
name = "app"
password = "app"
[[databases]]
name = "appdb"
hosts = [{hosts}]
routing = "read_write"
"#,
        hosts = hosts.join(", ")
    );
    let config = crate::config::from_toml_str(&toml).map_err(|e| e.to_string())?;
    let weir = Weir::start(config).await.map_err(|e| e.to_string())?;
    let addr = weir.local_addr();
    println!("weir demo is running. Connect with:\n");
    println!(
        "    psql postgres://app:app@{}:{}/appdb\n",
        addr.ip(),
        addr.port()
    );
    println!(
        "PostgreSQL primary on 127.0.0.1:{}, replica on {}. Press Ctrl-C to stop and clean up.",
        cluster.primary().port,
        cluster
            .replicas()
            .first()
            .map(|r| format!("127.0.0.1:{}", r.port))
            .unwrap_or_else(|| "(none)".into())
    );
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("weir demo: stopping");
    weir.shutdown().await;
    let _ = tokio::task::spawn_blocking(move || drop(cluster)).await;
    Ok(())
}
