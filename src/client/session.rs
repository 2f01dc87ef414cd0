//! The life of an authenticated client: wait for a transaction, lease a server, relay,
//! give the server back. One task per client owns all of this; nothing here is shared.

use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use tokio::sync::watch;

use crate::app::{Database, Shared, Snapshot};
use crate::cancel::CancelHandle;
use crate::config::PoolMode;
use crate::net::{read_ready, Conn};
use crate::pool::{DbUserPool, Lease};
use crate::protocol::{
    ErrorSeverity, FrontendEvent, FrontendScanner, FrontendTag, MessageBuilder, TxStatus,
};
use crate::server::probe::Pins;
use crate::server::{BackendError, ParamSet, ServerTarget};
use crate::stats::micros;

use super::prepared::ClientStatements;
use super::relay::{Outcome, Relay, RelayConfig, Signals, Spare};
use super::route::{Leg, RouteOverride};
use super::{Deadline, SessionError};

mod routing;

/// A first message up to this size is read whole before a server is leased for it.
const FIRST_MESSAGE_WHOLE: usize = 64 * 1024;
/// Limit on weir's own reset statement in session mode.
const RESET_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit on the session probe after a transaction that may have changed session state.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the client wants next.
enum Next {
    /// It sent the first message of a transaction.
    Request,
    /// It sent Terminate or closed the connection.
    Leave,
}

/// What belongs to the client's session whichever server runs its transactions.
#[derive(Debug, Default)]
pub(crate) struct ClientState {
    /// Session parameters (startup + what its own commands changed).
    pub(crate) desired: ParamSet,
    /// The parameters of its startup packet: what RESET returns to.
    pub(crate) startup: ParamSet,
    /// Named prepared statements.
    pub(crate) statements: ClientStatements,
    /// Reused to build renamed messages, so a renamed Bind allocates nothing.
    pub(crate) scratch: bytes::BytesMut,
    /// `weir.route`: the client's standing routing instruction.
    pub(crate) route: RouteOverride,
    /// The primary's WAL position after the client's last write transaction: a replica
    /// serves its reads only once it has replayed this far (read-your-writes).
    pub(crate) min_lsn: u64,
}

/// Everything a logged-in client needs except its socket.
pub(crate) struct Attach {
    /// Configuration and users as of login.
    pub(super) snap: Arc<Snapshot>,
    /// The database the client connected to.
    pub(super) db: Arc<Database>,
    /// Pools of (database, user).
    pub(super) pool: Arc<DbUserPool>,
    /// Logins for each host, used to find the primary.
    pub(super) targets: Arc<Vec<ServerTarget>>,
    /// Session parameters and prepared statements: the client's state, whatever server it is on.
    pub(super) state: ClientState,
    /// This client's cancel keys; points at the server it holds.
    pub(super) cancel: CancelHandle,
    /// Tells whether weir is shutting down (checked when woken through `cancel.slot.wake`).
    pub(super) shutdown: watch::Receiver<bool>,
    /// Pools and the current snapshot.
    pub(super) shared: Arc<Shared>,
    /// The entry `auth.query` gave the client at login (`None` for a listed user): its
    /// user across RELOADs while `auth.user` stays set.
    pub(super) looked_up: Option<Arc<crate::auth::UserEntry>>,
    /// Its place under its user's and its database's `max_client_conn`, until it leaves.
    pub(super) _admitted: crate::limits::Admitted,
}

impl Attach {
    /// Joins the login state with the client socket.
    pub(super) fn into_session(self, client: Conn) -> Session {
        // Session mode keeps its mode for the whole session, whatever a RELOAD says.
        let mode = self.snap.config.pool.mode;
        Session {
            relay: relay_config(&self.snap, mode),
            mode,
            client,
            attach: self,
            lost: None,
            pinned: None,
            deferred_begin: None,
            mid_message: false,
            spare: Spare::default(),
        }
    }
}

