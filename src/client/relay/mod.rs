//! Relaying one transaction (or a whole session) between a client and a leased server.
//!
//! Bytes move straight from one socket's read buffer to the other socket. Only message
//! headers are walked: client messages in `requests`, where named prepared statements are
//! renamed in place, and server messages in `responses`, where ReadyForQuery,
//! ParameterStatus and ErrorResponse are decoded. `replies` keeps, in order,
//! what the server owes, so replies to weir's own requests are dropped and replies weir
//! makes itself go out at the right place. Reads stop while the other side is not draining,
//! so nothing buffers without bound.

mod replies;
mod requests;
mod responses;
mod writes;

use std::io;
use std::time::Duration;

use bytes::Buf;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::net::{read_ready, write_ready, Conn};
use crate::protocol::{BackendScanner, ErrorFields, FrontendScanner, TxStatus};
use crate::server::ServerConn;
use replies::{Expect, Hidden, Replies};

use super::hints;
use super::session::{sleep_until_opt, ClientState};
use super::{Deadline, SessionError};

/// Stop reading a side once this much of its data waits to be written to the other side.
const HIGH_WATER: usize = 256 * 1024;

/// How a relay ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The transaction is over and the server is clean: give it back.
    Done,
    /// The client closed its connection (Terminate or end of stream).
    ClientGone,
    /// The client must be disconnected with this error; the server is idle and clean
    /// (session mode: idle timeout or shutdown between transactions).
    Leave(SessionError),
    /// The server connection failed; the client is owed an error per pending request.
    ServerLost {
        /// The server's last FATAL message, if it sent one before closing.
        fatal: Option<ErrorFields>,
    },
}

/// How a relay behaves, from the configuration.
#[derive(Debug, Clone, Copy)]
pub(super) struct RelayConfig {
    /// Give the server back at the end of each transaction (transaction mode).
    pub(super) release_when_idle: bool,
    /// Rename named prepared statements (transaction mode: servers change between transactions).
    pub(super) rewrite: bool,
    /// `pool.max_prepared_statements` per server.
    pub(super) max_prepared: usize,
    /// `limits.max_message_size`: a longer client message ends the session (`08P01`).
    pub(super) max_message: usize,
    /// A request unanswered this long is cancelled on the server (zero = off).
    pub(super) query_timeout: Duration,
    /// A client idle this long inside a transaction is disconnected (zero = off).
    pub(super) idle_in_transaction: Duration,
    /// A client idle this long between transactions is disconnected (session mode; zero = off).
    pub(super) client_idle: Duration,
    /// A client silent this long in the middle of a message is disconnected: it holds a
    /// server that cannot do anything else (`pool.query_wait_timeout`, what others wait).
    pub(super) stall: Duration,
    /// Forward one request (up to a Query or Sync) at a time: on a replica, a client's
    /// next implicit transaction must wait to be routed on its own, as it may write.
    pub(super) one_request: bool,
}

/// What the relay listens to besides the two sockets.
pub(super) struct Signals<'a> {
    /// This client's wake-up (shutdown).
    pub(super) wake: &'a crate::cancel::Wake,
    /// Whether weir is shutting down.
    pub(super) shutdown: &'a watch::Receiver<bool>,
    /// The client's registry entry: an administrator may have killed it.
    pub(super) client: &'a crate::cancel::ClientInfo,
    /// Session mode: the host pool each transaction of the session is counted in as it
    /// ends (transaction mode counts once per relay, in the session).
    pub(super) pool: Option<&'a crate::pool::HostPool>,
}

/// Owed replies a spare queue keeps room for between transactions.
const SPARE_REPLIES: usize = 64;

/// What one transaction's relay leaves for the next one of the same client: the queue of
/// replies keeps its allocation (an allocation and a free per transaction otherwise).
#[derive(Debug, Default)]
pub(super) struct Spare {
    /// Empty, with whatever capacity it grew to.
    replies: Replies,
}

