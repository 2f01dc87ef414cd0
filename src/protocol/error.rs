//! Errors of the wire codec.

/// What was wrong with bytes a peer sent. Each variant is a protocol violation
/// (SQLSTATE 08P01 toward a client; a broken connection toward a server).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtocolError {
    /// A message length outside what the protocol allows or weir accepts.
    #[error("invalid message length {len} for message type {tag:?}")]
    BadLength {
        /// The message type byte as received.
        tag: char,
        /// The announced length.
        len: usize,
    },
    /// A client message longer than `limits.max_message_size`.
    #[error("message of type {tag:?} is {len} bytes, more than limits.max_message_size ({max})")]
    TooLarge {
        /// The message type byte as received.
        tag: char,
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The startup packet length is out of range.
    #[error("invalid startup packet length {0}")]
    BadStartupLength(usize),
    /// A message type byte that is not valid from a client at this point.
    #[error("unexpected message type {0:?}")]
    UnexpectedTag(char),
    /// A message whose body does not match its type's layout.
    #[error("malformed {what} message")]
    Malformed {
        /// Which message was malformed.
        what: &'static str,
    },
    /// A protocol major version weir does not speak.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0")]
    UnsupportedVersion {
        /// Major version requested.
        major: u16,
        /// Minor version requested.
        minor: u16,
    },
}