/// How the relay behaves for a client in `mode` under `snap`'s limits; made at login and
/// again when the client follows a RELOAD, not per transaction.
fn relay_config(snap: &Snapshot, mode: PoolMode) -> RelayConfig {
    let pool = &snap.config.pool;
    RelayConfig {
        release_when_idle: mode != PoolMode::Session,
        rewrite: mode != PoolMode::Session,
        max_prepared: pool.max_prepared_statements as usize,
        max_message: snap.config.limits.max_message_size,
        query_timeout: pool.query_timeout,
        idle_in_transaction: pool.idle_transaction_timeout,
        client_idle: pool.client_idle_timeout,
        stall: pool.query_wait_timeout,
        one_request: false,
    }
}

/// What the relay saw of a finished transaction that matters for the probe.
#[derive(Debug, Clone, Copy)]
struct Ran {
    /// The session may have changed.
    hint: bool,
    /// A session advisory lock may have been taken.
    advisory: bool,
    /// A RESET or DISCARD ALL ran.
    reset: bool,
}

/// A server kept by a client between transactions because its session holds state only
/// that server has (transaction mode; see `server::probe`).
struct Pinned {
    /// The server.
    lease: Lease,
    /// Its host, for failure reports.
    host: usize,
    /// What it was leased for.
    leg: Leg,
    /// What pins it.
    pins: Pins,
}

/// Per-client state after login. Lives in exactly one task; nothing here is shared.
pub(crate) struct Session {
    /// The client socket; only this task reads or writes it.
    pub(super) client: Conn,
    /// Pools, parameters, keys.
    attach: Attach,
    /// A server lost while the client sat idle in its transaction: reported on its next request.
    lost: Option<SessionError>,
    /// The server this client is pinned to, if any.
    pinned: Option<Pinned>,
    /// A BEGIN weir answered itself, to be sent with the transaction's first statement
    /// (`routing.transactions = "first_statement"`).
    deferred_begin: Option<String>,
    /// The last relay stopped in the middle of a server message, part of which the client
    /// has: nothing weir writes after it could be read as a message of its own.
    mid_message: bool,
    /// The pool mode the client logged in under.
    mode: PoolMode,
    /// The relay's behaviour under the client's snapshot.
    relay: RelayConfig,
    /// Left by the last transaction's relay for the next one.
    spare: Spare,
}

impl Session {
    /// Whether an error may still be written to the client: not after part of a server
    /// message (a shutdown, a KILL or a lost server in the middle of a result).
    pub(super) fn may_report(&self) -> bool {
        !self.mid_message
    }