/// Protocol state of one relay. A new one starts at each checkout.
#[derive(Debug)]
pub(super) struct Relay {
    /// Walks client bytes.
    cscan: FrontendScanner,
    /// Client bytes at the front of `client.rbuf` scanned and ready for the server.
    cfwd: usize,
    /// Walks server bytes.
    sscan: BackendScanner,
    /// Server bytes at the front of `server.rbuf` scanned and ready for the client.
    sfwd: usize,
    /// Whether the bytes of the server message being walked are dropped.
    dropping: bool,
    /// Replies the server owes, in order.
    replies: Replies,
    /// Queries and Syncs sent whose ReadyForQuery has not come back.
    pub(super) pending: u32,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: bool,
    /// Status of the last ReadyForQuery.
    pub(super) tx: TxStatus,
    /// weir's parameter sync failed; its error is reported as a warning.
    sync_failed: Option<ErrorFields>,
    /// The client sent Terminate.
    terminate: bool,
    /// The server said FATAL; it is about to close.
    fatal: Option<ErrorFields>,
    /// Behaviour.
    config: RelayConfig,
    /// When the oldest unanswered request was sent; `None` once a cancel went out for it.
    waiting_since: Option<Instant>,
    /// When the client last sent anything, or last got its final answer; kept only when an
    /// idle limit is configured (the clock is not read per message otherwise).
    client_active: Option<Instant>,
    /// Leave at the next idle point (session mode, shutdown requested mid-transaction).
    leave_when_idle: bool,
    /// The server is in COPY IN and the client has not ended its data: its Syncs are ignored.
    copy_in: bool,
    /// A client message was taken up. Until then the transaction cannot be over: a first
    /// message too short to scan yet (13 bytes of a 1 GiB Query) must be read further,
    /// not handed back to the session, which would lease a server for it again and spin.
    started: bool,
    /// Something in this transaction may have changed the client's session (`hints`): the
    /// session probes the server before giving it back.
    hints: hints::Hints,
    /// The transaction ran RESET or DISCARD ALL: followed parameters return to the client's
    /// startup values.
    settings_reset: bool,
    /// Since when the client has owed the rest of a message, as of its last bytes.
    mid_message_since: Option<Instant>,
    /// Queries and Syncs passed on: requests, each classified on its own only on a
    /// one-request relay (see `RelayConfig::one_request`).
    requests_sent: u32,
    /// Requests answered, bytes passed and time spent waiting for answers (SHOW STATS).
    tally: Tally,
}

/// What one relay counted for the pool's totals.
#[derive(Debug, Default)]
struct Tally {
    /// Requests whose ReadyForQuery came back.
    answered: u64,
    /// Client bytes written to the server.
    received: u64,
    /// Server bytes written to the client.
    sent: u64,
    /// Time with at least one request unanswered, in microseconds.
    busy_us: u64,
    /// Since when a request has been unanswered.
    busy_since: Option<std::time::Instant>,
    /// When the relay began (the lease): the first request's start, so the clock is not
    /// read again for it.
    leased: Option<std::time::Instant>,
    /// When the last request was answered with none left unanswered.
    last_answer: Option<std::time::Instant>,
    /// When the current transaction's first request was sent (session mode counts each
    /// transaction of the session on its own).
    xact_start: Option<std::time::Instant>,
}

impl Relay {
    /// A relay for a freshly leased server. With `param_sync`, weir's parameter-sync query
    /// was queued ahead of the client's bytes in `server.conn.wbuf`, and with `begin`, then
    /// the client's deferred BEGIN; their replies are hidden. `leased` is when the server
    /// was leased.
    pub(super) fn new(
        config: RelayConfig,
        param_sync: bool,
        begin: bool,
        leased: std::time::Instant,
        spare: Spare,
    ) -> Self {
        let mut replies = spare.replies;
        debug_assert!(replies.is_empty(), "a spare reply queue is empty");
        if param_sync {
            replies.push(Expect::Hidden(Hidden::ParamSync));
        }
        if begin {
            replies.push(Expect::Hidden(Hidden::Begin));
        }
        let mut relay = Self {
            cscan: FrontendScanner::with_max(config.max_message),
            cfwd: 0,
            sscan: BackendScanner::default(),
            sfwd: 0,
            dropping: false,
            replies,
            pending: 0,
            unsynced: false,
            tx: TxStatus::Idle,
            sync_failed: None,
            terminate: false,
            fatal: None,
            config,
            waiting_since: None,
            client_active: None,
            leave_when_idle: false,
            copy_in: false,
            started: false,
            hints: hints::Hints::default(),
            settings_reset: false,
            mid_message_since: None,
            requests_sent: 0,
            tally: Tally {
                leased: Some(leased),
                ..Tally::default()
            },
        };
        relay.touch_client();
        relay
    }

    /// What the next transaction's relay can reuse (taken by reference: moving the whole
    /// relay out costs a copy of it per transaction).
    pub(super) fn take_spare(&mut self) -> Spare {
        self.replies.clear();
        // A client that once pipelined thousands of requests does not keep room for
        // them while idle: idle clients stay cheap (see `Conn::shrink_idle`).
        self.replies.shrink_to(SPARE_REPLIES);
        Spare {
            replies: std::mem::take(&mut self.replies),
        }
    }

    /// Whether the client's byte stream is between messages.
    pub(super) fn client_at_boundary(&self) -> bool {
        self.cscan.at_boundary()
    }

    /// Whether the server's stream stopped between messages. If not, the start of a
    /// message may already be with the client, and nothing weir sends after it can be
    /// read as a message of its own.
    pub(super) fn server_at_boundary(&self) -> bool {
        self.sscan.at_boundary()
    }

