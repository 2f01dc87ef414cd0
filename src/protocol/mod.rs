//! The PostgreSQL wire codec: framing, typed tags per direction, startup packets,
//! and the few messages weir builds or inspects itself.
//!
//! Owns: every byte layout of protocol 3.0. Every other module goes through here.
//! Does not: do I/O, know about tokio, pools or configuration.

mod backend;
mod error;
mod frame;
mod frontend;
mod scan;
mod startup;

pub(crate) use backend::{
    decode_data_row, AuthRequest, BackendMessage, ErrorFields, ErrorSeverity, MessageBuilder,
    TxStatus,
};
pub(crate) use error::ProtocolError;
pub(crate) use frame::{decode, Frame};
pub(crate) use frontend::{FrontendTag, LoginMessage};
pub(crate) use scan::{BackendEvent, BackendScanner, FrontendEvent, FrontendScanner};
pub(crate) use startup::{decode_startup, StartupPacket};

/// Largest message weir accepts whole (login messages, error responses, ...).
/// Larger messages are only ever streamed through, never buffered.
pub(crate) const MAX_INSPECTED_LEN: usize = 1 << 20;
