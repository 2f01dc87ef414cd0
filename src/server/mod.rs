//! One server connection: connect, log in, remember the server's keys and parameters.
//!
//! Owns: `ServerConn` and its login. Does not: pool connections (see `pool`), or decide
//! which client uses it.

mod login;
pub(crate) mod params;
pub(crate) mod prepared;
pub(crate) mod probe;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::auth::ServerPassword;
use crate::cancel::CancelTarget;
use crate::config::ServerTlsSettings;
use crate::net::{Conn, NetError};
use crate::protocol::{
    decode_data_row, BackendMessage, ErrorFields, MessageBuilder, ProtocolError, TxStatus,
};
pub(crate) use params::{ParamSet, ServerParams};

/// Moves one whole NotificationResponse or NoticeResponse from the front of `buf` to `sink`.
/// Returns whether it did.
fn take_async_message(buf: &mut BytesMut, sink: &mut BytesMut) -> Result<bool, ProtocolError> {
    let Some(&[tag @ (b'A' | b'N'), a, b, c, d]) = buf.get(..5) else {
        return Ok(false);
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if !(4..=crate::protocol::MAX_INSPECTED_LEN).contains(&len) {
        return Err(ProtocolError::BadLength {
            tag: char::from(tag),
            len,
        });
    }
    if buf.len() < len + 1 {
        return Ok(false);
    }
    sink.extend_from_slice(&buf.split_to(len + 1));
    Ok(true)
}

/// Where and as whom to open server connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerTarget {
    /// Host name or address.
    pub(crate) host: String,
    /// TCP port.
    pub(crate) port: u16,
    /// Database name on the server.
    pub(crate) dbname: String,
    /// Role to log in as.
    pub(crate) user: String,
    /// What weir can answer the server's password challenge with.
    pub(crate) password: ServerPassword,
    /// Whether and how to use TLS.
    pub(crate) tls: ServerTls,
}

impl ServerTarget {
    /// False while weir holds only a SCRAM verifier for the user and no client has logged
    /// in to reveal the key (pass-through): a login would surely fail.
    pub(crate) fn can_log_in(&self) -> bool {
        match &self.password {
            ServerPassword::Scram(pass) => pass.learned(),
            _ => true,
        }
    }
}

/// TLS toward the servers: `[server_tls]`, and the client configuration built from it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerTls {
    /// As configured.
    pub(crate) settings: ServerTlsSettings,
    /// `None` with `server_tls.mode = "disable"`.
    pub(crate) config: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Two are the same when configured the same (the CA file's path, not its contents): a
/// RELOAD that keeps `[server_tls]` keeps the pools.
impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        self.settings == other.settings
    }
}

impl Eq for ServerTls {}

