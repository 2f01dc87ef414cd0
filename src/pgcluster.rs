//! Throwaway PostgreSQL clusters (a primary and streaming replicas) for the
//! integration tests and `weir demo`.
//!
//! Owns: finding the server binaries, `initdb` into a private temp directory,
//! replicas made with `pg_basebackup -R`, starting, stopping and promoting
//! servers, running SQL through `psql`, and making sure no server outlives the
//! process that started it (Drop, plus a detached watchdog for kills and
//! panics, since statics are never dropped).
//! Does not: speak the wire protocol, use tokio, or touch anything outside its
//! own temp directory and free loopback ports. It blocks: call it from async
//! code through `spawn_blocking`.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The only address servers listen on.
const HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// How long `pg_ctl` may wait for a server to start, stop or promote, in seconds.
const PG_CTL_WAIT_SECS: &str = "60";
/// Upper bound for `initdb`, `pg_basebackup` and `pg_ctl` runs.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);
/// Upper bound for one `psql` run.
const SQL_LIMIT: Duration = Duration::from_secs(60);
/// How long a server may take to reach a state (in recovery, streaming, promoted).
const STATE_LIMIT: Duration = Duration::from_secs(60);
/// Fresh ports tried when another process takes ours between probe and bind.
const PORT_ATTEMPTS: usize = 8;
/// Log lines quoted in errors.
const LOG_TAIL_LINES: usize = 40;
/// initdb flags: superuser `postgres`, no passwords (pg_hba.conf is ours), fast, C locale.
const INITDB_ARGS: &str = "-A trust -U postgres --no-sync -E UTF8 --locale=C --no-instructions";
/// Answers `t` on a standby, `f` on a primary.
const IN_RECOVERY: &str = "SELECT pg_is_in_recovery()";
/// File in each data directory holding its `port = N`, included last by postgresql.conf.
const PORT_CONF: &str = "weir_port.conf";
/// Detached guard: when the test process is gone (its end of our stdin pipe
/// closes, or `kill -0` fails), stop every server of the cluster and delete it.
const WATCHDOG: &str = r#"pid=$1 dir=$2 pg_ctl=$3
shift 3
case "$dir" in /*weir-pg-*) ;; *) exit 2 ;; esac
while kill -0 "$pid" 2>/dev/null; do
  read -r -t 0.5 _
  [ $? -eq 1 ] && break
  [ -d "$dir" ] || exit 0
done
[ -d "$dir" ] || exit 0
for pass in 1 2; do
  for d in "$dir"/node*; do
    [ -f "$d/postmaster.pid" ] && "$@" "$pg_ctl" stop -D "$d" -m immediate -w -t 30
  done
  sleep 0.3
done
rm -rf -- "$dir""#;

/// Results of this module.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// Everything that can go wrong while running a cluster, naming the command
/// and, for a server that would not start, quoting its log.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// No directory with `initdb`, `pg_ctl` and `pg_basebackup` was found.
    #[error("no PostgreSQL server binaries found ({0}); set WEIR_PG_BIN to the directory holding initdb")]
    NoBinaries(String),
    /// An option cannot be written into the server's configuration.
    #[error("invalid cluster option: {0}")]
    InvalidOption(String),
    /// A program could not be started at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line, for the reader.
        command: String,
        /// Why the spawn failed.
        #[source]
        source: io::Error,
    },
    /// A program ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line, for the reader.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// What it printed on stderr (stdout when stderr was empty).
        stderr: String,
    },
    /// A program did not finish in time and was killed.
    #[error("`{command}` did not finish within {limit:?}")]
    CommandTimeout {
        /// The command line, for the reader.
        command: String,
        /// The limit it overran.
        limit: Duration,
    },
    /// A server did not start; its log usually says why.
    #[error("server {name} (port {port}) did not start: {cause}\n--- end of {} ---\n{log_tail}", log.display())]
    StartFailed {
        /// Node name (`node0` is the primary).
        name: String,
        /// Port of the last attempt.
        port: u16,
        /// The failing `pg_ctl` run.
        cause: Box<HarnessError>,
        /// The server log of the last attempt.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },
    /// A running server did not reach the state we wait for.
    #[error("server on port {port} did not {what} within {limit:?} (last answer: {last})\n--- end of {} ---\n{log_tail}", log.display())]
    NotReady {
        /// The server.
        port: u16,
        /// The state awaited, e.g. "enter recovery".
        what: &'static str,
        /// How long we waited.
        limit: Duration,
        /// The last query result or error seen.
        last: String,
        /// The server's log.
        log: PathBuf,
        /// Its last lines.
        log_tail: String,
    },
    /// A file or directory of the cluster could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What we tried to do.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The port names no server of this cluster.
    #[error("no server of this cluster has port {0}")]
    UnknownPort(u16),
    /// The server is not in a state that allows the request.
    #[error("server on port {port} is {state}: cannot {action}")]
    WrongState {
        /// The server.
        port: u16,
        /// "running" or "stopped".
        state: &'static str,
        /// What was asked.
        action: &'static str,
    },
}

/// Debug prints like Display, so that `.expect()` in tests shows log tails readably.
impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a test wants from its cluster; `Default` is a lone primary.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Streaming replicas to create and start after the primary.
    pub replicas: usize,
    /// Extra pg_hba.conf lines, placed before the harness's own so they win.
    pub hba_lines: Vec<String>,
    /// Extra postgresql.conf settings `(name, value)`, written after the
    /// harness's own so they win. Values are unquoted: the harness quotes them.
    pub settings: Vec<(String, String)>,
}

/// Whether a server's postmaster should be up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    /// Started by us and not stopped since.
    Running,
    /// Not started yet, or stopped by us.
    Stopped,
}

/// One PostgreSQL server of the cluster, listening on 127.0.0.1.
#[derive(Debug)]
pub struct PgServer {
    /// TCP port on 127.0.0.1; fixed for the life of the server.
    pub port: u16,
    /// `node0` for the primary, `node1`… for replicas in creation order.
    name: String,
    /// Its data directory, inside the cluster directory.
    data_dir: PathBuf,
    /// Up or down, as far as this harness did it.
    state: ServerState,
}

impl PgServer {
    /// A not yet started server whose data directory is `dir/name`.
    fn new(name: String, dir: &Path) -> PgServer {
        let data_dir = dir.join(&name);
        PgServer {
            port: 0,
            name,
            data_dir,
            state: ServerState::Stopped,
        }
    }

    /// `WrongState` unless the server is in `want`.
    fn require(&self, want: ServerState, action: &'static str) -> Result<()> {
        let state = match self.state {
            ServerState::Running => "running",
            ServerState::Stopped => "stopped",
        };
        match self.state == want {
            true => Ok(()),
            false => Err(HarnessError::WrongState {
                port: self.port,
                state,
                action,
            }),
        }
    }

    /// The node name: `node0` is the primary, then replicas in creation order.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Always 127.0.0.1: clusters listen on loopback only.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// `127.0.0.1:port`, for configs and clients.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((HOST, self.port))
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether the harness last left this server running.
    pub fn is_running(&self) -> bool {
        self.state == ServerState::Running
    }
}

/// Which binaries to run, and as whom.
#[derive(Debug)]
struct Tools {
    /// Directory with initdb, pg_ctl, pg_basebackup.
    bin: PathBuf,
    /// psql: the one beside the server binaries, else the one on PATH.
    psql: PathBuf,
    /// We are root, which initdb refuses: servers run as the `postgres` OS user.
    root: bool,
}

/// The parts whose cleanup must happen even when `start` fails halfway.
#[derive(Debug)]
struct Base {
    /// How to run the PostgreSQL programs.
    tools: Tools,
    /// Detached guard process; its stdin is a pipe whose write end only we hold.
    guard: Option<Child>,
    /// Dropped after `Base::drop` stopped the servers: removes every file.
    dir: TempDir,
}

/// A running throwaway cluster. Dropping it stops every server
/// (`pg_ctl stop -m immediate`) and removes its directory, blocking for a few
/// hundred milliseconds. If the process ends without dropping it (a static, a
/// kill, an abort), the watchdog does the same within about a second.
#[must_use = "dropping the cluster stops its servers"]
#[derive(Debug)]
pub struct PgCluster {
    /// The server made by `initdb`; stays `primary()` even after a promotion.
    primary: PgServer,
    /// Servers made by `add_replica`, in creation order.
    replicas: Vec<PgServer>,
    /// Node names handed out so far, so names are never reused.
    nodes: usize,
    /// Tools, watchdog and directory; dropping it tears everything down.
    base: Base,
}

impl PgCluster {
    /// Creates a temp directory, runs `initdb`, starts the primary on a free
    /// port, then adds `opts.replicas` streaming replicas.
    pub fn start(opts: &ClusterOptions) -> Result<PgCluster> {
        let began = Instant::now();
        let tools = Tools::find()?;
        let tmp = std::env::temp_dir();
        let dir = tempfile::Builder::new().prefix("weir-pg-").tempdir_in(&tmp);
        let dir = dir.map_err(|e| io_err("create a directory in", &tmp, e))?;
        tools.give_to_postgres(dir.path())?;
        let guard = Some(spawn_watchdog(&tools, dir.path())?);
        let base = Base { tools, guard, dir };

        let mut primary = PgServer::new("node0".into(), base.dir.path());
        let mut initdb = base.tools.server_cmd("initdb");
        initdb.arg("-D").arg(&primary.data_dir);
        initdb.args(INITDB_ARGS.split(' '));
        run(initdb, None, COMMAND_LIMIT)?;
        let (tools, data_dir) = (&base.tools, &primary.data_dir);
        tools.write_file(&data_dir.join("postgresql.conf"), &server_conf(opts)?, true)?;
        tools.write_file(&data_dir.join("pg_hba.conf"), &hba_conf(opts), false)?;

        base.start_on_free_port(&mut primary)?;
        let mut cluster = PgCluster {
            primary,
            replicas: Vec::new(),
            nodes: 1,
            base,
        };
        for _ in 0..opts.replicas {
            cluster.add_replica()?;
        }
        tracing::info!(
            dir = %cluster.data_dir().display(),
            primary = cluster.primary.port,
            replicas = ?cluster.replicas.iter().map(|r| r.port).collect::<Vec<_>>(),
            elapsed = ?began.elapsed(),
            "test cluster started"
        );
        Ok(cluster)
    }

    /// The server made by `initdb` (it stays here even after another is promoted).
    pub fn primary(&self) -> &PgServer {
        &self.primary
    }

    /// The replicas made by `add_replica`, in creation order.
    pub fn replicas(&self) -> &[PgServer] {
        &self.replicas
    }

    /// The cluster's directory: data directories `node*` and logs `postgres-<port>.log`.
    pub fn data_dir(&self) -> &Path {
        self.base.dir.path()
    }

    /// The log file of the server on `port` (appended to across restarts).
    pub fn log_path(&self, port: u16) -> PathBuf {
        log_path(self.base.dir.path(), port)
    }

    /// Clones `primary()` with `pg_basebackup -R`, starts the copy, and returns
    /// once it accepts connections, is in recovery and streams from the primary.
    pub fn add_replica(&mut self) -> Result<&PgServer> {
        let name = format!("node{}", self.nodes);
        self.nodes += 1;
        let mut replica = PgServer::new(name, self.base.dir.path());
        let source = format!(
            "host={HOST} port={} user=postgres application_name={} connect_timeout=10",
            self.primary.port, replica.name
        );
        let mut backup = self.base.tools.server_cmd("pg_basebackup");
        backup
            .arg("-d")
            .arg(&source)
            .arg("-D")
            .arg(&replica.data_dir);
        backup.args("-R -X stream -c fast --no-sync -w".split(' '));
        run(backup, None, COMMAND_LIMIT)?;
        self.base.start_on_free_port(&mut replica)?;
        let port = replica.port;
        self.replicas.push(replica);
        self.wait_for(port, IN_RECOVERY, "t", "enter recovery")?;
        let streaming = "SELECT status FROM pg_stat_wal_receiver";
        self.wait_for(port, streaming, "streaming", "stream from the primary")?;
        #[allow(clippy::indexing_slicing)] // just pushed: the Vec is not empty
        Ok(&self.replicas[self.replicas.len() - 1])
    }

    /// Runs `sql` (one or more statements) through `psql` as superuser
    /// `postgres` on 127.0.0.1:`port` with `-X -A -t -q -v ON_ERROR_STOP=1`,
    /// and returns stdout trimmed. Rows come one per line, columns split by `|`.
    pub fn psql(&self, port: u16, dbname: &str, sql: &str) -> Result<String> {
        self.psql_as(port, dbname, "postgres", None, sql)
    }

    /// Like `psql`, as `user` with an optional password: for logging in through
    /// weir, or checking that a role really authenticates.
    pub fn psql_as(
        &self,
        port: u16,
        dbname: &str,
        user: &str,
        password: Option<&str>,
        sql: &str,
    ) -> Result<String> {
        let conninfo = format!(
            "host={HOST} port={port} user={} dbname={} connect_timeout=10 application_name=weir-pgcluster",
            quote_value(user),
            quote_value(dbname)
        );
        let mut cmd = clean_cmd(&self.base.tools.psql, &[]);
        cmd.args("-X -A -t -q -v ON_ERROR_STOP=1 -f - -d".split(' '));
        cmd.arg(conninfo);
        if let Some(password) = password {
            cmd.env("PGPASSWORD", password);
        }
        Ok(run(cmd, Some(sql), SQL_LIMIT)?.trim().to_owned())
    }

    /// Creates a LOGIN role on the primary whose password is stored as
    /// SCRAM-SHA-256, so the server always asks it for SCRAM.
    pub fn create_role(&self, name: &str, password: &str) -> Result<()> {
        self.create_role_with(name, password, "scram-sha-256")
    }

    /// Creates a LOGIN role on the primary whose password is stored as MD5.
    /// The default pg_hba.conf demands SCRAM, which an MD5-stored password
    /// cannot pass: give the role a line such as
    /// `host all NAME 127.0.0.1/32 md5` in `ClusterOptions::hba_lines`.
    pub fn create_role_md5(&self, name: &str, password: &str) -> Result<()> {
        self.create_role_with(name, password, "md5")
    }

    fn create_role_with(&self, name: &str, password: &str, hash: &str) -> Result<()> {
        let sql = format!(
            "SET password_encryption = {};\nCREATE ROLE {} LOGIN PASSWORD {};",
            quote_literal(hash),
            quote_ident(name),
            quote_literal(password)
        );
        self.psql(self.primary.port, "postgres", &sql).map(drop)
    }

    /// Creates database `name` owned by role `owner` on the primary.
    pub fn create_database(&self, name: &str, owner: &str) -> Result<()> {
        let (name, owner) = (quote_ident(name), quote_ident(owner));
        let sql = format!("CREATE DATABASE {name} OWNER {owner};");
        self.psql(self.primary.port, "postgres", &sql).map(drop)
    }

    /// Waits until the replica on `replica_port` has replayed everything the
    /// primary had written when this was called.
    pub fn wait_for_replay(&self, replica_port: u16) -> Result<()> {
        let (primary, insert_lsn) = (self.primary.port, "SELECT pg_current_wal_insert_lsn()");
        let lsn = quote_literal(&self.psql(primary, "postgres", insert_lsn)?);
        let sql = format!("SELECT pg_last_wal_replay_lsn() >= {lsn}::pg_lsn");
        self.wait_for(replica_port, &sql, "t", "replay the primary's WAL")
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`).
    pub fn stop_server(&mut self, port: u16) -> Result<()> {
        self.pg_ctl_stop(port, "fast")
    }

    /// Crashes the server (`pg_ctl stop -m immediate`): no shutdown checkpoint,
    /// clients see their connections drop, as in a failover.
    pub fn kill_server(&mut self, port: u16) -> Result<()> {
        self.pg_ctl_stop(port, "immediate")
    }

    /// Starts a stopped server again on its old port.
    pub fn start_server(&mut self, port: u16) -> Result<()> {
        let (server, base) = self.server_mut(port)?;
        server.require(ServerState::Stopped, "start")?;
        base.pg_ctl_start(server)
    }

    /// Promotes the standby on `port` (`pg_ctl promote`) and waits until it
    /// is out of recovery. `primary()` and `replicas()` are not reordered.
    pub fn promote(&mut self, port: u16) -> Result<()> {
        let (server, base) = self.server_mut(port)?;
        server.require(ServerState::Running, "promote")?;
        let promote = base.tools.pg_ctl("promote", server, &[]);
        run(promote, None, COMMAND_LIMIT)?;
        self.wait_for(port, IN_RECOVERY, "f", "leave recovery")
    }

    fn pg_ctl_stop(&mut self, port: u16, mode: &str) -> Result<()> {
        let (server, base) = self.server_mut(port)?;
        server.require(ServerState::Running, "stop")?;
        let stop = base.tools.pg_ctl("stop", server, &["-m", mode]);
        run(stop, None, COMMAND_LIMIT)?;
        server.state = ServerState::Stopped;
        Ok(())
    }

    /// The server on `port`, and the parts needed to act on it.
    fn server_mut(&mut self, port: u16) -> Result<(&mut PgServer, &Base)> {
        let server = std::iter::once(&mut self.primary)
            .chain(&mut self.replicas)
            .find(|s| s.port == port)
            .ok_or(HarnessError::UnknownPort(port))?;
        Ok((server, &self.base))
    }

    /// Polls `sql` on `port` until it returns `want`; errors quote the server's log.
    fn wait_for(&self, port: u16, sql: &str, want: &str, what: &'static str) -> Result<()> {
        let began = Instant::now();
        loop {
            let last = match self.psql(port, "postgres", sql) {
                Ok(got) if got == want => return Ok(()),
                Ok(got) => got,
                Err(e) => e.to_string(),
            };
            if began.elapsed() >= STATE_LIMIT {
                let (log, limit) = (self.log_path(port), STATE_LIMIT);
                let log_tail = log_tail(&log);
                return Err(HarnessError::NotReady {
                    port,
                    what,
                    limit,
                    last,
                    log,
                    log_tail,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Base {
    /// First start of a new server: picks a free port, retrying with another
    /// when someone else binds it between our probe and the postmaster's bind.
    fn start_on_free_port(&self, server: &mut PgServer) -> Result<()> {
        let mut attempt = 1;
        loop {
            server.port = free_port()?;
            let conf = format!("port = {}\n", server.port);
            self.tools
                .write_file(&server.data_dir.join(PORT_CONF), &conf, false)?;
            match self.pg_ctl_start(server) {
                Err(HarnessError::StartFailed { ref log_tail, .. })
                    if attempt < PORT_ATTEMPTS && log_tail.contains("could not bind") =>
                {
                    tracing::debug!(port = server.port, "port taken by someone else; retrying");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// `pg_ctl start -w`: returns when the server accepts connections
    /// (for a standby: once it reached a consistent state).
    fn pg_ctl_start(&self, server: &mut PgServer) -> Result<()> {
        let log = log_path(self.dir.path(), server.port);
        let mut cmd = self.tools.pg_ctl("start", server, &["-s", "-l"]);
        cmd.arg(&log);
        match run(cmd, None, COMMAND_LIMIT) {
            Ok(_) => {
                server.state = ServerState::Running;
                Ok(())
            }
            Err(cause) => {
                // A server that timed out may still come up later: make sure it does not.
                stop_immediately(&self.tools, std::slice::from_ref(server));
                let log_tail = log_tail(&log);
                Err(HarnessError::StartFailed {
                    name: server.name.clone(),
                    port: server.port,
                    cause: Box::new(cause),
                    log,
                    log_tail,
                })
            }
        }
    }
}

impl Drop for Base {
    fn drop(&mut self) {
        // Disarm the watchdog first so that it does not race us for the directory.
        if let Some(mut watchdog) = self.guard.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let running: Vec<PgServer> = fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.path().join("postmaster.pid").exists())
            .map(|entry| PgServer::new(entry.file_name().to_string_lossy().into(), self.dir.path()))
            .collect();
        stop_immediately(&self.tools, &running);
        // `self.dir` is dropped next and removes the directory.
    }
}

/// `pg_ctl stop -m immediate` on all of `servers` at once; best effort.
fn stop_immediately(tools: &Tools, servers: &[PgServer]) {
    let children: Vec<Child> = servers
        .iter()
        .filter_map(|server| {
            let mut cmd = tools.pg_ctl("stop", server, &["-m", "immediate"]);
            let null = Stdio::null;
            cmd.stdin(null()).stdout(null()).stderr(null());
            cmd.spawn().ok()
        })
        .collect();
    for mut child in children {
        if !matches!(wait_within(&mut child, COMMAND_LIMIT), Ok(Some(_))) {
            tracing::warn!("pg_ctl stop -m immediate did not finish");
        }
    }
}

impl Tools {
    /// Finds the binaries (WEIR_PG_BIN, else the newest /usr/lib/postgresql/*/bin,
    /// else `pg_config --bindir`) and whether we must switch to `postgres`.
    fn find() -> Result<Tools> {
        let bin = find_bin_dir()?;
        let mut psql = bin.join("psql");
        if !psql.is_file() {
            psql = "psql".into();
        }
        let root = run(clean_cmd("id", &["-u"]), None, SQL_LIMIT)?.trim() == "0";
        Ok(Tools { bin, psql, root })
    }

    /// A server program from the bin directory, run as `postgres` when we are root.
    fn server_cmd(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if !self.root {
            return clean_cmd(&path, &[]);
        }
        let mut cmd = clean_cmd("runuser", &["-u", "postgres", "--"]);
        cmd.arg(path);
        cmd
    }

    /// `pg_ctl ACTION -D DATA_DIR -w -t 60 EXTRA...`: waits for the action to complete.
    fn pg_ctl(&self, action: &str, server: &PgServer, extra: &[&str]) -> Command {
        let mut cmd = self.server_cmd("pg_ctl");
        cmd.arg(action).arg("-D").arg(&server.data_dir);
        cmd.args(["-w", "-t", PG_CTL_WAIT_SECS]).args(extra);
        cmd
    }

    /// Hands `path` to the `postgres` user when servers run as it.
    fn give_to_postgres(&self, path: &Path) -> Result<()> {
        if !self.root {
            return Ok(());
        }
        let mut chown = clean_cmd("chown", &["postgres:"]);
        chown.arg(path);
        run(chown, None, SQL_LIMIT).map(drop)
    }

    /// Writes (or appends to) a file of a data directory, owned by the server user.
    fn write_file(&self, path: &Path, text: &str, append: bool) -> Result<()> {
        let mut options = fs::OpenOptions::new();
        options
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append);
        let mut file = options.open(path).map_err(|e| io_err("open", path, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| io_err("write", path, e))?;
        self.give_to_postgres(path)
    }
}

