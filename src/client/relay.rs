//! Relaying one transaction (or a whole session) between a client and a leased server.
//!
//! Bytes move straight from one socket's read buffer to the other socket; only message
//! headers are looked at, and only ReadyForQuery, ParameterStatus and ErrorResponse are
//! decoded. Reads stop while the other side is not draining, so nothing buffers without bound.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Buf;

use crate::net::Conn;
use crate::protocol::{
    BackendEvent, BackendScanner, ErrorFields, ErrorSeverity, FrontendEvent, FrontendScanner,
    FrontendTag, MessageBuilder, ProtocolError, TxStatus,
};
use crate::server::{ParamSet, ServerConn};

use super::session::sleep_until_opt;
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
    /// The server connection failed; the client is owed an error per pending request.
    ServerLost {
        /// The server's last FATAL message, if it sent one before closing.
        fatal: Option<ErrorFields>,
    },
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
    /// Queries and Syncs sent whose ReadyForQuery has not come back.
    pub(super) pending: u32,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: bool,
    /// Status of the last ReadyForQuery.
    pub(super) tx: TxStatus,
    /// Replies to weir's own statements still to swallow (one per statement).
    hide: u32,
    /// One of weir's own statements failed; its error is reported as a warning.
    hidden_failed: Option<ErrorFields>,
    /// The client sent Terminate.
    terminate: bool,
    /// The server said FATAL; it is about to close.
    fatal: Option<ErrorFields>,
    /// Release the server at the end of each transaction (transaction mode).
    release_when_idle: bool,
    /// `query_timeout` and `idle_transaction_timeout` (zero = off).
    limits: RelayLimits,
    /// When the oldest unanswered request was sent; `None` once a cancel went out for it.
    waiting_since: Option<Instant>,
    /// When the client last sent anything.
    client_active: Instant,
}

/// Time limits a relay enforces.
#[derive(Debug, Clone, Copy)]
pub(super) struct RelayLimits {
    /// A request unanswered this long is cancelled on the server (zero = off).
    pub(super) query: Duration,
    /// A client idle this long inside a transaction is disconnected (zero = off).
    pub(super) idle_in_transaction: Duration,
}

impl Relay {
    /// A relay for a freshly leased server. `hidden` statements were queued ahead of the
    /// client's bytes in `server.conn.wbuf`; their replies are not shown to the client.
    pub(super) fn new(release_when_idle: bool, hidden: u32, limits: RelayLimits) -> Self {
        Self {
            cscan: FrontendScanner::default(),
            cfwd: 0,
            sscan: BackendScanner::default(),
            sfwd: 0,
            pending: 0,
            unsynced: false,
            tx: TxStatus::Idle,
            hide: hidden,
            hidden_failed: None,
            terminate: false,
            fatal: None,
            release_when_idle,
            limits,
            waiting_since: None,
            client_active: Instant::now(),
        }
    }

    /// The next time limit that can pass, if any.
    fn deadline(&self) -> Option<(Instant, Deadline)> {
        if self.pending > 0 {
            let since = self.waiting_since?;
            return (!self.limits.query.is_zero())
                .then(|| (since + self.limits.query, Deadline::Query));
        }
        (self.tx != TxStatus::Idle && !self.limits.idle_in_transaction.is_zero()).then(|| {
            (
                self.client_active + self.limits.idle_in_transaction,
                Deadline::IdleInTransaction,
            )
        })
    }

    /// Whether the client's byte stream is between messages.
    pub(super) fn client_at_boundary(&self) -> bool {
        self.cscan.at_boundary()
    }

    /// Whether extended-protocol messages were sent since the last Sync.
    pub(super) fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Whether the client asked to close.
    pub(super) fn terminated(&self) -> bool {
        self.terminate
    }

    /// Client bytes scanned but never sent (dropped after a server loss: each was answered).
    pub(super) fn discard_unsent(&mut self, client: &mut Conn) {
        client.rbuf.advance(self.cfwd.min(client.rbuf.len()));
        self.cfwd = 0;
    }