    /// Whether extended-protocol messages were sent since the last Sync.
    pub(super) fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Whether the transaction may have changed the client's session state.
    pub(super) fn session_hint(&self) -> bool {
        self.hints.session
    }

    /// Whether the transaction may have taken a session advisory lock.
    pub(super) fn advisory_hint(&self) -> bool {
        self.hints.advisory
    }

    /// Whether the transaction ran RESET or DISCARD ALL.
    pub(super) fn settings_reset(&self) -> bool {
        self.settings_reset
    }

    /// How many requests (Queries and Syncs) were passed on to the server.
    pub(super) fn requests_sent(&self) -> u32 {
        self.requests_sent
    }

    /// What this relay adds to its pool's totals (transactions, waits and lease time are
    /// the session's to fill in).
    pub(super) fn totals(&self) -> crate::stats::Totals {
        crate::stats::Totals {
            queries: self.tally.answered,
            received: self.tally.received,
            sent: self.tally.sent,
            query_us: self.tally.busy_us,
            ..Default::default()
        }
    }

    /// Session mode: the transaction that just ended, taken out of the tally so the next
    /// one counts on its own; `None` when nothing was answered since the last one.
    fn take_transaction(&mut self) -> Option<crate::stats::Totals> {
        if self.tally.answered == 0 {
            return None;
        }
        let mut totals = self.totals();
        totals.xacts = 1;
        let t = &mut self.tally;
        if let (Some(start), Some(end)) = (t.xact_start.take(), t.last_answer) {
            totals.xact_us = crate::stats::micros(end.saturating_duration_since(start));
        }
        t.answered = 0;
        t.received = 0;
        t.sent = 0;
        t.busy_us = 0;
        Some(totals)
    }

    /// Whether the client asked to close.
    pub(super) fn terminated(&self) -> bool {
        self.terminate
    }

    /// Whether the server owes nothing and is outside a transaction.
    pub(super) fn server_idle(&self) -> bool {
        self.pending == 0 && self.replies.is_empty() && !self.unsynced && self.tx == TxStatus::Idle
    }

    /// Client bytes scanned but never sent (dropped after a server loss: each was answered).
    pub(super) fn discard_unsent(&mut self, client: &mut Conn) {
        client.rbuf.advance(self.cfwd.min(client.rbuf.len()));
        self.cfwd = 0;
    }

    /// The stall limit, while the client owes the rest of a message (a large message
    /// started, or a first message not yet long enough to scan). The clock is read only
    /// then: on entering that state and on each read while in it.
    fn stall_deadline(&mut self, client: &Conn) -> Option<(Instant, Deadline)> {
        let owing = !self.cscan.at_boundary() || (!self.started && !client.rbuf.is_empty());
        if !owing || self.config.stall.is_zero() {
            self.mid_message_since = None;
            return None;
        }
        let since = *self.mid_message_since.get_or_insert_with(Instant::now);
        Some((since + self.config.stall, Deadline::ClientStall))
    }

    /// The next time limit that can pass, if any.
    fn deadline(&self) -> Option<(Instant, Deadline)> {
        if self.pending > 0 {
            let since = self.waiting_since?;
            let limit = self.config.query_timeout;
            return (!limit.is_zero()).then(|| (since + limit, Deadline::Query));
        }
        let (limit, which) = if self.tx != TxStatus::Idle {
            (self.config.idle_in_transaction, Deadline::IdleInTransaction)
        } else if !self.config.release_when_idle && self.server_idle() {
            (self.config.client_idle, Deadline::ClientIdle)
        } else {
            return None;
        };
        let since = self.client_active?;
        (!limit.is_zero()).then(|| (since + limit, which))
    }

