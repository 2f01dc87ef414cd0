//! Moving scanned bytes between the two sockets: non-blocking writes that stop at the
//! first `WouldBlock`, counting what passed for the pool's totals.

use std::io;

use bytes::BytesMut;

use super::Relay;
use crate::net::{Conn, Stream};
use crate::server::ServerConn;

impl Relay {
    /// Writes weir's own statements, then the client's scanned bytes, to the server.
    /// Returns whether the socket is full (with TLS: whether records are left to send).
    pub(super) fn write_server(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
    ) -> io::Result<bool> {
        let before = self.cfwd;
        let full = pass(
            &mut server.conn.io,
            &mut server.conn.wbuf,
            &mut client.rbuf,
            &mut self.cfwd,
        );
        self.tally.received += (before - self.cfwd) as u64;
        full
    }

    /// Writes weir's own messages, then the server's scanned bytes, to the client.
    /// Returns whether the socket is full (with TLS: whether records are left to send).
    pub(super) fn write_client(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
    ) -> io::Result<bool> {
        let before = self.sfwd;
        let full = pass(
            &mut client.io,
            &mut client.wbuf,
            &mut server.conn.rbuf,
            &mut self.sfwd,
        );
        self.tally.sent += (before - self.sfwd) as u64;
        full
    }
}

/// Writes `own` (weir's bytes) whole, then the first `*fwd` bytes of `from` (the other
/// side's scanned bytes), then what TLS holds back, to `to`; stops at a full socket
/// (`Ok(true)`). `*fwd` counts down as bytes go.
fn pass(
    to: &mut Stream,
    own: &mut BytesMut,
    from: &mut BytesMut,
    fwd: &mut usize,
) -> io::Result<bool> {
    let mut all = own.len();
    if to.write_front(own, &mut all)? || to.write_front(from, fwd)? {
        return Ok(true);
    }
    to.flush_pending()
}
