//! The session's side of read/write splitting: which server a request gets (`checkout`,
//! `choose_leg`), read-your-writes (`learn_commit_position`), and the statements weir
//! answers itself (`weir.route` commands, a deferred BEGIN).

use bytes::Buf;
use tokio::time::Instant;

use crate::cluster::LagLimits;
use crate::config::{PoolMode, PrimaryReads, Routing, TransactionRouting};
use crate::error::SqlState;
use crate::pool::{Lease, PoolError};
use crate::protocol::ErrorFields;
use crate::protocol::{ErrorSeverity, FrontendScanner, FrontendTag, MessageBuilder, TxStatus};
use crate::server::BackendError;

use super::super::hints;
use super::super::route::{self, Leg, NoReader, Policy, Reader, Reason, RouteCommand};
use super::super::SessionError;
use super::{Session, PROBE_TIMEOUT};

/// PostgreSQL's `text` type, for the rows weir answers itself.
const TEXT_OID: u32 = 25;
/// Longest simple Query weir looks at for a statement it answers itself.
const SHORT_QUERY: usize = 256;
/// PostgreSQL's WAL page size (`XLOG_BLCKSZ`, 8 KiB unless built otherwise).
const WAL_PAGE: u64 = 8192;
/// A WAL page's header (`SizeOfXLogShortPHD`).
const WAL_PAGE_HEADER: u64 = 24;
/// The first page of a WAL segment (16 MiB unless initdb chose otherwise) has a longer
/// header (`SizeOfXLogLongPHD`).
const WAL_SEGMENT: u64 = 16 * 1024 * 1024;
const WAL_SEGMENT_HEADER: u64 = 40;

