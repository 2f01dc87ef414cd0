//! The packaging in `docker/`, tested without a Docker engine: the compose file's own
//! scripts build a primary and a streaming replica out of local servers and weir, run
//! on `docker/weir.toml`, splits reads from writes between them; the image's health
//! check and drain scripts run against that weir; the compose file, the Kubernetes
//! manifests and the Dockerfile agree with each other and with the files they name; and
//! `listen.reuse_port` lets two weir processes share one port.

mod common;
#[path = "docker/files.rs"]
mod files;
#[path = "docker/manifests.rs"]
mod manifests;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{weir_command, WeirProcess};
use common::{free_port, scrape};
use weir::pgcluster::{ClusterOptions, PgCluster};

use files::{docker, environment, yaml};

/// How long the replica may take to clone the primary and stream from it.
const REPLICA_LIMIT: Duration = Duration::from_secs(60);
/// How long weir may take to find the primary and the replica.
const DISCOVERY_LIMIT: Duration = Duration::from_secs(20);
/// The line of the harness's pg_hba.conf that lets anyone replicate from loopback. The
/// postgres image has none for other hosts: primary-init.sh must add its own.
const HARNESS_REPLICATION_LINE: &str = "host replication all 127.0.0.1/32 trust";

/// The compose services' environments, by service name.
fn compose_env() -> BTreeMap<String, BTreeMap<String, String>> {
    let compose = yaml("docker-compose.yml").remove(0);
    let services = compose["services"].as_object().expect("services");
    services
        .iter()
        .map(|(name, service)| (name.clone(), environment(service)))
        .collect()
}

/// The directory of the newest PostgreSQL server binaries, as the harness finds them.
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_PG_BIN") {
        return dir.into();
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .max()
        .map(|(_, dir)| dir.join("bin"));
    newest
        .filter(|bin| bin.join("postgres").is_file())
        .unwrap_or_else(|| {
            let out = Command::new("pg_config").arg("--bindir").output();
            let out = out.expect("pg_config (no /usr/lib/postgresql/*/bin)");
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
}

/// `PATH` with the server binaries first, as in the postgres image.
fn path_with_pg() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{}:{path}", pg_bin().display())
}