fn find_bin_dir() -> Result<PathBuf> {
    let complete = |dir: &PathBuf| {
        let tools = ["initdb", "pg_ctl", "pg_basebackup"];
        tools.iter().all(|p| dir.join(p).is_file())
    };
    if let Some(dir) = std::env::var_os("WEIR_PG_BIN") {
        let why = format!("WEIR_PG_BIN={dir:?} lacks initdb, pg_ctl or pg_basebackup");
        let dir = Some(PathBuf::from(dir)).filter(complete);
        return dir.ok_or(HarnessError::NoBinaries(why));
    }
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let parts = name.to_str()?.split('.');
            let version: Vec<u32> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
            Some((version, entry.path().join("bin"))).filter(|(_, bin)| complete(bin))
        })
        .max()
        .map(|(_, bin)| bin);
    let pg_config = || {
        let out = run(clean_cmd("pg_config", &["--bindir"]), None, SQL_LIMIT).ok()?;
        Some(PathBuf::from(out.trim()))
    };
    let why = "none in /usr/lib/postgresql/*/bin or at `pg_config --bindir`";
    let bin = newest.or_else(pg_config).filter(complete);
    bin.ok_or_else(|| HarnessError::NoBinaries(why.into()))
}

/// Starts the watchdog in its own session, so signals for our process group
/// (Ctrl-C, a test runner's kill) do not reach it.
fn spawn_watchdog(tools: &Tools, dir: &Path) -> Result<Child> {
    let mut cmd = clean_cmd("setsid", &[]);
    cmd.args(["bash", "-c", WATCHDOG, "weir-pg-watchdog"]);
    cmd.arg(std::process::id().to_string()).arg(dir);
    cmd.arg(tools.bin.join("pg_ctl"));
    if tools.root {
        cmd.args(["runuser", "-u", "postgres", "--"]);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::null());
    cmd.stderr(Stdio::null())
        .spawn()
        .map_err(spawn_err("setsid bash -c <watchdog>"))
}

