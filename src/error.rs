//! SQLSTATE codes weir itself reports, and the trait that maps a layer's error to one.
//!
//! Errors a server sends are relayed byte for byte and never pass through here.

/// A five-character SQLSTATE code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SqlState(pub(crate) &'static str);

impl SqlState {
    /// 08P01: the peer broke the protocol.
    pub(crate) const PROTOCOL_VIOLATION: Self = Self("08P01");
    /// 08006: the server connection was lost.
    pub(crate) const CONNECTION_FAILURE: Self = Self("08006");
    /// 08001: no server could be reached.
    pub(crate) const UNABLE_TO_CONNECT: Self = Self("08001");
    /// 28P01: wrong password.
    pub(crate) const INVALID_PASSWORD: Self = Self("28P01");
    /// 28000: not allowed to log in this way.
    pub(crate) const INVALID_AUTHORIZATION: Self = Self("28000");
    /// 3D000: no such database.
    pub(crate) const INVALID_CATALOG_NAME: Self = Self("3D000");
    /// 53300: too many clients.
    pub(crate) const TOO_MANY_CONNECTIONS: Self = Self("53300");
    /// 57P02: the server crashed (another backend did) and is restarting.
    pub(crate) const CRASH_SHUTDOWN: Self = Self("57P02");
    /// 57P01: weir is shutting down.
    pub(crate) const ADMIN_SHUTDOWN: Self = Self("57P01");
    /// 57P03: cannot connect now.
    pub(crate) const CANNOT_CONNECT_NOW: Self = Self("57P03");
    /// 0A000: a feature weir does not offer.
    pub(crate) const FEATURE_NOT_SUPPORTED: Self = Self("0A000");
    /// 57014: a statement was cancelled on a timeout.
    pub(crate) const QUERY_CANCELED: Self = Self("57014");
    /// 25P03: idle-in-transaction timeout.
    pub(crate) const IDLE_IN_TRANSACTION_TIMEOUT: Self = Self("25P03");
    /// 57P05: idle-session timeout.
    pub(crate) const IDLE_SESSION_TIMEOUT: Self = Self("57P05");
    /// 22023: a setting was given a value it does not take.
    pub(crate) const INVALID_PARAMETER_VALUE: Self = Self("22023");
    /// 54000: a limit weir puts on a session was reached.
    pub(crate) const PROGRAM_LIMIT_EXCEEDED: Self = Self("54000");
    /// 42601: a command weir does not know (admin console).
    pub(crate) const SYNTAX_ERROR: Self = Self("42601");
    /// 42704: an admin command named a database, client or setting that does not exist.
    pub(crate) const UNDEFINED_OBJECT: Self = Self("42704");
    /// 55000: the database does not accept connections now (DISABLE).
    pub(crate) const OBJECT_NOT_IN_PREREQUISITE_STATE: Self = Self("55000");
    /// 01000: a warning with no more specific class.
    pub(crate) const WARNING: Self = Self("01000");
    /// F0000: the configuration is not valid (RELOAD, SET).
    pub(crate) const CONFIG_FILE_ERROR: Self = Self("F0000");

    /// The code as text.
    pub(crate) fn code(self) -> &'static str {
        self.0
    }
}
