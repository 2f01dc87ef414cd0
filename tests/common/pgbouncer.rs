//! A real PgBouncer for tests that compare weir's admin console with it (installed by the
//! CI set-up: `apt-get install pgbouncer`). Runs in the foreground, killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs it.
const BIN: &str = "/usr/sbin/pgbouncer";

/// A running PgBouncer.
pub struct PgBouncer {
    child: Child,
    /// Where it listens (127.0.0.1).
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode with trust auth for `users` (the first is its
    /// admin), serving `db` from the server on `server_port`.
    pub fn start(server_port: u16, db: &str, users: &[&str]) -> PgBouncer {
        assert!(
            std::path::Path::new(BIN).is_file(),
            "no PgBouncer at {BIN}: install it with `apt-get install pgbouncer` (.ci/run does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let userlist: String = users.iter().map(|u| format!("\"{u}\" \"x\"\n")).collect();
        std::fs::write(dir.path().join("userlist.txt"), userlist).expect("userlist");
        let ini = format!(
            "[databases]\n{db} = host=127.0.0.1 port={server_port} dbname={db}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/userlist.txt\nadmin_users = {admin}\n\
             pool_mode = transaction\nlogfile = {dir}/pgbouncer.log\n",
            dir = dir.path().display(),
            admin = users[0],
        );
        let ini_path = dir.path().join("pgbouncer.ini");
        std::fs::write(&ini_path, ini).expect("ini");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let mut cmd = if root {
            // PgBouncer refuses to run as root.
            let _ = Command::new("chmod")
                .arg("-R")
                .arg("a+rwx")
                .arg(dir.path())
                .status();
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", BIN]);
            c
        } else {
            Command::new(BIN)
        };
        let child = cmd
            .arg(&ini_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgbouncer");
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "PgBouncer did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        PgBouncer {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // runuser forwards SIGTERM to PgBouncer, which then exits.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