impl Session {
    /// Leases a server for the request waiting in the client's buffer (there since
    /// `asked`): a replica when the request only reads and one qualifies, else the
    /// primary. Returns it with its host.
    pub(super) async fn checkout(
        &mut self,
        asked: std::time::Instant,
    ) -> Result<(Lease, usize, Leg), SessionError> {
        let (mut leg, mut why) = self.choose_leg()?;
        let wait = self.attach.snap.config.pool.query_wait_timeout;
        if let Leg::Replica(host) = leg {
            match self.attach.pool.checkout(host, asked, wait).await {
                Ok(lease) => {
                    self.attach.db.counters.routed(true, why);
                    return Ok((lease, host, leg));
                }
                Err(e @ PoolError::Connect { .. }) => {
                    // Down before its health check noticed: out of rotation now.
                    tracing::warn!(pool = %self.attach.pool.label, "replica unreachable, reading from the primary: {e}");
                    self.attach.db.cluster.host_failed(host);
                    if self.attach.snap.config.routing.primary_reads == PrimaryReads::Never {
                        return Err(SessionError::NoReplica(self.attach.db.config.name.clone()));
                    }
                    leg = Leg::PrimaryRead;
                    why = Reason::ReplicaDown;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let config = &self.attach.snap.config;
        let limit = config.pool.server_connect_timeout;
        let deadline = Instant::now() + config.cluster.failover_timeout;
        let cluster = &self.attach.db.cluster;
        loop {
            let host = cluster
                .primary(&self.attach.targets, limit, deadline)
                .await?;
            match self.attach.pool.checkout(host, asked, wait).await {
                Ok(lease) => {
                    self.attach.db.counters.routed(false, why);
                    return Ok((lease, host, leg));
                }
                // The primary is unreachable (it died since its last check) or says it
                // cannot take connections now (starting, stopping, in recovery): wait for
                // the checks to find it again, or a new one, within the failover timeout.
                Err(PoolError::Connect { cause, .. })
                    if host_unavailable(&cause)
                        && self.attach.db.config.hosts.len() > 1
                        && Instant::now() < deadline =>
                {
                    tracing::warn!(pool = %self.attach.pool.label, "primary unreachable, waiting for one (cluster.failover_timeout)");
                    cluster.host_failed(host);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Whether this client's transactions are split between primary and replicas.
    pub(super) fn splits(&self) -> bool {
        let db = &self.attach.db;
        db.config.routing == Routing::ReadWrite && db.config.hosts.len() > 1
    }

    /// Whether a write transaction is followed by learning its commit position.
    pub(super) fn reads_own_writes(&self) -> bool {
        self.splits() && self.attach.snap.config.routing.read_your_writes
    }

    /// Where the request waiting in the client's buffer goes, and why (see `route::decide`).
    fn choose_leg(&mut self) -> Result<(Leg, Reason), SessionError> {
        let config = &self.attach.snap.config;
        let policy = Policy {
            splits: self.splits(),
            // The mode the client logged in under: a RELOAD changes it for new logins only.
            session_mode: self.mode == PoolMode::Session,
            primary_reads: config.routing.primary_reads,
        };
        let state = &self.attach.state;
        let db = &self.attach.db;
        let reads_only = || {
            let verdict = route::classify_request(
                &self.client.rbuf,
                &state.statements,
                &db.cluster.functions(),
                &db.config.name,
                &state.desired,
            );
            if verdict.unparsed {
                db.counters.unparsed.increment(1);
            }
            // With backslash escapes in plain strings, sqlparser may split statements
            // where PostgreSQL does not: nothing it says about the text can be trusted.
            let escapes = state
                .desired
                .get("standard_conforming_strings")
                .is_some_and(|v| v.eq_ignore_ascii_case("off"));
            verdict.replica && !escapes
        };
        let reader = || {
            let routing = &config.routing;
            let limits = LagLimits {
                time: routing.max_replica_lag,
                bytes: routing.max_replica_lag_bytes,
            };
            let min_lsn = if routing.read_your_writes {
                state.min_lsn
            } else {
                0
            };
            let always = routing.primary_reads == PrimaryReads::Always;
            let pool = &self.attach.pool;
            let host = db
                .cluster
                .pick_reader(min_lsn, limits, always, |host| pool.busy(host))?;
            Some(if db.cluster.is_primary(host) {
                Reader::Primary
            } else {
                Reader::Replica(host)
            })
        };
        route::decide(policy, state.route, reads_only, reader)
            .map_err(|NoReader| SessionError::NoReplica(db.config.name.clone()))
    }

    /// After a transaction on the primary that may have written: learns where its commit
    /// ends in the WAL, so this client's reads wait for a replica that has replayed it. If
    /// that cannot be learned, no replica qualifies until the next write transaction tells.
    pub(super) async fn learn_commit_position(&mut self, lease: &mut Lease) {
        const SQL: &str = "SELECT pg_catalog.pg_current_wal_insert_lsn()::text";
        let asked = tokio::time::timeout(
            PROBE_TIMEOUT,
            lease.query_passing_async(SQL, &mut self.client.wbuf),
        )
        .await;
        let lsn = match asked {
            Ok(Ok(rows)) => rows
                .first()
                .and_then(|r| r.first())
                .and_then(|v| v.as_deref())
                .and_then(crate::cluster::parse_lsn),
            _ => None,
        };
        if lsn.is_none() {
            tracing::warn!(pool = %self.attach.pool.label, "could not learn a commit's WAL position: this client reads from the primary until its next write");
            lease.poison();
        }
        self.attach.state.min_lsn = lsn.map_or(u64::MAX, commit_end);
    }

    /// `routing.transactions = "first_statement"`: answers a plain BEGIN itself and keeps
    /// it, so the transaction goes where its first statement goes; and answers the
    /// COMMIT or ROLLBACK of a transaction that never had a statement. Returns whether
    /// the request was one of those.
    pub(super) fn defer_begin(&mut self) -> Result<bool, SessionError> {
        let config = &self.attach.snap.config;
        if config.routing.transactions != TransactionRouting::FirstStatement
            || self.mode != PoolMode::Transaction
            || self.pinned.is_some()
            || !self.splits()
        {
            return Ok(false);
        }
        let Some((text, total)) = short_query(&self.client.rbuf)? else {
            return Ok(false);
        };
        let (tag, status) = match (&self.deferred_begin, route::transaction_end(text)) {
            (None, _) if route::is_deferrable_begin(text) => {
                self.deferred_begin = Some(text.to_owned());
                ("BEGIN", TxStatus::InBlock)
            }
            (Some(_), Some(tag)) => {
                self.deferred_begin = None;
                (tag, TxStatus::Idle)
            }
            _ => return Ok(false),
        };
        self.client.rbuf.advance(total);
        MessageBuilder::command_complete(&mut self.client.wbuf, tag);
        MessageBuilder::ready_for_query(&mut self.client.wbuf, status);
        Ok(true)
    }

    /// Answers `SET`/`RESET`/`SHOW weir.route` sent as a simple Query, without a server.
    /// Returns whether the request was one.
    pub(super) fn answer_route_command(&mut self) -> Result<bool, SessionError> {
        let Some((bytes, total)) = short_query_bytes(&self.client.rbuf)? else {
            return Ok(false);
        };
        // Every client's every short Query passes here: its first word and a byte scan,
        // without allocating (or even checking the UTF-8), rule nearly all of them out.
        if !route::may_be_route_command(bytes)
            || !hints::contains_ignore_case(bytes, route::SETTING.as_bytes())
        {
            return Ok(false);
        }
        let command = std::str::from_utf8(bytes)
            .ok()
            .and_then(route::route_command);
        let Some(command) = command else {
            return Ok(false);
        };
        self.client.rbuf.advance(total);
        let out = &mut self.client.wbuf;
        match command {
            Ok(RouteCommand::Set(route)) => {
                self.attach.state.route = route;
                MessageBuilder::command_complete(out, "SET");
            }
            Ok(RouteCommand::Show) => {
                MessageBuilder::row_description(out, &[(route::SETTING, TEXT_OID)]);
                MessageBuilder::data_row(out, &[Some(self.attach.state.route.as_str())]);
                MessageBuilder::command_complete(out, "SHOW");
            }
            Err(e) => {
                let err = SessionError::InvalidValue(e);
                if let Some((code, message)) = err.client_report() {
                    MessageBuilder::error(out, ErrorSeverity::Error, &code, &message);
                }
            }
        }
        // Between transactions, unless weir holds the client's deferred BEGIN.
        let status = if self.deferred_begin.is_some() {
            TxStatus::InBlock
        } else {
            TxStatus::Idle
        };
        MessageBuilder::ready_for_query(out, status);
        Ok(true)
    }
}

/// Whether a failed connect says the host is unavailable (rather than, say, that the
/// password is wrong): worth waiting for the failover timeout.
fn host_unavailable(cause: &BackendError) -> bool {
    match cause {
        BackendError::Connect { .. }
        | BackendError::LoginTimeout(_)
        | BackendError::Net(_)
        | BackendError::Closed => true,
        BackendError::Refused(fields) => fields.code == SqlState::CANNOT_CONNECT_NOW.code(),
        _ => false,
    }
}

/// Whether a server's last words say its host is going away (shutdown, crash, restart),
/// rather than something about this one session (a timeout, `pg_terminate_backend` is
/// 57P01 too, but the immediate check then finds the host well).
pub(super) fn host_going_away(fatal: Option<&ErrorFields>) -> bool {
    fatal.is_none_or(|f| {
        [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .iter()
        .any(|s| f.code == s.code())
    })
}

/// The text and length of a simple Query of at most `SHORT_QUERY` bytes at the front of
/// `buf`, if that is what is there, whole. Longer texts are never statements weir
/// answers itself.
fn short_query(buf: &[u8]) -> Result<Option<(&str, usize)>, SessionError> {
    let text = short_query_bytes(buf)?
        .and_then(|(bytes, total)| Some((std::str::from_utf8(bytes).ok()?, total)));
    Ok(text)
}

/// `short_query` before the text is checked to be UTF-8.
fn short_query_bytes(buf: &[u8]) -> Result<Option<(&[u8], usize)>, SessionError> {
    let Some((FrontendTag::Query, total)) = FrontendScanner::default().peek(buf)? else {
        return Ok(None);
    };
    if total > SHORT_QUERY {
        return Ok(None);
    }
    let bytes = buf.get(5..total).and_then(|b| b.strip_suffix(&[0]));
    Ok(bytes.map(|b| (b, total)))
}

/// The end of the last commit, from `pg_current_wal_insert_lsn()`. When the last record
/// ended exactly at a page boundary, the insert position points past the next page's
/// header, which a replica's replay position (the end of the last record) never shows
/// until more WAL comes: the page start is where the commit ended. No record ends right
/// after a header, so only those exact offsets are moved back.
fn commit_end(insert_lsn: u64) -> u64 {
    let page = insert_lsn % WAL_PAGE;
    let segment = insert_lsn % WAL_SEGMENT;
    if page == WAL_PAGE_HEADER || segment == WAL_SEGMENT_HEADER {
        insert_lsn - page
    } else {
        insert_lsn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_ends_before_the_next_page_header() {
        assert_eq!(commit_end(3 * WAL_PAGE + 24), 3 * WAL_PAGE);
        assert_eq!(commit_end(2 * WAL_SEGMENT + 40), 2 * WAL_SEGMENT);
        // A record can end 40 bytes into an ordinary page (16 bytes after its header).
        assert_eq!(commit_end(3 * WAL_PAGE + 40), 3 * WAL_PAGE + 40);
        assert_eq!(commit_end(3 * WAL_PAGE + 500), 3 * WAL_PAGE + 500);
    }
}