    /// Relays until the transaction is over, or a side goes away.
    pub(super) async fn run(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
        desired: &mut ParamSet,
    ) -> Result<Outcome, SessionError> {
        loop {
            self.scan_client(client)?;
            self.scan_server(client, server, desired)?;
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
                if self.release_when_idle {
                    return Ok(Outcome::Done);
                }
            }
            if self.terminate && self.pending == 0 && self.sfwd == 0 && !to_client_blocked {
                return Ok(Outcome::ClientGone);
            }
            let deadline = self.deadline();
            let read_client = !self.terminate && client.rbuf.len() < HIGH_WATER;
            let read_server = server.conn.rbuf.len() < HIGH_WATER || self.sfwd == 0;
            tokio::select! {
                biased;
                r = server.conn.io.writable(), if to_server_blocked => {
                    if r.is_err() { return Ok(self.server_lost()); }
                }
                r = client.io.writable(), if to_client_blocked => {
                    if r.is_err() { return Ok(Outcome::ClientGone); }
                }
                r = server.conn.io.readable(), if read_server => {
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
                    _ => return Err(SessionError::Timeout(Deadline::IdleInTransaction, self.limits.idle_in_transaction)),
                },
                r = client.io.readable(), if read_client => {
                    if r.is_err() { return Ok(Outcome::ClientGone); }
                    self.client_active = Instant::now();
                    match client.try_read() {
                        Ok(0) => return Ok(Outcome::ClientGone),
                        Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Ok(Outcome::ClientGone),
                        _ => {}
                    }
                }
            }
        }
    }

    fn add_pending(&mut self) {
        if self.pending == 0 {
            self.waiting_since = Some(Instant::now());
        }
        self.pending += 1;
    }

    fn server_lost(&mut self) -> Outcome {
        Outcome::ServerLost {
            fatal: self.fatal.take(),
        }
    }

    /// Whether every request has its answer, the server is idle and all bytes moved on.
    fn transaction_over(&self, client: &Conn, server: &ServerConn) -> bool {
        self.pending == 0
            && !self.unsynced
            && self.hide == 0
            && self.tx == TxStatus::Idle
            && self.cscan.at_boundary()
            && self.cfwd == 0
            && self.sfwd == 0
            && server.conn.wbuf.is_empty()
            && server.conn.rbuf.is_empty()
            && client.wbuf.is_empty()
    }

    /// Walks newly read client bytes, counting what needs an answer.
    fn scan_client(&mut self, client: &mut Conn) -> Result<(), SessionError> {
        while !self.terminate {
            let Some(unscanned) = client.rbuf.get(self.cfwd..) else {
                break;
            };
            match self.cscan.next(unscanned)? {
                FrontendEvent::NeedMore => break,
                FrontendEvent::Pass(n) => self.cfwd += n,
                FrontendEvent::Start(tag) => match tag {
                    FrontendTag::Query | FrontendTag::FunctionCall => self.add_pending(),
                    FrontendTag::Sync => {
                        self.add_pending();
                        self.unsynced = false;
                    }
                    FrontendTag::Parse
                    | FrontendTag::Bind
                    | FrontendTag::Describe
                    | FrontendTag::Execute
                    | FrontendTag::Close
                    | FrontendTag::Flush => self.unsynced = true,
                    FrontendTag::CopyData | FrontendTag::CopyDone | FrontendTag::CopyFail => {}
                    FrontendTag::Terminate => {
                        // Terminate is the last thing a client sends: it is not forwarded.
                        self.terminate = true;
                        client.rbuf.truncate(self.cfwd);
                        self.cscan = FrontendScanner::default();
                    }
                    FrontendTag::Password => return Err(ProtocolError::UnexpectedTag('p').into()),
                },
            }
        }
        Ok(())
    }

    /// Walks newly read server bytes: tracks ReadyForQuery and parameters, drops the replies
    /// to weir's own statements and a FATAL error the client must see in weir's words.
    fn scan_server(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
        desired: &mut ParamSet,
    ) -> Result<(), SessionError> {
        loop {
            let hiding = self.hide > 0;
            if hiding && self.sfwd > 0 {
                break; // flush what the client should see before dropping anything
            }
            let Some(unscanned) = server.conn.rbuf.get(self.sfwd..) else {
                break;
            };
            let event = self
                .sscan
                .next(unscanned)
                .inspect_err(|_| server.clean = false)?;
            let len = event.len();
            let mut forward = !hiding;
            match event {
                BackendEvent::NeedMore => break,
                BackendEvent::Pass(_) => {}
                BackendEvent::ReadyForQuery { status, .. } => {
                    if hiding {
                        self.hide -= 1;
                        self.hidden_done(client, server, desired);
                    } else {
                        self.pending = self.pending.saturating_sub(1);
                        if self.pending == 0 {
                            self.waiting_since = None;
                        }
                        self.tx = status;
                    }
                }
                BackendEvent::ParameterStatus { name, value, .. } => {
                    server.params.reported.set(&name, &value);
                    if hiding || ParamSet::is_tracked(&name) || desired.get(&name).is_some() {
                        // The client's own command changed it (or weir's sync canonicalised it).
                        desired.set(&name, &value);
                    }
                }
                BackendEvent::Error { fields, .. } => {
                    if fields.is_fatal() {
                        if self.sfwd > 0 {
                            break;
                        }
                        server.clean = false;
                        self.fatal = Some(fields);
                        forward = false;
                    } else if hiding {
                        self.hidden_failed = Some(fields);
                    }
                }
            }
            if forward {
                self.sfwd += len;
            } else {
                server.conn.rbuf.advance(len);
            }
        }
        Ok(())
    }

    /// The reply to weir's own parameter sync ended.
    fn hidden_done(&mut self, client: &mut Conn, server: &mut ServerConn, desired: &mut ParamSet) {
        match self.hidden_failed.take() {
            None => server.params.synced(desired),
            Some(fields) => {
                tracing::warn!(code = %fields.code, "could not apply a client's session parameters: {}", fields.message);
                MessageBuilder::error(
                    &mut client.wbuf,
                    ErrorSeverity::Warning,
                    &fields.code,
                    &format!(
                        "weir could not apply your session parameters on the server: {}",
                        fields.message
                    ),
                );
                // Stop asking for what the server refuses: the client now has the server's values.
                let current: Vec<(String, Option<String>)> = desired
                    .iter()
                    .map(|(n, _)| {
                        let v = server
                            .params
                            .reported
                            .get(n)
                            .or_else(|| server.params.applied.get(n));
                        (n.to_owned(), v.map(str::to_owned))
                    })
                    .collect();
                for (name, value) in current {
                    match value {
                        Some(v) => desired.set(&name, &v),
                        None => desired.remove(&name),
                    }
                }
            }
        }
    }

    /// Writes weir's own statements, then the client's scanned bytes, to the server.
    /// Returns whether the socket is full.
    fn write_server(&mut self, client: &mut Conn, server: &mut ServerConn) -> io::Result<bool> {
        while !server.conn.wbuf.is_empty() {
            match server.conn.io.try_write(&server.conn.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => server.conn.wbuf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        while self.cfwd > 0 {
            let chunk = client.rbuf.get(..self.cfwd).unwrap_or_default();
            match server.conn.io.try_write(chunk) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    client.rbuf.advance(n);
                    self.cfwd -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Writes weir's own messages, then the server's scanned bytes, to the client.
    /// Returns whether the socket is full.
    fn write_client(&mut self, client: &mut Conn, server: &mut ServerConn) -> io::Result<bool> {
        while !client.wbuf.is_empty() {
            match client.io.try_write(&client.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => client.wbuf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        while self.sfwd > 0 {
            let chunk = server.conn.rbuf.get(..self.sfwd).unwrap_or_default();
            match client.io.try_write(chunk) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    server.conn.rbuf.advance(n);
                    self.sfwd -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}
