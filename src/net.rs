//! A TCP connection with its read and write buffers, read through the codec.
//!
//! Owns: socket readiness, buffer sizing, idle buffer release.
//! Does not: know what the messages mean.

use std::io;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::protocol::{self, Frame, ProtocolError, StartupPacket};

/// How much free space a read asks for; a server's large result arrives in chunks this big.
const READ_CHUNK: usize = 16 * 1024;
/// Spare read buffers kept per worker thread for clients that go idle.
const SPARE_BUFFERS_PER_THREAD: usize = 64;

thread_local! {
    /// Read buffers of clients that went idle, reused by the next client that reads on this
    /// thread: idle clients hold no buffer, and busy ones do not allocate per transaction.
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Waits until `conn`'s socket may be read. Unlike `TcpStream::readable`, the waker goes in
/// the socket's single reader slot instead of a list node that is linked and unlinked
/// under a lock on every wait: each connection has one task, and waits are per message.
pub(crate) fn read_ready(conn: &Conn) -> impl std::future::Future<Output = io::Result<()>> + '_ {
    std::future::poll_fn(move |cx| conn.io.poll_read_ready(cx))
}

/// Waits until `conn`'s socket may be written; see `read_ready`.
pub(crate) fn write_ready(conn: &Conn) -> impl std::future::Future<Output = io::Result<()>> + '_ {
    std::future::poll_fn(move |cx| conn.io.poll_write_ready(cx))
}

/// Why reading or writing a connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetError {
    /// The socket failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The peer sent bytes that are not the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed in the middle of a message")]
    Truncated,
}

/// A socket plus the buffers that make reads cancel-safe: all read state lives here.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The socket; only the task that owns this `Conn` touches it.
    pub(crate) io: TcpStream,
    /// Bytes read but not yet consumed.
    pub(crate) rbuf: BytesMut,
    /// Bytes weir built that are waiting to be written.
    pub(crate) wbuf: BytesMut,
}

impl Conn {
    /// Wraps a connected socket. Buffers start empty and grow on first use.
    pub(crate) fn new(io: TcpStream) -> Self {
        // Latency matters more than packet count: every message we forward is a whole reply.
        let _ = io.set_nodelay(true);
        Self {
            io,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
        }
    }

    /// Reads whatever is available after the socket is readable. Returns 0 at end of stream.
    /// Cancel-safe: bytes land in `rbuf` only.
    pub(crate) async fn read_some(&mut self) -> io::Result<usize> {
        loop {
            self.io.readable().await?;
            match self.try_read() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// One non-blocking read into `rbuf`; `WouldBlock` when nothing is there.
    pub(crate) fn try_read(&mut self) -> io::Result<usize> {
        if self.rbuf.capacity() == 0 {
            if let Some(spare) = SPARE.with(|s| s.borrow_mut().pop()) {
                self.rbuf = spare;
            }
        }
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let spare = self.rbuf.capacity() - self.rbuf.len();
        let (io, rbuf) = (&self.io, &mut self.rbuf);
        let mut got = 0;
        // A short read means the socket is drained: report it as WouldBlock to tokio so
        // the readiness flag is cleared now, instead of paying a second read that fails
        // with EAGAIN (nginx does the same). tokio clears only if no newer readiness event
        // arrived since the read began, so no wake-up is lost.
        let result = io.try_io(Interest::READABLE, || {
            let n = io.try_read_buf(rbuf)?;
            got = n;
            if n > 0 && n < spare {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(n)
            }
        });
        match result {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
            other => other,
        }
    }

    /// Reads one whole message (login phase), or `None` at a clean end of stream.
    pub(crate) async fn read_frame(&mut self, max_len: usize) -> Result<Option<Frame>, NetError> {
        loop {
            if let Some(frame) = protocol::decode(&mut self.rbuf, max_len)? {
                return Ok(Some(frame));
            }
            if self.read_some().await? == 0 {
                return if self.rbuf.is_empty() {
                    Ok(None)
                } else {
                    Err(NetError::Truncated)
                };
            }
        }
    }

    /// Reads one startup-phase packet, or `None` at a clean end of stream.
    pub(crate) async fn read_startup(&mut self) -> Result<Option<StartupPacket>, NetError> {
        loop {
            if let Some(packet) = protocol::decode_startup(&mut self.rbuf)? {
                return Ok(Some(packet));
            }
            if self.read_some().await? == 0 {
                return if self.rbuf.is_empty() {
                    Ok(None)
                } else {
                    Err(NetError::Truncated)
                };
            }
        }
    }

    /// Writes all of `wbuf`.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            self.io.writable().await?;
            match self.io.try_write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let _ = self.wbuf.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Gives back buffer memory of an idle connection (thousands of idle clients must be cheap).
    pub(crate) fn shrink_idle(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            let mut buf = std::mem::take(&mut self.rbuf);
            buf.clear();
            // Only ordinary-sized buffers are kept; one grown by a huge message is freed.
            if buf.capacity() <= 4 * READ_CHUNK {
                SPARE.with(|s| {
                    let mut spare = s.borrow_mut();
                    if spare.len() < SPARE_BUFFERS_PER_THREAD {
                        spare.push(buf);
                    }
                });
            }
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > 0 {
            self.wbuf = BytesMut::new();
        }
    }
}
