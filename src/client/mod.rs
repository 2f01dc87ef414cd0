//! One task per client connection: startup, authentication, then the session loop.
//!
//! Owns: the client socket and, while a transaction runs, the server it leased; turning
//! errors into ErrorResponses. Does not: share sockets with other tasks, or parse SQL.

mod auth_query;
mod error;
mod hints;
mod login;
mod prepared;
mod relay;
mod route;
mod session;
mod startup;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BufMut;
use tokio::net::TcpStream;

use crate::app::{Shared, Snapshot};
use crate::cancel::ClientInfo;
use crate::config::{TlsMode, RESERVED_DATABASES};
use crate::limits::Scope;
use crate::net::Conn;
use crate::pool::ServerDefaults;
use crate::protocol::{ErrorSeverity, MessageBuilder, StartupPacket, TxStatus};
use crate::server::ServerTarget;
pub(crate) use auth_query::AuthCache;
pub(crate) use error::{Deadline, SessionError};
pub(crate) use route::Reason;
pub(crate) use startup::StartupRequest;

/// Bytes reserved for what a login answers (AuthenticationOk, a dozen ParameterStatus,
/// BackendKeyData, ReadyForQuery): written at once instead of growing the buffer.
const LOGIN_ANSWER: usize = 512;

/// How long a cancel request may take to reach its server.
const CANCEL_FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long weir tries to deliver a final error before closing.
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// The first byte of a TLS handshake record: a client starting TLS without SSLRequest.
const TLS_HANDSHAKE: u8 = 0x16;

/// Serves one client connection to the end. Never panics on input; every failure the
/// client can still hear about is sent as an ErrorResponse.
pub(crate) async fn serve(socket: TcpStream, shared: Arc<Shared>) {
    let mut conn = Conn::new(socket);
    let snap = shared.snapshot();
    let limit = snap.config.listen.client_login_timeout;
    let mut shutdown = shared.shutdown.subscribe();
    let started = std::sync::atomic::AtomicBool::new(false);
    // A client still logging in when shutdown starts is told at once, not waited for.
    let login = tokio::select! {
        // Boxed: the login's state is kilobytes, and the timeout would otherwise copy it in.
        r = tokio::time::timeout(limit, Box::pin(start(&mut conn, &shared, &snap, &started))) => match r {
            Ok(result) => result,
            Err(_) => Err(SessionError::Timeout(Deadline::Login, limit)),
        },
        _ = shutdown.wait_for(|down| *down) => Err(SessionError::ShuttingDown),
    };
    match login {
        Ok(Some(Attach::Pooled(attach))) => {
            let mut session = attach.into_session(conn);
            if let Err(err) = session.run().await {
                tracing::debug!("client session ended: {err}");
                if session.may_report() {
                    send_fatal(&mut session.client, &err).await;
                }
            }
            session.client.close(FINAL_WRITE_TIMEOUT).await;
        }
        Ok(Some(Attach::Admin(cancel))) => {
            if let Err(err) = crate::admin::serve(&mut conn, &shared, &cancel).await {
                tracing::debug!("admin session ended: {err}");
                send_fatal(&mut conn, &err).await;
            }
            conn.close(FINAL_WRITE_TIMEOUT).await;
        }
        Ok(None) => {}
        // Before a whole startup packet arrived there is no protocol to speak yet (shutdown).
        Err(SessionError::ShuttingDown) if !started.load(Ordering::Relaxed) => {}
        Err(err) => {
            tracing::debug!("client login failed: {err}");
            if matches!(err, SessionError::AuthFailed(_)) {
                metrics::counter!(crate::metrics::names::AUTH_FAILURES_TOTAL).increment(1);
                // auth.failure_delay, once more for each failure from the same address in
                // the last minute (up to 10 s): a password guesser waits longer for each
                // answer (not past the start of a shutdown).
                let peer = conn.io.tcp().and_then(|t| t.peer_addr().ok());
                let count = peer.map_or(1, |p| shared.failures.record(p.ip()));
                let delay =
                    tokio::time::sleep(failure_delay(snap.config.auth.failure_delay, count));
                tokio::select! {
                    _ = delay => {}
                    _ = shutdown.wait_for(|down| *down) => {}
                }
            }
            send_fatal(&mut conn, &err).await;
            conn.close(FINAL_WRITE_TIMEOUT).await;
        }
    }
}

/// How long the `count`th recent failure from one address waits: `base` times `count`,
/// at most `MAX_FAILURE_DELAY`.
fn failure_delay(base: Duration, count: u32) -> Duration {
    base.saturating_mul(count)
        .min(crate::config::MAX_FAILURE_DELAY)
}

