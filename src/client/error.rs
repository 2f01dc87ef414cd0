//! Everything that can end a client's request or session, and how each is told to the client.

use std::time::Duration;

use crate::cluster::ClusterError;
use crate::error::SqlState;
use crate::net::NetError;
use crate::pool::PoolError;
use crate::protocol::{ErrorFields, ProtocolError};
use crate::server::BackendError;

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// `listen.client_login_timeout`: startup and authentication.
    Login,
    /// `pool.client_idle_timeout`: no transaction for too long.
    ClientIdle,
    /// `pool.idle_transaction_timeout`: idle inside a transaction.
    IdleInTransaction,
    /// `pool.query_timeout`: a statement ran too long.
    Query,
    /// `pool.query_wait_timeout`: the client went silent in the middle of a message while
    /// holding a server.
    ClientStall,
}

/// Why a client's request or session failed. Only this layer turns errors into ErrorResponses.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// The client broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    /// The client socket failed or closed mid-message; nobody to tell.
    #[error("client connection: {0}")]
    Io(#[from] std::io::Error),
    /// A deadline passed.
    #[error("{0:?} timeout after {1:?}")]
    Timeout(Deadline, Duration),
    /// Wrong password (or unknown user, which looks the same on purpose).
    #[error("password authentication failed for user \"{0}\"")]
    AuthFailed(String),
    /// The login was refused for a reason other than a password.
    #[error("{0}")]
    NotAuthorized(String),
    /// No such database in weir's configuration.
    #[error("database \"{0}\" does not exist")]
    UnknownDatabase(String),
    /// `pool.max_client_conn` reached.
    #[error("sorry, too many clients already (max_client_conn = {0})")]
    TooManyClients(u32),
    /// A user's or a database's `max_client_conn` reached.
    #[error("too many connections for {} \"{}\" (max_client_conn = {})", .0.scope.noun(), .0.name, .0.max)]
    LimitReached(crate::limits::LimitReached),
    /// No server connection.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// No primary to send the transaction to.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The server went away mid-transaction.
    #[error("server connection lost{}", .0.as_ref().map(|f| format!(": {}", f.message)).unwrap_or_default())]
    ServerLost(Option<ErrorFields>),
    /// The server a pinned client's session state lived on is gone, and that state with it.
    #[error("server connection lost, and with it this session's {pins}: {cause}")]
    PinnedServerLost {
        /// The kinds of state that were lost.
        pins: String,
        /// What happened to the server.
        cause: String,
    },
    /// A read found no replica and `routing.primary_reads = "never"`.
    #[error("no replica of database {0} can serve reads now (down, or lagging past routing.max_replica_lag), and routing.primary_reads = \"never\" keeps reads off the primary")]
    NoReplica(String),
    /// A setting weir keeps itself (`weir.route`) was given a bad value.
    #[error("{0}")]
    InvalidValue(String),
    /// weir is shutting down.
    #[error("weir is shutting down")]
    ShuttingDown,
    /// An administrator disconnected the client (KILL, KILL_CLIENT).
    #[error("terminating connection due to administrator command")]
    Killed,
    /// DISABLE keeps new clients out of this database.
    #[error("database \"{0}\" is not currently accepting connections (DISABLE)")]
    Disabled(String),
    /// RELOAD removed the client's database or user.
    #[error("terminating connection: {0} was removed from the configuration (RELOAD)")]
    Removed(String),
    /// `auth.query` could not be run for this user, who is not listed (why is logged).
    #[error("cannot check the password of user \"{user}\": looking it up with auth.query failed (weir's log says why)")]
    AuthQuery {
        /// The user being looked up.
        user: String,
    },
    /// Something weir does not offer.
    #[error("{0}")]
    Unsupported(String),
}

impl From<NetError> for SessionError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Io(e) => Self::Io(e),
            NetError::Protocol(e) => Self::Protocol(e),
            NetError::Truncated => Self::Io(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

impl SessionError {
    /// The SQLSTATE and message the client sees, or `None` when the client is gone.
    pub(crate) fn client_report(&self) -> Option<(String, String)> {
        let state = |s: SqlState| s.code().to_owned();
        Some(match self {
            Self::Io(_) => return None,
            Self::Protocol(_) => (state(SqlState::PROTOCOL_VIOLATION), self.to_string()),
            Self::Timeout(Deadline::Login, _) => (state(SqlState::PROTOCOL_VIOLATION), "login timed out (client_login_timeout)".into()),
            Self::Timeout(Deadline::ClientIdle, _) => (state(SqlState::IDLE_SESSION_TIMEOUT), "terminating connection due to idle timeout (client_idle_timeout)".into()),
            Self::Timeout(Deadline::IdleInTransaction, _) => (
                state(SqlState::IDLE_IN_TRANSACTION_TIMEOUT),
                "terminating connection due to idle-in-transaction timeout (idle_transaction_timeout)".into(),
            ),
            Self::Timeout(Deadline::Query, _) => (state(SqlState::QUERY_CANCELED), "canceling statement due to query_timeout".into()),
            Self::Timeout(Deadline::ClientStall, limit) => (
                state(SqlState::PROTOCOL_VIOLATION),
                format!("terminating connection: the client sent part of a message and nothing more for {limit:?} while holding a server (query_wait_timeout)"),
            ),
            Self::AuthFailed(_) => (state(SqlState::INVALID_PASSWORD), self.to_string()),
            Self::NotAuthorized(_) => (state(SqlState::INVALID_AUTHORIZATION), self.to_string()),
            Self::UnknownDatabase(_) => (state(SqlState::INVALID_CATALOG_NAME), self.to_string()),
            Self::TooManyClients(_) | Self::LimitReached(_) => {
                (state(SqlState::TOO_MANY_CONNECTIONS), self.to_string())
            }
            Self::Pool(PoolError::Connect {
                cause: BackendError::Refused(fields),
                ..
            }) => (
                fields.code_or(SqlState::UNABLE_TO_CONNECT.code()).to_owned(),
                fields.message.clone(),
            ),
            Self::Pool(PoolError::Closed(_)) => (state(SqlState::CANNOT_CONNECT_NOW), self.to_string()),
            Self::InvalidValue(_) => (state(SqlState::INVALID_PARAMETER_VALUE), self.to_string()),
            Self::Pool(_) | Self::Cluster(_) | Self::NoReplica(_) | Self::AuthQuery { .. } => {
                (state(SqlState::UNABLE_TO_CONNECT), self.to_string())
            }
            Self::ServerLost(_) | Self::PinnedServerLost { .. } => (state(SqlState::CONNECTION_FAILURE), self.to_string()),
            Self::ShuttingDown => (state(SqlState::ADMIN_SHUTDOWN), "terminating connection: weir is shutting down".into()),
            Self::Killed | Self::Removed(_) => (state(SqlState::ADMIN_SHUTDOWN), self.to_string()),
            Self::Disabled(_) => (state(SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE), self.to_string()),
            Self::Unsupported(_) => (state(SqlState::FEATURE_NOT_SUPPORTED), self.to_string()),
        })
    }
}