    /// Serves transactions until the client leaves or an error ends the session.
    pub(crate) async fn run(&mut self) -> Result<(), SessionError> {
        let mode = self.mode;
        loop {
            let (pins, server) = self
                .pinned
                .as_ref()
                .map_or((0, 0), |p| (p.pins.bits(), p.lease.process_id));
            self.attach.cancel.slot.info.idle(pins, server);
            match self.wait_for_request().await? {
                Next::Leave => return Ok(()),
                Next::Request => {}
            }
            self.follow_reload()?;
            if let Some(err) = self.lost.take() {
                self.reject_request(err).await?;
                continue;
            }
            if self.answer_route_command()? || self.defer_begin()? {
                continue;
            }
            let asked = std::time::Instant::now();
            let asked_wall = crate::stats::wall_micros(asked);
            self.attach.cancel.slot.info.waiting(asked_wall);
            // After `waiting`: PAUSE either sees this client, or the client sees PAUSE. A
            // held request starts its path again once resumed, so it follows a RELOAD made
            // meanwhile (PAUSE, edit the hosts, RELOAD, RESUME) like any other request.
            if self.attach.db.control.is_paused() {
                self.attach.cancel.slot.info.held();
                self.wait_resumed().await?;
                continue;
            }
            let config = self.relay;
            let (mut lease, host, leg, pins) = match self.pinned.take() {
                Some(p) => (p.lease, p.host, p.leg.pinned(), p.pins),
                None => match self.checkout(asked).await {
                    Ok((lease, host, leg)) => (lease, host, leg, Pins::default()),
                    Err(e) => {
                        // The transaction weir opened for the client ends with the error.
                        self.deferred_begin = None;
                        self.reject_request(e).await?;
                        continue;
                    }
                },
            };
            let leased = std::time::Instant::now();
            self.attach.cancel.slot.info.active(host);
            lease.info.leased(self.attach.cancel.process_id, asked_wall);
            tracing::trace!(?leg, host, "transaction routed");
            let config = RelayConfig {
                // In session mode a replica serves the whole session: nothing to hold.
                one_request: matches!(leg, Leg::Replica(_)) && config.release_when_idle,
                ..config
            };
            let unknown = ParamSet::default();
            let defaults = self
                .attach
                .pool
                .server_defaults
                .get()
                .map_or(&unknown, |d| &d.reported);
            let param_sync = match lease.params.sync_for(&self.attach.state.desired, defaults) {
                Some(sql) => {
                    MessageBuilder::query(&mut lease.conn.wbuf, &sql);
                    true
                }
                None => false,
            };
            let begin = self.deferred_begin.take();
            if let Some(text) = &begin {
                MessageBuilder::query(&mut lease.conn.wbuf, text);
            }
            self.attach.cancel.slot.set(Some(lease.cancel_target()));
            let spare = std::mem::take(&mut self.spare);
            let mut relay = Relay::new(config, param_sync, begin.is_some(), leased, spare);
            let session_mode = mode == PoolMode::Session;
            let signals = Signals {
                wake: &self.attach.cancel.slot.wake,
                shutdown: &self.attach.shutdown,
                client: &self.attach.cancel.slot.info,
                pool: self.attach.pool.hosts.get(host).filter(|_| session_mode),
            };
            let outcome = relay
                .run(
                    &mut self.client,
                    &mut lease,
                    &mut self.attach.state,
                    signals,
                )
                .await;
            self.mid_message = !relay.server_at_boundary();
            self.attach.cancel.slot.set(None);
            if let Some(hp) = self.attach.pool.hosts.get(host) {
                let mut totals = relay.totals();
                // Session mode counted each transaction as it ended; what is left is an
                // unfinished one, if anything was answered in it.
                totals.xacts = if session_mode {
                    u64::from(totals.queries > 0)
                } else {
                    1
                };
                totals.wait_us = micros(leased - asked);
                // The last answer ends the transaction; no clock read unless there was none.
                let ended = relay.last_answer().unwrap_or_else(std::time::Instant::now);
                if !session_mode {
                    totals.xact_us = micros(ended.saturating_duration_since(leased));
                }
                hp.record(&totals, true);
                lease.ended_at(ended);
            }
            match outcome {
                Ok(Outcome::Done) => {
                    let wrote =
                        leg == Leg::Write || (leg == Leg::PrimaryRead && relay.requests_sent() > 1);
                    if wrote && self.reads_own_writes() {
                        self.learn_commit_position(&mut lease).await;
                    }
                    let pinned = Pinned {
                        lease,
                        host,
                        leg,
                        pins,
                    };
                    let ran = Ran {
                        hint: relay.session_hint(),
                        advisory: relay.advisory_hint(),
                        reset: relay.settings_reset(),
                    };
                    self.spare = relay.take_spare();
                    self.after_transaction(pinned, ran).await?;
                }
                Ok(Outcome::ClientGone) => {
                    self.finish_with(lease, &relay, mode, pins).await;
                    return Ok(());
                }
                Ok(Outcome::Leave(err)) => {
                    self.finish_with(lease, &relay, mode, pins).await;
                    return Err(err);
                }
                Ok(Outcome::ServerLost { fatal }) => {
                    lease.poison();
                    drop(lease);
                    // Parses the server never answered: their statements are settled now.
                    self.attach
                        .state
                        .statements
                        .settle(crate::server::prepared::tick());
                    if self.mid_message {
                        // The client can only be told by the connection closing, as it
                        // would be by the server itself.
                        let err = SessionError::ServerLost(fatal);
                        tracing::warn!(pool = %self.attach.pool.label, "{err}, in the middle of a message: the client connection is closed");
                        return Err(err);
                    }
                    if routing::host_going_away(fatal.as_ref()) {
                        // The host may be down: it is checked at once. A FATAL about this
                        // session alone (an idle timeout) says nothing of the host.
                        self.attach.db.cluster.host_failed(host);
                    }
                    if !pins.is_empty() {
                        return Err(SessionError::PinnedServerLost {
                            pins: lost_state(pins),
                            cause: fatal.map_or_else(
                                || "the server closed the connection".to_owned(),
                                |f| f.message,
                            ),
                        });
                    }
                    let err = SessionError::ServerLost(fatal);
                    tracing::warn!(pool = %self.attach.pool.label, "{err}");
                    if !relay.client_at_boundary() {
                        return Err(err);
                    }
                    relay.discard_unsent(&mut self.client);
                    if relay.terminated() {
                        return Ok(());
                    }
                    if relay.pending > 0 || relay.unsynced() {
                        self.report(&err, relay.pending).await?;
                    } else {
                        // Idle in a transaction: the next request learns the transaction is gone.
                        self.lost = Some(err);
                    }
                }
                Err(e) => {
                    lease.poison();
                    return Err(e);
                }
            }
        }
    }