/// Writes a FATAL error and gives up on the connection.
async fn send_fatal(conn: &mut Conn, err: &SessionError) {
    if matches!(err, SessionError::Protocol(_)) {
        metrics::counter!(crate::metrics::names::PROTOCOL_ERRORS_TOTAL).increment(1);
    }
    if let Some((code, message)) = err.client_report() {
        MessageBuilder::error(&mut conn.wbuf, ErrorSeverity::Fatal, &code, &message);
        let _ = tokio::time::timeout(FINAL_WRITE_TIMEOUT, conn.flush()).await;
    }
}

/// Startup and login. `Ok(None)` when the connection was a cancel request.
async fn start(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    snap: &Arc<Snapshot>,
    started: &std::sync::atomic::AtomicBool,
) -> Result<Option<Attach>, SessionError> {
    let Some((minor, raw)) = first_packets(conn, shared, snap, started).await? else {
        return Ok(None);
    };
    let request = StartupRequest::parse(raw)?;
    if minor > 0 || !request.protocol_options.is_empty() {
        MessageBuilder::negotiate_protocol_version(&mut conn.wbuf, &request.protocol_options);
    }
    let max = snap.config.pool.max_client_conn.get();
    if shared.clients.load(Ordering::Relaxed) > max as usize {
        return Err(SessionError::TooManyClients(max));
    }
    if *shared.shutdown.borrow() {
        return Err(SessionError::ShuttingDown);
    }
    let listed = snap.users.get(&request.user);
    let from_query = listed.is_none();
    let entry = match (listed, snap.databases.get(&request.database)) {
        (Some(listed), _) => Some(listed),
        (None, Some(db)) => shared.auth_cache.lookup(snap, db, &request.user).await?,
        (None, None) => None,
    };
    // SCRAM-SHA-256-PLUS binds to the certificate this connection was accepted with,
    // which is this snapshot's.
    let binding = snap
        .tls
        .as_ref()
        .filter(|_| conn.io.is_tls())
        .and_then(|offered| offered.end_point.clone());
    let user = login::authenticate(conn, &request.user, entry, &snap.users, binding).await?;
    // A RELOAD during the login: the client starts on the new configuration, so it cannot
    // bring back a pool with the old hosts.
    let current;
    let snap = if shared.generation() == snap.generation {
        snap
    } else {
        current = shared.snapshot();
        // Credentials that changed meanwhile (a revoked password) do not let it in.
        let credentials = |s: &Snapshot| {
            let entry = s.config.user(&user.name).map(|u| {
                let (_, password, previous, method) = u.credentials();
                (password.map(str::to_owned), previous.to_vec(), method)
            });
            (entry, s.config.auth.method)
        };
        if !Arc::ptr_eq(&snap.users, &current.users) && credentials(snap) != credentials(&current) {
            return Err(SessionError::AuthFailed(user.name.clone()));
        }
        &current
    };
    // The entry the password was checked against is the one the session keeps.
    let looked_up = from_query.then(|| user.clone());
    let Some(user) = shared.user_entry(snap, &request.database, &user.name, looked_up.as_ref())
    else {
        return Err(SessionError::Removed(format!("user \"{}\"", user.name)));
    };
    let tcp = conn.io.tcp();
    let peer = tcp.and_then(|t| t.peer_addr().ok());
    let local = tcp.and_then(|t| t.local_addr().ok());
    let info = || {
        let app = request.params.get("application_name").unwrap_or_default();
        ClientInfo::new(peer, local, &user.name, &request.database, app)
            .with_tls(conn.io.tls_description())
    };
    if RESERVED_DATABASES.contains(&request.database.as_str()) {
        if !snap.config.admin.is_admin(&user.name) {
            return Err(SessionError::NotAuthorized(format!(
                "user \"{}\" is not an admin: list it in admin.users to use the admin console",
                user.name
            )));
        }
        let cancel = shared.cancel.register(info());
        crate::admin::greet(&mut conn.wbuf, cancel.process_id, cancel.secret_key());
        conn.flush().await?;
        return Ok(Some(Attach::Admin(cancel)));
    }
    let db = snap
        .databases
        .get(&request.database)
        .cloned()
        .ok_or_else(|| SessionError::UnknownDatabase(request.database.clone()))?;
    if db.control.is_disabled() {
        return Err(SessionError::Disabled(db.config.name.clone()));
    }
    let user_limit = snap.config.user(&user.name).and_then(|u| u.max_client_conn);
    let admitted = shared
        .limits
        .admit([
            (Scope::User, &user.name, user_limit),
            (Scope::Database, &db.config.name, db.config.max_client_conn),
        ])
        .map_err(SessionError::LimitReached)?;
    let targets: Arc<Vec<ServerTarget>> = Arc::new(snap.targets(&db.config, &user));
    let pool = snap.pool(&shared.pools, &db.config, &user);
    let defaults = match pool.server_defaults.get() {
        Some(d) => d,
        None => {
            // The first client of a pool: log in to a server to learn what PostgreSQL reports.
            let host = db
                .cluster
                .primary(
                    &targets,
                    snap.config.pool.server_connect_timeout,
                    tokio::time::Instant::now() + snap.config.cluster.failover_timeout,
                )
                .await?;
            let wait = snap.config.pool.query_wait_timeout;
            let asked = std::time::Instant::now();
            let mut lease = pool.checkout(host, asked, wait).await?;
            // Set by the checkout already, unless another login's came first.
            let defaults = pool
                .server_defaults
                .get_or_init(|| ServerDefaults::new(lease.params.reported()));
            lease.mark_clean();
            drop(lease);
            defaults
        }
    };
    let mut desired = defaults.client.clone();
    for (name, value) in request.params.iter() {
        desired.set(name, value);
    }
    let cancel = shared.cancel.register(info());
    // Room for the whole answer at once (about 400 bytes), not grown message by message.
    conn.wbuf.reserve(LOGIN_ANSWER);
    MessageBuilder::auth_ok(&mut conn.wbuf);
    for (name, value) in defaults.reported.iter() {
        let value = desired.get(name).unwrap_or(value);
        MessageBuilder::parameter_status(&mut conn.wbuf, name, value);
    }
    MessageBuilder::backend_key_data(&mut conn.wbuf, cancel.process_id, cancel.secret_key());
    MessageBuilder::ready_for_query(&mut conn.wbuf, TxStatus::Idle);
    conn.flush().await?;
    Ok(Some(Attach::Pooled(Box::new(session::Attach {
        state: session::ClientState {
            desired,
            startup: request.params.clone(),
            statements: Default::default(),
            scratch: Default::default(),
            route: request.route,
            min_lsn: 0,
        },
        snap: snap.clone(),
        db,
        pool,
        targets,
        cancel,
        shutdown: shared.shutdown.subscribe(),
        shared: shared.clone(),
        looked_up,
        _admitted: admitted,
    }))))
}