/// The harness's postgresql.conf additions; `include` of the port file comes last.
fn server_conf(opts: &ClusterOptions) -> Result<String> {
    let mut conf = String::from(
        "\n# --- weir pgcluster harness ---\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = ''\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         max_connections = 300\n\
         wal_level = replica\n\
         max_wal_senders = 10\n\
         hot_standby = on\n\
         shared_buffers = '32MB'\n\
         logging_collector = off\n",
    );
    for (name, value) in &opts.settings {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
        if name.is_empty() || !name.chars().all(word) || value.contains('\n') {
            let what = format!("setting {name:?} = {value:?}");
            return Err(HarnessError::InvalidOption(what));
        }
        conf.push_str(&format!("{name} = {}\n", quote_value(value)));
    }
    conf.push_str(&format!("include '{PORT_CONF}'\n"));
    Ok(conf)
}

/// pg_hba.conf: the test's lines first, then trust for `postgres` and
/// replication, and SCRAM for everyone else, all on 127.0.0.1 only.
fn hba_conf(opts: &ClusterOptions) -> String {
    let mut hba = String::from("# weir pgcluster harness: test lines first\n");
    for line in &opts.hba_lines {
        hba.push_str(line);
        hba.push('\n');
    }
    hba.push_str(
        "host all postgres 127.0.0.1/32 trust\n\
         host replication all 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    );
    hba
}

fn free_port() -> Result<u16> {
    let addr = TcpListener::bind((HOST, 0)).and_then(|probe| probe.local_addr());
    addr.map(|a| a.port())
        .map_err(|e| io_err("bind a probe socket on", Path::new("127.0.0.1:0"), e))
}

fn log_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("postgres-{port}.log"))
}

