//! Counting weir's server connections from PostgreSQL's side, for the driver tests: every
//! client of a test database goes through weir, so its backends are weir's servers.

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::pg;

/// How often the watcher samples pg_stat_activity.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Samples, until `most` is called, how many backends PostgreSQL has for one database.
pub struct ServerConnections {
    /// Tells the sampling task to stop.
    stop: oneshot::Sender<()>,
    /// The sampling task; it returns the largest count it saw.
    task: JoinHandle<i64>,
}

impl ServerConnections {
    /// Starts sampling `db` from a superuser connection to another database.
    pub async fn watch(db: &str) -> ServerConnections {
        let conninfo = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            pg().primary().port
        );
        let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .expect("connect to the primary as postgres");
        tokio::spawn(conn);
        let (stop, mut stopped) = oneshot::channel();
        let db = db.to_owned();
        let task = tokio::spawn(async move {
            let mut most = 0;
            loop {
                let row = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = $1 AND backend_type = 'client backend'",
                        &[&db],
                    )
                    .await
                    .expect("sample pg_stat_activity");
                most = most.max(row.get::<_, i64>(0));
                tokio::select! {
                    _ = &mut stopped => return most,
                    _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                }
            }
        });
        ServerConnections { stop, task }
    }

    /// Stops sampling; returns the most backends seen at once.
    pub async fn most(self) -> i64 {
        let _ = self.stop.send(());
        self.task.await.expect("watcher task")
    }
}

/// Asserts that weir used some server connections, and never more than `size` at once.
pub fn assert_pool_held(most: i64, size: i64) {
    println!("pg_stat_activity: at most {most} server connections (pool.size = {size})");
    assert!(
        (1..=size).contains(&most),
        "pg_stat_activity showed at most {most} backends for the database; pool.size is {size}"
    );
}
