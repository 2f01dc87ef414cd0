//! Moving scanned bytes between the two sockets: non-blocking writes that stop at the
//! first `WouldBlock`, counting what passed for the pool's totals.

use std::io;

use bytes::Buf;

use super::Relay;
use crate::net::Conn;
use crate::server::ServerConn;

impl Relay {
    /// Writes weir's own statements, then the client's scanned bytes, to the server.
    /// Returns whether the socket is full (with TLS: whether records are left to send).
    pub(super) fn write_server(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
    ) -> io::Result<bool> {
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
                    self.tally.received += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        server.conn.io.flush_pending()
    }

    /// Writes weir's own messages, then the server's scanned bytes, to the client.
    /// Returns whether the socket is full (with TLS: whether records are left to send).
    pub(super) fn write_client(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
    ) -> io::Result<bool> {
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
                    self.tally.sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        client.io.flush_pending()
    }
}