    /// Relays until the transaction is over, or a side goes away.
    pub(super) async fn run(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
        state: &mut ClientState,
        signals: Signals<'_>,
    ) -> Result<Outcome, SessionError> {
        let woken = signals.wake.notified();
        tokio::pin!(woken);
        loop {
            self.scan_client(client, server, state)?;
            self.scan_server(client, server, state)?;
            if self.config.one_request {
                // An answer that keeps the transaction open lets the held request go now:
                // it is already read, and no new bytes would wake the loop for it.
                self.scan_client(client, server, state)?;
            }
            let to_server_blocked = match self.write_server(client, server) {
                Ok(blocked) => blocked,
                Err(_) => return Ok(self.server_lost()),
            };
            let to_client_blocked = match self.write_client(client, server) {
                Ok(blocked) => blocked,
                Err(_) => return Ok(Outcome::ClientGone),
            };
            if self.transaction_over(client, server) {
                if self.terminate {
                    return Ok(Outcome::ClientGone);
                }
                if self.config.release_when_idle {
                    return Ok(Outcome::Done);
                }
                // Session mode keeps the server: each transaction is counted as it ends.
                if let (Some(pool), Some(t)) = (signals.pool, self.take_transaction()) {
                    pool.record(&t, false);
                }
                if self.leave_when_idle {
                    return Ok(Outcome::Leave(SessionError::ShuttingDown));
                }
            }
            if self.terminate && self.pending == 0 && self.sfwd == 0 && !to_client_blocked {
                return Ok(Outcome::ClientGone);
            }
            let deadline = self.stall_deadline(client).or_else(|| self.deadline());
            let read_client = !self.terminate && client.rbuf.len() < HIGH_WATER;
            let read_server = server.conn.rbuf.len() < HIGH_WATER || self.sfwd == 0;
            tokio::select! {
                biased;
                r = write_ready(&server.conn), if to_server_blocked => {
                    if r.is_err() { return Ok(self.server_lost()); }
                }
                r = write_ready(client), if to_client_blocked => {
                    if r.is_err() { return Ok(Outcome::ClientGone); }
                }
                r = read_ready(&server.conn), if read_server => {
                    if r.is_err() { return Ok(self.server_lost()); }
                    match server.conn.try_read() {
                        Ok(0) => return Ok(self.server_lost()),
                        Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Ok(self.server_lost()),
                        _ => {}
                    }
                }
                _ = sleep_until_opt(deadline.map(|(at, _)| at)) => match deadline {
                    Some((_, Deadline::Query)) => {
                        // Like statement_timeout: the server cancels, the client gets 57014.
                        self.waiting_since = None;
                        tracing::info!("query_timeout reached: cancelling the statement");
                        let target = server.cancel_target();
                        tokio::spawn(async move {
                            let _ = crate::cancel::forward(target, Duration::from_secs(5)).await;
                        });
                    }
                    Some((_, Deadline::ClientIdle)) => {
                        return Ok(Outcome::Leave(SessionError::Timeout(Deadline::ClientIdle, self.config.client_idle)));
                    }
                    Some((_, Deadline::ClientStall)) => {
                        return Err(SessionError::Timeout(Deadline::ClientStall, self.config.stall));
                    }
                    _ => return Err(SessionError::Timeout(Deadline::IdleInTransaction, self.config.idle_in_transaction)),
                },
                // Woken for a KILL or a shutdown. KILL ends a client mid-transaction: its
                // server is closed, so the transaction rolls back. A shutdown lets session
                // mode leave at the next idle point; in transaction mode the session sees
                // it once the transaction is over.
                _ = &mut woken => {
                    if signals.client.killed() {
                        return Err(SessionError::Killed);
                    }
                    if !self.config.release_when_idle && *signals.shutdown.borrow() {
                        self.leave_when_idle = true;
                    }
                }
                r = read_ready(client), if read_client => {
                    if r.is_err() { return Ok(Outcome::ClientGone); }
                    self.touch_client();
                    if self.mid_message_since.is_some() {
                        self.mid_message_since = Some(Instant::now());
                    }
                    match client.try_read() {
                        Ok(0) => return Ok(Outcome::ClientGone),
                        Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Ok(Outcome::ClientGone),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Restarts the client's idle clock; reads the clock only when an idle limit is on.
    fn touch_client(&mut self) {
        if !(self.config.idle_in_transaction.is_zero() && self.config.client_idle.is_zero()) {
            self.client_active = Some(Instant::now());
        }
    }

    fn add_pending(&mut self) {
        if self.pending == 0 {
            // The first request was read before the lease: it starts then.
            let now = self
                .tally
                .leased
                .take()
                .unwrap_or_else(std::time::Instant::now);
            self.tally.busy_since = Some(now);
            self.tally.xact_start.get_or_insert(now);
            if !self.config.query_timeout.is_zero() {
                self.waiting_since = Some(Instant::from_std(now));
            }
        }
        self.pending += 1;
    }

    /// When the last request was answered with nothing left to answer, if one was.
    pub(super) fn last_answer(&self) -> Option<std::time::Instant> {
        self.tally.last_answer
    }

    fn server_lost(&mut self) -> Outcome {
        Outcome::ServerLost {
            fatal: self.fatal.take(),
        }
    }

    /// Whether every request has its answer, the server is idle and all bytes moved on.
    fn transaction_over(&self, client: &Conn, server: &ServerConn) -> bool {
        self.started
            && self.server_idle()
            && self.cscan.at_boundary()
            && self.cfwd == 0
            && self.sfwd == 0
            && server.conn.wbuf.is_empty()
            && server.conn.rbuf.is_empty()
            && client.wbuf.is_empty()
            && !client.io.has_pending()
            && !server.conn.io.has_pending()
    }
}
