//! The health-check and promotion tasks of a database's hosts: the I/O side of
//! `cluster`, which keeps the state they report into.

use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::ClusterSettings;
use crate::router::WriteFunctions;
use crate::server::{ServerConn, ServerTarget};

use super::{parse_lsn, CheckError, DbCluster, Role, Sample, UNKNOWN};
use std::sync::atomic::Ordering;

/// How often the primary's VOLATILE functions are read again.
const FUNCTIONS_REFRESH: Duration = Duration::from_secs(60);
/// Most user functions learned from `pg_proc`, so a catalog with millions cannot grow weir.
const MAX_LEARNED_FUNCTIONS: usize = 100_000;

/// One query that works on both roles: recovery state, the WAL position that matters
/// (written on a primary, replayed on a replica), on a replica the age of the last
/// replayed commit, and on a primary its timeline (the first 8 hex digits of its current
/// WAL file's name: readable without the privileges `pg_control_checkpoint()` needs).
const CHECK_SQL: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
     (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
      ELSE pg_catalog.pg_current_wal_lsn() END)::text, \
     EXTRACT(EPOCH FROM pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp())::text, \
     CASE WHEN NOT pg_catalog.pg_is_in_recovery() \
      THEN substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8) END";

/// User functions that may write: VOLATILE ones outside the system schemas.
const VOLATILE_SQL: &str = "SELECT DISTINCT p.proname::text FROM pg_catalog.pg_proc p \
     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     WHERE p.provolatile = 'v' AND p.prokind = 'f' \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' LIMIT 100000";

impl DbCluster {
    /// Reads the user functions that may write from the primary over `conn`.
    async fn learn_functions(
        &self,
        conn: &mut Option<ServerConn>,
        limit: Duration,
        (writes, reads): &(Vec<String>, Vec<String>),
    ) -> Result<(), String> {
        let Some(c) = conn.as_mut() else {
            return Err("no connection".into());
        };
        let rows = match tokio::time::timeout(limit, c.simple_query(VOLATILE_SQL)).await {
            Ok(Ok(rows)) => rows,
            failed => {
                *conn = None;
                return Err(match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {limit:?}"),
                });
            }
        };
        let learned = rows
            .into_iter()
            .take(MAX_LEARNED_FUNCTIONS)
            .filter_map(|r| r.into_iter().next().flatten());
        self.learned(WriteFunctions::new(
            learned.chain(writes.iter().cloned()),
            reads,
        ));
        Ok(())
    }

    /// Checks host `index` every `settings.health_check_interval` until shutdown, over a
    /// connection kept between checks. On the primary, also reads the VOLATILE functions
    /// (at once, then every minute), adding `writes` and removing `reads`.
    pub(crate) async fn watch(
        self: std::sync::Arc<Self>,
        index: usize,
        target: ServerTarget,
        settings: ClusterSettings,
        overrides: (Vec<String>, Vec<String>),
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.watched.store(true, Ordering::Release);
        let check_now = self.check_now.get(index);
        let mut conn = None;
        let mut tick = tokio::time::interval(settings.health_check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut functions_due = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = notified(check_now) => {}
                _ = shutdown.wait_for(|down| *down) => break,
            }
            let limit = settings.health_check_timeout;
            let epoch = self.epoch(index);
            let outcome = check(&mut conn, &target, limit).await;
            // The functions are learned before the primary is first reported healthy, so
            // no read is routed by the built-in list alone once a replica is in use.
            if matches!(&outcome, Ok(s) if !s.in_recovery) && Instant::now() >= functions_due {
                match self.learn_functions(&mut conn, limit, &overrides).await {
                    Ok(()) => functions_due = Instant::now() + FUNCTIONS_REFRESH,
                    Err(e) => {
                        tracing::warn!(database = %self.name, "cannot read the primary's VOLATILE functions: {e}");
                    }
                }
            }
            self.record(index, outcome, Some(epoch));
        }
        if let Some(c) = conn {
            c.terminate().await;
        }
    }
}