/// The last lines of a server log, or a note saying why there are none.
fn log_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
            lines.into_iter().skip(skip).collect::<Vec<_>>().join("\n")
        }
        Err(e) => format!("(no log: {e})"),
    }
}

/// A command with a clean environment: no PG* variables that could redirect
/// it, C locale, working directory `/` (readable by `postgres`).
fn clean_cmd(program: impl AsRef<OsStr>, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LC_ALL", "C").env_remove("LANGUAGE");
    cmd.current_dir("/");
    cmd
}

/// Runs `cmd` to completion within `limit`, feeding it `input`; returns stdout.
fn run(mut cmd: Command, input: Option<&str>, limit: Duration) -> Result<String> {
    let command = shown(&cmd);
    tracing::debug!(%command, "running");
    cmd.stdin(input.map_or_else(Stdio::null, |_| Stdio::piped()));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn_err(&command))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        let text = text.to_owned();
        thread::spawn(move || stdin.write_all(text.as_bytes()));
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = match wait_within(&mut child, limit) {
        Ok(Some(status)) => status,
        Ok(None) => return Err(HarnessError::CommandTimeout { command, limit }),
        Err(source) => return Err(spawn_err(&command)(source)),
    };
    // A grandchild that kept our pipes must not hang us: give up on them after a while.
    let grace = Duration::from_secs(2);
    let stdout = stdout.recv_timeout(grace).unwrap_or_default();
    if status.success() {
        return Ok(stdout);
    }
    let stderr = stderr.recv_timeout(grace).unwrap_or_default();
    let stderr = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let stderr = stderr.trim().to_owned();
    Err(HarnessError::Failed {
        command,
        status,
        stderr,
    })
}

/// Reads a pipe to the end on a thread, delivering the text through a channel.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
    }
    rx
}

/// Waits for `child` at most `limit`; on timeout kills it and returns `None`.
fn wait_within(child: &mut Child, limit: Duration) -> io::Result<Option<ExitStatus>> {
    let began = Instant::now();
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if began.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(25));
    }
}

/// The command line as a person would type it, for errors and logs.
fn shown(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn io_err(action: &'static str, path: &Path, source: io::Error) -> HarnessError {
    let path = path.to_owned();
    HarnessError::Io {
        action,
        path,
        source,
    }
}

fn spawn_err(command: &str) -> impl FnOnce(io::Error) -> HarnessError + '_ {
    move |source| HarnessError::Spawn {
        command: command.to_owned(),
        source,
    }
}

/// `'text'` with quotes doubled: a SQL string literal (standard_conforming_strings is on).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `'text'` with `\` and `'` backslash-escaped: a libpq conninfo or postgresql.conf value.
fn quote_value(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `"name"` with quotes doubled: a SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