/// Runs one of the scripts of `docker/` with only `env` (and a PATH with the server
/// binaries); returns its exit status and everything it printed.
fn run_script(script: &str, env: &BTreeMap<String, String>, args: &[&str]) -> (bool, String) {
    let out = Command::new(docker(script))
        .args(args)
        .env_clear()
        .env("PATH", path_with_pg())
        .env("LC_ALL", "C")
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run docker/{script}: {e}"));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// The replica that `docker/replica-entrypoint.sh` runs: the script's process, which
/// becomes the postmaster. Stopped (fast shutdown) when dropped; its data directory is
/// inside the harness cluster's, so the harness's cleanup covers it too.
struct Replica {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Replica {
    fn start(cluster: &PgCluster, env: &BTreeMap<String, String>) -> Replica {
        let port = free_port();
        let data = cluster.data_dir().join("node-compose-replica");
        let log = cluster.data_dir().join("compose-replica.log");
        let mut env = env.clone();
        env.insert("PGDATA".into(), data.display().to_string());
        env.insert("PRIMARY_HOST".into(), "127.0.0.1".into());
        let primary = cluster.primary().port.to_string();
        env.insert("PRIMARY_PORT".into(), primary);
        let child = Command::new(docker("replica-entrypoint.sh"))
            .args([
                "-c",
                &format!("port={port}"),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .env_clear()
            .env("PATH", path_with_pg())
            .env("LC_ALL", "C")
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(File::create(&log).expect("replica log"))
            .stderr(File::create(&log).expect("replica log"))
            .spawn()
            .expect("start docker/replica-entrypoint.sh");
        Replica { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of weir's metrics listener, from its log.
fn logged_metrics_addr(weir: &WeirProcess) -> SocketAddr {
    let log = weir.log();
    let line = log.lines().find(|l| l.contains("metrics at /metrics"));
    let line = line.unwrap_or_else(|| panic!("no metrics listener in the log:\n{log}"));
    let addr = line
        .split("addr=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next());
    addr.and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no addr= in {line}"))
}

/// What the compose stack does, with the compose file's own scripts, environment and
/// weir.toml, on local servers: primary-init.sh sets up a primary (roles, database, the
/// pg_hba.conf line), replica-entrypoint.sh clones it and streams, weir routes a read to
/// the replica and a write to the primary, weir-healthcheck says healthy, and
/// weir-drain's PAUSE holds new transactions until SIGTERM closes their clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_scripts_make_a_streaming_replica_and_weir_splits_reads_from_writes() {
    let env = compose_env();
    let cluster = PgCluster::start(&ClusterOptions::default()).expect("start a primary");
    // Like the postgres image: nobody may replicate until primary-init.sh says so.
    let hba = cluster.primary().data_dir().join("pg_hba.conf");
    let lines = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    let kept: Vec<&str> = lines
        .lines()
        .filter(|l| *l != HARNESS_REPLICATION_LINE)
        .collect();
    assert!(
        kept.len() < lines.lines().count(),
        "the harness's line changed"
    );
    std::fs::write(&hba, kept.join("\n") + "\n").expect("write pg_hba.conf");
    let primary = cluster.primary().port;
    cluster
        .psql(primary, "postgres", "SELECT pg_reload_conf()")
        .expect("reload");

    // The postgres image runs init scripts with POSTGRES_USER and PGPASSWORD set and
    // PGHOST unset (the Unix socket); here the socket is off, so PGHOST is loopback.
    let mut init_env = env["primary"].clone();
    init_env.insert("POSTGRES_USER".into(), "postgres".into());
    init_env.insert("PGHOST".into(), "127.0.0.1".into());
    init_env.insert("PGPORT".into(), primary.to_string());
    for _ in 0..2 {
        // Twice: running it again keeps what exists.
        let (ok, printed) = run_script("primary-init.sh", &init_env, &[]);
        assert!(ok, "primary-init.sh failed:\n{printed}");
    }
    let app = (
        &init_env["APP_USER"],
        &init_env["APP_PASSWORD"],
        &init_env["APP_DB"],
    );
    let me = cluster.psql_as(primary, app.2, app.0, Some(app.1), "SELECT current_user");
    assert_eq!(&me.expect("the app role logs in to its database"), app.0);

    let replica = Replica::start(&cluster, &env["replica"]);
    let name = &env["replica"]["REPLICA_NAME"];
    let streaming =
        format!("SELECT state FROM pg_stat_replication WHERE application_name = '{name}'");
    let streamed = common::eventually(REPLICA_LIMIT, || {
        let state = cluster.psql(primary, "postgres", &streaming);
        state.is_ok_and(|state| state == "streaming")
    })
    .await;
    assert!(
        streamed,
        "the replica never streamed; its log:\n{}",
        replica.log()
    );
    let in_recovery = cluster.psql(replica.port, "postgres", "SELECT pg_is_in_recovery()");
    assert_eq!(in_recovery.expect("ask the replica"), "t");

    // weir on docker/weir.toml as compose runs it, with loopback addresses for the
    // service names.
    let mut weir_env = env["weir"].clone();
    let hosts = format!("127.0.0.1:{primary},127.0.0.1:{}", replica.port);
    weir_env.insert("WEIR_DATABASES__0__HOSTS".into(), hosts);
    weir_env.insert("WEIR_LISTEN__ADDR".into(), "127.0.0.1:0".into());
    weir_env.insert("WEIR_METRICS__LISTEN".into(), "127.0.0.1:0".into());
    let pairs: Vec<(&str, &str)> = weir_env.iter().map(|(k, v)| (&**k, &**v)).collect();
    let mut weir = WeirProcess::start(&files::read("weir.toml"), &pairs);
    let metrics = logged_metrics_addr(&weir);

    let mut health = BTreeMap::from([("HEALTH_PORT".to_owned(), metrics.port().to_string())]);
    let healthy = common::eventually(DISCOVERY_LIMIT, || {
        run_script("healthcheck.sh", &health, &[]).0
    })
    .await;
    assert!(
        healthy,
        "weir-healthcheck never passed: {weir_log}",
        weir_log = weir.log()
    );
    health.insert("HEALTH_PATH".into(), "/nowhere".into());
    let (ok, printed) = run_script("healthcheck.sh", &health, &[]);
    assert!(!ok && printed.contains("404"), "{printed}");

    let url = format!(
        "postgres://{}:{}@127.0.0.1:{}/{}",
        app.0, weir_env["WEIR_USERS__0__PASSWORD"], weir.port, app.2
    );
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("psql postgres://app:app@localhost:6432/appdb, through weir");
    let conn = tokio::spawn(conn);
    let port_of = |sql: &'static str| {
        let client = &client;
        async move { common::simple_value(client, sql).await }
    };
    let replica_port = replica.port.to_string();
    let (port_of, replica_port) = (&port_of, &replica_port);
    let read_on_replica = common::eventually_async(DISCOVERY_LIMIT, || async move {
        port_of("SELECT inet_server_port()").await == *replica_port
    })
    .await;
    assert!(read_on_replica, "no read reached the replica");
    client
        .batch_execute("CREATE TABLE compose_check (id int)")
        .await
        .expect("create a table through weir");
    let wrote = port_of("INSERT INTO compose_check VALUES (1) RETURNING inet_server_port()");
    assert_eq!(
        wrote.await,
        primary.to_string(),
        "the write went to the primary"
    );

    // The preStop hook: PAUSE returns at once (nothing runs); a new transaction waits.
    let drain_env = BTreeMap::from([
        ("DRAIN_DELAY".to_owned(), "0".to_owned()),
        ("DRAIN_PORT".to_owned(), weir.port.to_string()),
        ("DRAIN_USER".to_owned(), "admin".to_owned()),
        (
            "PGPASSWORD".to_owned(),
            weir_env["WEIR_USERS__1__PASSWORD"].clone(),
        ),
    ]);
    let (ok, printed) = run_script("drain.sh", &drain_env, &[]);
    assert!(ok, "weir-drain failed:\n{printed}");
    let scrape = scrape::scrape(metrics).await;
    let paused = scrape::value(&scrape, "weir_database_paused", &[("database", "appdb")]);
    assert_eq!(paused, 1.0);
    let held = tokio::spawn(async move { client.simple_query("SELECT 1").await.map(drop) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "PAUSE let a transaction through");

    // Then Kubernetes sends SIGTERM: the held client is told to go, and weir exits.
    weir.assert_exits_on_term(Duration::from_secs(10));
    let answer = tokio::time::timeout(Duration::from_secs(5), held).await;
    let answer = answer.expect("the held client heard back").expect("task");
    assert!(answer.is_err(), "a paused transaction ran during shutdown");
    let _ = conn.await;
    drop(replica);
}

/// Two weir processes with `listen.reuse_port = true` on one port both get clients;
/// without the key, a second process cannot start there and says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_port_lets_two_weir_processes_share_a_port() {
    let port = free_port();
    let toml = |reuse: bool| {
        format!(
            "[listen]\naddr = \"127.0.0.1:{port}\"\nreuse_port = {reuse}\n{}",
            scrape::METRICS
        )
    };
    let first = WeirProcess::start(&toml(true), &[]);
    let second = WeirProcess::start(&toml(true), &[]);
    assert_eq!((first.port, second.port), (port, port));

    // Each connection comes from its own source port, and the kernel hashes the
    // addresses to pick a listener: 64 of them all landing on one has odds of 2^-63.
    let clients: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    // The counter appears with a process's first accepted client: absent means 0.
    let accepted = |weir: &WeirProcess| {
        let metrics = logged_metrics_addr(weir);
        async move {
            let s = scrape::scrape(metrics).await;
            let sample = s
                .samples
                .iter()
                .find(|s| s.metric == "weir_clients_accepted_total");
            match sample.map(|s| &s.value) {
                Some(prometheus_parse::Value::Counter(n) | prometheus_parse::Value::Untyped(n)) => {
                    *n
                }
                _ => 0.0,
            }
        }
    };
    let (first, second) = (&first, &second);
    let accepted = &accepted;
    common::eventually_async(Duration::from_secs(10), || async move {
        accepted(first).await + accepted(second).await >= 64.0
    })
    .await;
    let (a, b) = (accepted(first).await, accepted(second).await);
    assert_eq!(a + b, 64.0, "every connection accepted once");
    assert!(a > 0.0 && b > 0.0, "both processes accept: {a} and {b}");
    drop(clients);

    // The others share the port, this one would not: refused.
    let refused = start_refused(&toml(false));
    assert!(refused.contains("Address already in use"), "{refused}");
    assert!(refused.contains("listen.reuse_port = true"), "{refused}");
    // A socket without SO_REUSEPORT holds the port: weir cannot join it, with or without.
    let plain = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = plain.local_addr().expect("addr").port();
    let other = format!("[listen]\naddr = \"127.0.0.1:{taken}\"\nreuse_port = true\n");
    let refused = start_refused(&other);
    assert!(refused.contains("listen.reuse_port = true"), "{refused}");
}

/// Runs weir on `toml`, which must fail to start; returns what it printed.
fn start_refused(toml: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, toml).expect("write");
    let mut cmd = weir_command();
    cmd.arg("--config").arg(&path).stdout(Stdio::null());
    let out = cmd.output().expect("run weir");
    assert!(
        !out.status.success(),
        "weir started on a port it cannot share"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