impl DbCluster {
    /// `cluster.auto_promote`: every check interval, looks whether a primary is known.
    /// Once none has been for `promote_after`, promotes the healthy replica that has
    /// replayed the most (`SELECT pg_promote()`, logged in as the promote user, `targets`
    /// in host order), once per outage. The promoted host is then found, on its new
    /// timeline, by the health checks like any primary.
    pub(crate) async fn promote_when_needed(
        self: std::sync::Arc<Self>,
        targets: Vec<ServerTarget>,
        settings: ClusterSettings,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(settings.health_check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lost_since: Option<Instant> = None;
        let mut promoted = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|down| *down) => return,
            }
            // Before any primary was ever seen there is nothing to replace.
            if self.primary.load(Ordering::Acquire) != UNKNOWN
                || self.last_primary.load(Ordering::Acquire) == UNKNOWN
            {
                lost_since = None;
                promoted = false;
                continue;
            }
            let since = *lost_since.get_or_insert_with(Instant::now);
            if promoted || since.elapsed() < settings.promote_after {
                continue;
            }
            let candidate = self
                .read_status()
                .iter()
                .enumerate()
                .filter(|(_, h)| h.healthy && h.role == Role::Replica)
                .max_by_key(|(_, h)| h.lsn)
                .map(|(i, h)| (i, h.addr.clone()));
            let Some((index, addr)) = candidate else {
                continue;
            };
            let Some(target) = targets.get(index) else {
                continue;
            };
            // Once per outage, whatever the outcome: a failed promotion is for a person to
            // look at, not to retry in a loop.
            promoted = true;
            tracing::warn!(database = %self.name, host = %addr, "no primary for {:?}: promoting the replica that has replayed the most (cluster.auto_promote)", since.elapsed());
            match promote(target, settings.health_check_timeout).await {
                Ok(()) => {
                    self.counters.promotions.increment(1);
                    if let Some(n) = self.check_now.get(index) {
                        n.notify_one();
                    }
                }
                Err(e) => {
                    tracing::error!(database = %self.name, host = %addr, "promotion failed: {e}");
                }
            }
        }
    }
}

/// Runs `pg_promote()` on `target` (waiting for the promotion, up to a minute).
async fn promote(target: &ServerTarget, limit: Duration) -> Result<(), CheckError> {
    const WAIT: Duration = Duration::from_secs(60);
    let mut conn = ServerConn::connect(target, limit).await?;
    let rows = tokio::time::timeout(
        WAIT + limit,
        conn.simple_query("SELECT pg_catalog.pg_promote(true, 60)"),
    )
    .await
    .map_err(|_| CheckError::Timeout(WAIT + limit))??;
    conn.terminate().await;
    match rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
    {
        Some("t") => Ok(()),
        _ => Err(CheckError::NotPromoted),
    }
}

/// Waits for `notify`, or forever without one.
async fn notified(notify: Option<&Notify>) {
    match notify {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// One health check over `conn` (opened first when `None`; dropped when it fails).
pub(super) async fn check(
    conn: &mut Option<ServerConn>,
    target: &ServerTarget,
    limit: Duration,
) -> Result<Sample, CheckError> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(ServerConn::connect(target, limit).await?),
    };
    let rows = match tokio::time::timeout(limit, c.simple_query(CHECK_SQL)).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => {
            *conn = None;
            return Err(e.into());
        }
        Err(_) => {
            *conn = None;
            return Err(CheckError::Timeout(limit));
        }
    };
    let row = rows.first().map(Vec::as_slice).unwrap_or_default();
    let field = |i: usize| row.get(i).and_then(|v| v.as_deref());
    Ok(Sample {
        in_recovery: field(0) == Some("t"),
        lsn: field(1).and_then(parse_lsn).unwrap_or(0),
        replay_age: field(2)
            .and_then(|s| s.parse::<f64>().ok())
            .and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok()),
        timeline: field(3)
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .unwrap_or(0),
    })
}