/// Why a server connection could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    /// TCP connect failed.
    #[error("cannot connect to server {addr}: {source}")]
    Connect {
        /// host:port tried.
        addr: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Connect plus login took longer than `server_connect_timeout`.
    #[error("server {0} did not complete login in time")]
    LoginTimeout(String),
    /// The server refused us with an ErrorResponse; relayed to the client as is.
    #[error("server refused: {} ({})", .0.message, .0.code)]
    Refused(ErrorFields),
    /// The server asked for a password we do not have in a usable form.
    #[error("cannot log in to server as {user}: {reason}")]
    NoUsablePassword {
        /// The role.
        user: String,
        /// What is missing.
        reason: &'static str,
    },
    /// The server's SCRAM exchange was invalid.
    #[error("SCRAM login to server failed: {0}")]
    Scram(String),
    /// The server asked for an authentication method weir does not speak.
    #[error("server requested unsupported authentication method {0}")]
    UnsupportedAuth(i32),
    /// Socket or framing trouble.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The server closed the connection.
    #[error("server closed the connection unexpectedly")]
    Closed,
    /// TLS could not be set up as `server_tls.mode` asks (refused, bad certificate, bytes
    /// that are not a TLS handshake).
    #[error("TLS to server {addr}: {reason}")]
    Tls {
        /// host:port.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

impl From<io::Error> for BackendError {
    fn from(e: io::Error) -> Self {
        Self::Net(NetError::Io(e))
    }
}

impl From<ProtocolError> for BackendError {
    fn from(e: ProtocolError) -> Self {
        Self::Net(NetError::Protocol(e))
    }
}

/// A logged-in server connection, idle between transactions when in the pool.
#[derive(Debug)]
pub(crate) struct ServerConn {
    /// The socket and its buffers; the relay reads server bytes into `conn.rbuf`.
    pub(crate) conn: Conn,
    /// Address connected to, for cancel requests.
    pub(crate) peer: SocketAddr,
    /// The server's BackendKeyData.
    pub(crate) process_id: i32,
    /// The server's BackendKeyData.
    pub(crate) secret_key: i32,
    /// Parameters as the server's session has them now.
    pub(crate) params: ServerParams,
    /// weir's named prepared statements this server holds (transaction mode).
    pub(crate) prepared: prepared::PreparedSet,
    /// Login time, for `server_lifetime`.
    pub(crate) created: Instant,
    /// False once anything went wrong mid-use: such a connection is closed, never reused.
    pub(crate) clean: bool,
    /// Its state as SHOW SERVERS prints it.
    pub(crate) info: std::sync::Arc<crate::stats::ServerInfo>,
    /// The pool's reconnect generation when it logged in: RECONNECT retires older ones.
    pub(crate) generation: u64,
}

/// How long a Terminate, and a TLS close_notify after it, may take to go out.
const TERMINATE_LIMIT: Duration = Duration::from_secs(1);

impl ServerConn {
    /// Connects and logs in, all within `limit`.
    pub(crate) async fn connect(
        target: &ServerTarget,
        limit: Duration,
    ) -> Result<Self, BackendError> {
        let addr = format!("{}:{}", target.host, target.port);
        match tokio::time::timeout(limit, Self::connect_inner(target, &addr)).await {
            Ok(result) => result,
            Err(_) => Err(BackendError::LoginTimeout(addr)),
        }
    }

    async fn connect_inner(target: &ServerTarget, addr: &str) -> Result<Self, BackendError> {
        let open = || async {
            TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(|source| BackendError::Connect {
                    addr: addr.to_owned(),
                    source,
                })
        };
        let mut io = open().await?;
        if let Some(config) = &target.tls.config {
            let mut conn = Conn::new(io);
            match login::start_tls(&mut conn, target, config.clone(), addr).await? {
                login::Negotiated::Ready => return Self::log_in(conn, target).await,
                login::Negotiated::Reconnect => io = open().await?,
            }
        }
        Self::log_in(Conn::new(io), target).await
    }

    /// Logs in on a connection that is ready for the StartupMessage.
    async fn log_in(mut conn: Conn, target: &ServerTarget) -> Result<Self, BackendError> {
        let tcp = conn.io.tcp().ok_or(BackendError::Closed)?;
        let peer = tcp.peer_addr()?;
        let local = tcp.local_addr().ok();
        let login = login::login(&mut conn, target).await?;
        Ok(Self {
            info: std::sync::Arc::new(crate::stats::ServerInfo::new(
                login.process_id,
                local,
                conn.io.tls_description(),
            )),
            generation: 0,
            conn,
            peer,
            process_id: login.process_id,
            secret_key: login.secret_key,
            params: ServerParams::new(login.params),
            prepared: prepared::PreparedSet::default(),
            created: Instant::now(),
            clean: true,
        })
    }

    /// Where a cancel for the query running on this connection must go.
    pub(crate) fn cancel_target(&self) -> CancelTarget {
        CancelTarget {
            addr: self.peer,
            process_id: self.process_id,
            secret_key: self.secret_key,
        }
    }

    /// Whether an idle connection is still usable: nothing unread, not closed by the server,
    /// so a pooled connection the server dropped is never handed out.
    ///
    /// `since` is the time it sat idle, since its last lease ended. One returned up to
    /// `RECENT` ago (a busy pool's) is asked of the reactor,
    /// which knows without a system call whether the socket turned readable (a close, or a
    /// message); only then is it read to tell which. One idle longer, where a server-side
    /// timeout or a restart may have closed it moments ago, before the reactor noticed, is
    /// read (one non-blocking read) every time.
    pub(crate) fn check_idle(&mut self, since: Duration) -> bool {
        /// Returned up to this long ago, the reactor's word is taken.
        const RECENT: Duration = Duration::from_millis(100);
        if !self.clean || !self.conn.rbuf.is_empty() {
            return false;
        }
        (since <= RECENT && self.conn.io.reactor_saw_nothing()) || self.conn.io.nothing_to_read()
    }

    /// Runs one simple query and returns its rows as text (NULL as `None`).
    /// Used for weir's own statements (probes, reset), never for client traffic.
    pub(crate) async fn simple_query(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, BackendError> {
        self.query_passing_async(sql, &mut BytesMut::new()).await
    }

    /// `simple_query` on a server that belongs to a client's session: notifications and
    /// notices that arrive meanwhile are the client's, and are appended to `sink` as is.
    pub(crate) async fn query_passing_async(
        &mut self,
        sql: &str,
        sink: &mut BytesMut,
    ) -> Result<Vec<Vec<Option<String>>>, BackendError> {
        MessageBuilder::query(&mut self.conn.wbuf, sql);
        self.rows_until_ready(sink).await
    }

    /// Runs `sql` with one text parameter, `$1`, bound in the extended protocol (never
    /// spliced into the text), and returns its rows as text. For weir's own lookups.
    pub(crate) async fn query_with_param(
        &mut self,
        sql: &str,
        param: &str,
    ) -> Result<Vec<Vec<Option<String>>>, BackendError> {
        MessageBuilder::query_with_param(&mut self.conn.wbuf, sql, param)?;
        self.rows_until_ready(&mut BytesMut::new()).await
    }

    /// Flushes what is queued and reads the rows that come back, up to ReadyForQuery.
    async fn rows_until_ready(
        &mut self,
        sink: &mut BytesMut,
    ) -> Result<Vec<Vec<Option<String>>>, BackendError> {
        self.conn.flush().await?;
        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            let msg = loop {
                if take_async_message(&mut self.conn.rbuf, sink)? {
                    continue;
                }
                if let Some(row) = decode_data_row(&mut self.conn.rbuf)? {
                    rows.push(row);
                    continue;
                }
                if let Some(msg) = BackendMessage::decode(&mut self.conn.rbuf)? {
                    break msg;
                }
                if self.conn.read_some().await? == 0 {
                    self.clean = false;
                    return Err(BackendError::Closed);
                }
            };
            match msg {
                BackendMessage::ReadyForQuery(status) => {
                    if status != TxStatus::Idle {
                        self.clean = false;
                    }
                    return match failure {
                        Some(fields) => Err(BackendError::Refused(fields)),
                        None => Ok(rows),
                    };
                }
                BackendMessage::ParameterStatus { name, value } => {
                    self.params.report(&name, &value)
                }
                BackendMessage::Error(fields) => failure = Some(fields),
                _ => {}
            }
        }
    }

    /// Passes on what an idle server sent on its own to the client holding it (a pinned
    /// client between transactions): notifications, notices and parameter changes go to
    /// `sink`. Anything else means the session is over (a FATAL, or the server closed).
    pub(crate) fn take_idle_messages(&mut self, sink: &mut BytesMut) -> Result<(), BackendError> {
        loop {
            match self.conn.try_read() {
                Ok(0) => {
                    self.clean = false;
                    return Err(BackendError::Closed);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        loop {
            if take_async_message(&mut self.conn.rbuf, sink)? {
                continue;
            }
            let Some(&[tag, a, b, c, d]) = self.conn.rbuf.get(..5) else {
                return Ok(());
            };
            let total = u32::from_be_bytes([a, b, c, d]) as usize + 1;
            if tag == b'S' && self.conn.rbuf.len() >= total {
                sink.extend_from_slice(self.conn.rbuf.get(..total).unwrap_or_default());
            }
            match BackendMessage::decode(&mut self.conn.rbuf)? {
                None => return Ok(()),
                Some(BackendMessage::ParameterStatus { name, value }) => {
                    self.params.report(&name, &value);
                }
                Some(BackendMessage::Error(fields)) => {
                    self.clean = false;
                    return Err(BackendError::Refused(fields));
                }
                Some(_) => {
                    self.clean = false;
                    return Err(ProtocolError::UnexpectedTag(char::from(tag)).into());
                }
            }
        }
    }

    /// Says goodbye politely; errors do not matter, the socket closes either way.
    pub(crate) async fn terminate(mut self) {
        let mut buf = BytesMut::new();
        MessageBuilder::terminate(&mut buf);
        self.conn.wbuf = buf;
        // A server that did not take the Terminate in time gets no close_notify either.
        if let Ok(Ok(())) = tokio::time::timeout(TERMINATE_LIMIT, self.conn.flush()).await {
            self.conn.close(TERMINATE_LIMIT).await;
        }
    }
}