    /// After a transaction: a server whose session may have changed is probed first (its
    /// settings become the client's; state only it has pins the client to it). Then the
    /// server goes back to the pool, or stays with a pinned client.
    async fn after_transaction(
        &mut self,
        mut pinned: Pinned,
        ran: Ran,
    ) -> Result<(), SessionError> {
        if !ran.hint {
            if pinned.pins.is_empty() {
                pinned.lease.mark_clean();
            } else {
                self.pinned = Some(pinned);
            }
            return Ok(());
        }
        // Whatever the probe can list, the next sync on this server starts from scratch:
        // custom settings and SET ROLE are invisible to it and must not reach another client.
        pinned.lease.params.taint();
        let sink = &mut self.client.wbuf;
        let probe = tokio::time::timeout(
            PROBE_TIMEOUT,
            pinned
                .lease
                .probe_session(sink, ran.advisory || pinned.pins.has_advisory_lock()),
        )
        .await;
        let probe = match probe {
            Ok(Ok(probe)) => probe,
            failed => {
                pinned.lease.poison();
                let cause = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer in time".to_owned(),
                };
                tracing::warn!(pool = %self.attach.pool.label, "session probe failed, server closed: {cause}");
                // What the transaction set up (a LISTEN, a lock, settings) is gone with the
                // server: the client must hear it rather than carry on without it.
                return Err(SessionError::PinnedServerLost {
                    pins: lost_state(pinned.pins),
                    cause,
                });
            }
        };
        let state = &mut self.attach.state;
        state.desired = state
            .desired
            .after_probe(&state.startup, &probe.settings, ran.reset);
        pinned.lease.params.probed(&probe.settings);
        for reason in probe.pins.added_since(pinned.pins).names() {
            metrics::counter!(crate::metrics::names::CLIENT_PINS_TOTAL, "reason" => reason)
                .increment(1);
        }
        if probe.pins != pinned.pins {
            tracing::debug!(pool = %self.attach.pool.label, pins = %probe.pins, "client pinning changed");
        }
        pinned.pins = probe.pins;
        if pinned.pins.is_empty() {
            pinned.lease.mark_clean();
        } else {
            self.pinned = Some(pinned);
        }
        Ok(())
    }

    /// Returns the server after the client left: clean servers go back (reset first in
    /// session mode), anything mid-transaction or holding the client's state is closed so
    /// the server rolls back and forgets it.
    async fn finish_with(&mut self, mut lease: Lease, relay: &Relay, mode: PoolMode, pins: Pins) {
        let changed = mode != PoolMode::Session && (relay.session_hint() || !pins.is_empty());
        if changed || !relay.server_idle() || !lease.conn.rbuf.is_empty() {
            lease.poison();
            return;
        }
        if mode == PoolMode::Session {
            let reset =
                tokio::time::timeout(RESET_TIMEOUT, lease.simple_query("DISCARD ALL")).await;
            if !matches!(reset, Ok(Ok(_))) {
                lease.poison();
                return;
            }
            lease.params.forget_applied();
            lease.prepared.clear();
        }
        lease.mark_clean();
    }

    /// Waits for the first message of the next transaction.
    async fn wait_for_request(&mut self) -> Result<Next, SessionError> {
        let idle_limit = self.attach.snap.config.pool.client_idle_timeout;
        let idle_deadline =
            (!idle_limit.is_zero()).then(|| tokio::time::Instant::now() + idle_limit);
        // What a pinned server sent along with the probe's answer is passed on first.
        if self
            .pinned
            .as_ref()
            .is_some_and(|p| !p.lease.conn.rbuf.is_empty())
        {
            self.take_pinned_messages()?;
        }
        loop {
            if *self.attach.shutdown.borrow() {
                return Err(SessionError::ShuttingDown);
            }
            if self.attach.cancel.slot.info.killed() {
                return Err(SessionError::Killed);
            }
            // A server is leased only once the first message is complete (when it is of a
            // reasonable size): a client that stalls mid-message must not hold a server.
            let scanner = FrontendScanner::with_max(self.relay.max_message);
            if let Some((tag, total)) = scanner.peek(&self.client.rbuf)? {
                let needed = if total <= FIRST_MESSAGE_WHOLE {
                    total
                } else {
                    5
                };
                if self.client.rbuf.len() >= needed {
                    return Ok(match tag {
                        FrontendTag::Terminate => Next::Leave,
                        _ => Next::Request,
                    });
                }
            }
            if !self.client.wbuf.is_empty() || self.client.io.has_pending() {
                self.client.flush().await?;
            }
            // An idle client holds no buffer memory: thousands of idle clients stay cheap.
            // The next read allocates again: once per transaction, not per message.
            self.client.shrink_idle();
            tokio::select! {
                biased;
                r = read_ready(&self.client) => {
                    r?;
                    match self.client.try_read() {
                        Ok(0) => return Ok(Next::Leave),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                _ = sleep_until_opt(idle_deadline) => {
                    return Err(SessionError::Timeout(Deadline::ClientIdle, idle_limit));
                }
                _ = self.attach.cancel.slot.wake.notified() => {}
                r = pinned_readable(self.pinned.as_ref()) => {
                    match r {
                        Ok(()) => self.take_pinned_messages()?,
                        Err(e) => return Err(self.pinned_lost(e.into())),
                    }
                }
            }
        }
    }

    /// After a RELOAD: the client moves to the new snapshot and to its pool (a new one if
    /// the hosts or the login changed). A removed database or user ends the session.
    fn follow_reload(&mut self) -> Result<(), SessionError> {
        let shared = &self.attach.shared;
        if shared.generation() == self.attach.snap.generation {
            return Ok(());
        }
        let snap = shared.snapshot();
        let name = self.attach.db.config.name.clone();
        let user_name = self.attach.pool.user.clone();
        let db = snap
            .databases
            .get(&name)
            .cloned()
            .ok_or_else(|| SessionError::Removed(format!("database \"{name}\"")))?;
        let user = shared
            .user_entry(
                &snap,
                &self.attach.pool.database,
                &user_name,
                self.attach.looked_up.as_ref(),
            )
            .ok_or_else(|| SessionError::Removed(format!("user \"{user_name}\"")))?;
        let targets = Arc::new(snap.targets(&db.config, &user));
        self.attach.pool = snap.pool(&shared.pools, &db.config, &user);
        self.relay = relay_config(&snap, self.mode);
        self.attach.snap = snap;
        self.attach.db = db;
        self.attach.targets = targets;
        Ok(())
    }

    /// Holds the request while its database is paused (PAUSE, KILL).
    async fn wait_resumed(&mut self) -> Result<(), SessionError> {
        let control = self.attach.db.control.clone();
        let mut shutdown = self.attach.shutdown.clone();
        loop {
            tokio::select! {
                _ = control.wait_resumed() => return Ok(()),
                _ = shutdown.wait_for(|down| *down) => return Err(SessionError::ShuttingDown),
                _ = self.attach.cancel.slot.wake.notified() => {
                    if self.attach.cancel.slot.info.killed() {
                        return Err(SessionError::Killed);
                    }
                }
            }
        }
    }

    /// Passes what the pinned server sent while the client was idle to the client.
    fn take_pinned_messages(&mut self) -> Result<(), SessionError> {
        let Some(p) = self.pinned.as_mut() else {
            return Ok(());
        };
        match p.lease.take_idle_messages(&mut self.client.wbuf) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.pinned_lost(e)),
        }
    }

    /// The pinned server failed: it is closed, and the client is told what it lost.
    fn pinned_lost(&mut self, cause: BackendError) -> SessionError {
        let pins = self.pinned.take().map(|mut p| {
            p.lease.poison();
            lost_state(p.pins)
        });
        SessionError::PinnedServerLost {
            pins: pins.unwrap_or_default(),
            cause: cause.to_string(),
        }
    }

    /// Answers a request that could not get a server: its messages up to the next Sync (or
    /// the Query) are skipped, then the error and ReadyForQuery are sent.
    async fn reject_request(&mut self, err: SessionError) -> Result<(), SessionError> {
        tracing::warn!(pool = %self.attach.pool.label, "{err}");
        let mut scan = FrontendScanner::default();
        let mut ends_request = false;
        loop {
            match scan.next(&self.client.rbuf)? {
                FrontendEvent::Start(FrontendTag::Terminate) => return Err(err),
                FrontendEvent::Start(
                    FrontendTag::Query | FrontendTag::Sync | FrontendTag::FunctionCall,
                ) => {
                    ends_request = true;
                }
                FrontendEvent::Start(_) => {}
                FrontendEvent::Pass(n) => {
                    self.client.rbuf.advance(n);
                    if ends_request && scan.at_boundary() {
                        break;
                    }
                }
                FrontendEvent::NeedMore => {
                    let read = tokio::time::timeout(
                        self.attach.snap.config.pool.query_wait_timeout,
                        self.client.read_some(),
                    )
                    .await;
                    match read {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return Err(err),
                    }
                }
            }
        }
        self.report(&err, 1).await
    }

    /// Sends `err` as an ERROR followed by `ready` ReadyForQuery messages.
    /// Each of the `ready` requests owed an answer gets the error and its ReadyForQuery, as
    /// PostgreSQL answers each failed request: a driver reading the reply to its second
    /// pipelined request must find an error there, not a bare ReadyForQuery. With none owed
    /// (extended messages not yet ended by a Sync), the error alone.
    async fn report(&mut self, err: &SessionError, ready: u32) -> Result<(), SessionError> {
        let report = err.client_report();
        for i in 0..ready.max(1) {
            if let Some((code, message)) = &report {
                MessageBuilder::error(&mut self.client.wbuf, ErrorSeverity::Error, code, message);
            }
            if i < ready {
                MessageBuilder::ready_for_query(&mut self.client.wbuf, TxStatus::Idle);
            }
        }
        self.client.flush().await?;
        Ok(())
    }
}

/// How an error names the session state lost with a server.
fn lost_state(pins: Pins) -> String {
    if pins.is_empty() {
        "settings and state from its last transaction".to_owned()
    } else {
        pins.to_string()
    }
}

/// Waits until a pinned client's idle server has something to say; forever when unpinned.
async fn pinned_readable(pinned: Option<&Pinned>) -> std::io::Result<()> {
    match pinned {
        Some(p) => read_ready(&p.lease.conn).await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever when there is none.
pub(super) async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
