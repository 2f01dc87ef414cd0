//! The PostgreSQL wire codec: framing, typed tags per direction, startup packets,
//! and the few messages weir builds or inspects itself.
//!
//! Owns: every byte layout of protocol 3.0. Every other module goes through here.
//! Does not: do I/O, know about tokio, pools or configuration.

mod backend;
mod error;
mod frame;
mod frontend;
#[cfg(test)]
mod props;
mod scan;
mod startup;

pub(crate) use backend::{
    decode_data_row, AuthRequest, BackendMessage, ErrorFields, ErrorSeverity, MessageBuilder,
    TxStatus,
};
pub(crate) use error::ProtocolError;
pub(crate) use frame::{decode, Frame};
pub(crate) use frontend::{Extended, FrontendTag, LoginMessage, Request, Target};
pub(crate) use scan::{
    error_fields, parameter_status, BackendEvent, BackendScanner, BackendTag, FrontendEvent,
    FrontendScanner,
};
pub(crate) use startup::{decode_startup, StartupPacket, SSL_REQUEST};

/// PostgreSQL never accepts a message larger than this (MaxAllocSize - 1), and neither
/// does weir; `limits.max_message_size` may lower it.
pub(crate) const MAX_MESSAGE_LEN: usize = 0x3fff_ffff;

/// Largest message weir accepts whole (login messages, error responses, ...).
/// Larger messages are only ever streamed through, never buffered.
pub(crate) const MAX_INSPECTED_LEN: usize = 1 << 20;

/// Replaces `remove` bytes at `at` in `buf` with `insert`, keeping everything after in
/// order. Used to rename statements in place and to slip weir's own messages into a
/// stream; the cost is moving the bytes after `at`, which are few on these paths.
/// Done in place: nothing is allocated unless the buffer must grow.
#[allow(clippy::indexing_slicing)] // every range is clamped to `buf.len()` first
pub(crate) fn splice(buf: &mut bytes::BytesMut, at: usize, remove: usize, insert: &[u8]) {
    let len = buf.len();
    let at = at.min(len);
    let remove = remove.min(len - at);
    let new_len = len - remove + insert.len();
    if insert.len() > remove {
        buf.resize(new_len, 0);
    }
    buf.copy_within(at + remove..len, at + insert.len());
    buf[at..at + insert.len()].copy_from_slice(insert);
    buf.truncate(new_len);
}

#[cfg(test)]
mod tests {
    #[test]
    fn splice_replaces_in_place() {
        let mut b = bytes::BytesMut::from(&b"abcdef"[..]);
        super::splice(&mut b, 2, 2, b"XYZ");
        assert_eq!(&b[..], b"abXYZef");
        super::splice(&mut b, 0, 0, b"<");
        super::splice(&mut b, 8, 5, b">");
        assert_eq!(&b[..], b"<abXYZef>");
    }
}