/// The packets before the StartupMessage: TLS (direct, or after SSLRequest), GSSENCRequest
/// (refused), a CancelRequest (forwarded; then `None`). Returns the StartupMessage's minor
/// version and parameters, or `None` when there is no login to run.
async fn first_packets(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    snap: &Snapshot,
    started: &std::sync::atomic::AtomicBool,
) -> Result<Option<(u16, Vec<(String, String)>)>, SessionError> {
    let tls = snap.tls.as_ref().map(|offered| &offered.config);
    if conn.rbuf.is_empty() && conn.read_some().await? == 0 {
        return Ok(None);
    }
    // Direct TLS (PostgreSQL 17's sslnegotiation=direct): a ClientHello, no SSLRequest.
    // Without TLS configured it is read as a startup packet and refused (`08P01`).
    if let (Some(config), Some(&TLS_HANDSHAKE)) = (tls, conn.rbuf.first()) {
        conn.accept_tls(config.clone()).await?;
        if conn.io.alpn() != Some(crate::net::tls::ALPN_POSTGRESQL) {
            return Err(SessionError::NotAuthorized(
                "direct TLS connections must name the ALPN protocol \"postgresql\"".to_owned(),
            ));
        }
    }
    let (minor, raw) = loop {
        let Some(packet) = conn.read_startup().await? else {
            return Ok(None);
        };
        match packet {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                if !conn.rbuf.is_empty() {
                    // Bytes sent before our answer would be read as if they were encrypted.
                    return Err(crate::protocol::ProtocolError::Malformed {
                        what: "SSLRequest (data sent before the server's answer)",
                    }
                    .into());
                }
                let offer = tls
                    .filter(|_| matches!(packet, StartupPacket::SslRequest) && !conn.io.is_tls());
                conn.wbuf.put_u8(if offer.is_some() { b'S' } else { b'N' });
                conn.flush().await?;
                if let Some(config) = offer {
                    conn.accept_tls(config.clone()).await?;
                }
            }
            StartupPacket::Cancel {
                process_id,
                secret_key,
            } => {
                if let Some(target) = shared.cancel.lookup(process_id, secret_key) {
                    if let Err(e) = crate::cancel::forward(target, CANCEL_FORWARD_TIMEOUT).await {
                        tracing::warn!("cannot forward cancel request: {e}");
                    }
                }
                return Ok(None);
            }
            StartupPacket::Startup { minor, params } => {
                started.store(true, Ordering::Relaxed);
                break (minor, params);
            }
        }
    };
    let required = snap.config.tls.as_ref().map(|t| t.mode) == Some(TlsMode::Require);
    if required && !conn.io.is_tls() {
        return Err(SessionError::NotAuthorized(
            "weir accepts only TLS connections (tls.mode = \"require\"): connect with sslmode=require"
                .to_owned(),
        ));
    }
    Ok(Some((minor, raw)))
}

/// What a login leads to.
enum Attach {
    /// A client of a pooled database.
    Pooled(Box<session::Attach>),
    /// An admin console session.
    Admin(crate::cancel::CancelHandle),
}
