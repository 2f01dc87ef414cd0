//! A connection (TCP, or TLS over TCP) with its read and write buffers, read through the
//! codec.
//!
//! Owns: socket readiness, buffer sizing, idle buffer release, switching to TLS.
//! Does not: know what the messages mean.

pub(crate) mod tls;

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::protocol::{self, Frame, ProtocolError, StartupPacket};
use tls::TlsIo;

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
    std::future::poll_fn(move |cx| {
        conn.io
            .tcp()
            .map_or(Poll::Ready(Ok(())), |t| t.poll_write_ready(cx))
    })
}

/// The byte stream under a `Conn`.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: rustls's state is kilobytes, and most connections are plain).
    Tls(Box<TlsIo>),
    /// Only while switching to TLS, or after a failed switch: every call fails.
    Gone,
}

impl Stream {
    /// The socket underneath.
    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Self::Plain(tcp) => Some(tcp),
            Self::Tls(tls) => Some(&tls.tcp),
            Self::Gone => None,
        }
    }

    /// Whether it is TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// The TLS version and cipher suite (`TLSv1.3/TLS13_AES_256_GCM_SHA384`), or an empty
    /// string without TLS, for SHOW CLIENTS and SHOW SERVERS.
    pub(crate) fn tls_description(&self) -> String {
        match self {
            Self::Tls(tls) => tls.description(),
            _ => String::new(),
        }
    }

    /// The common name of the verified certificate the peer presented over TLS, if any.
    pub(crate) fn peer_common_name(&self) -> Option<String> {
        match self {
            Self::Tls(tls) => tls.peer_common_name(),
            _ => None,
        }
    }

    /// The ALPN protocol agreed in the TLS handshake, if any.
    pub(crate) fn alpn(&self) -> Option<&[u8]> {
        match self {
            Self::Tls(tls) => tls.alpn(),
            _ => None,
        }
    }

    /// Ready to read: rustls holds plaintext, or the socket is readable.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(tcp) => tcp.poll_read_ready(cx),
            Self::Tls(tls) => tls.poll_read_ready(cx),
            Self::Gone => Poll::Ready(Err(gone())),
        }
    }

    /// The socket an idle check asks, or `None` when the answer is already "something to
    /// read": TLS holds input, or the stream is gone.
    fn idle_socket(&self) -> Option<&TcpStream> {
        match self {
            Self::Tls(tls) if tls.has_input() => None,
            _ => self.tcp(),
        }
    }

    /// Whether the reactor has seen nothing to read (nor a close) since the socket was last
    /// drained, and TLS holds no input: no system call, and unlike `poll_read_ready` no
    /// waker registered and no scheduling budget spent. Bytes or a close the reactor has
    /// not processed yet are not seen: where that matters, ask `nothing_to_read`.
    pub(crate) fn reactor_saw_nothing(&self) -> bool {
        let Some(tcp) = self.idle_socket() else {
            return false;
        };
        // The closure runs only if the reactor flagged the socket readable; it clears
        // nothing (Ok), so a later read still sees the flag.
        matches!(
            tcp.try_io(Interest::READABLE, || Ok(())),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// Whether nothing waits to be read and the peer has not closed, asked of the socket
    /// now (one `peek`, which consumes nothing, so it works under TLS too). For an idle
    /// connection about to be handed out.
    pub(crate) fn nothing_to_read(&self) -> bool {
        let Some(tcp) = self.idle_socket() else {
            return false;
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut peeked = tokio::io::ReadBuf::new(&mut byte);
        tcp.poll_peek(&mut cx, &mut peeked).is_pending()
    }

    /// Writes what it can of `data` without blocking; `WouldBlock` when the socket is full.
    pub(crate) fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.try_write(data),
            Self::Tls(tls) => tls.try_write(data),
            Self::Gone => Err(gone()),
        }
    }

    /// Sends what TLS still holds of earlier writes; returns whether some is left (the
    /// socket is full). Always `false` for plain TCP, which holds nothing back.
    pub(crate) fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Self::Tls(tls) if tls.pending_output() => tls.flush_records(),
            _ => Ok(false),
        }
    }

    /// Whether TLS holds written bytes the socket has not taken yet.
    pub(crate) fn has_pending(&self) -> bool {
        matches!(self, Self::Tls(tls) if tls.pending_output())
    }
}

/// The error of a stream lost in a failed switch to TLS.
fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection closed after a failed TLS handshake",
    )
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
    /// The stream; only the task that owns this `Conn` touches it.
    pub(crate) io: Stream,
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
            io: Stream::Plain(io),
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
        }
    }

    /// Switches to TLS: runs the server side of the handshake, starting with any bytes
    /// already in `rbuf` (a direct-TLS ClientHello). After a failure the connection is
    /// unusable.
    pub(crate) async fn accept_tls(&mut self, config: Arc<rustls::ServerConfig>) -> io::Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.io, Stream::Gone) else {
            return Err(gone());
        };
        let tls = TlsIo::accept(tcp, config, &mut self.rbuf).await?;
        self.io = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Switches to TLS toward a server: runs the client side of the handshake.
    pub(crate) async fn connect_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<()> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.io, Stream::Gone) else {
            return Err(gone());
        };
        let tls = TlsIo::connect(tcp, config, name).await?;
        self.io = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Reads whatever is available after the socket is readable. Returns 0 at end of stream.
    /// Cancel-safe: bytes land in `rbuf` only.
    pub(crate) async fn read_some(&mut self) -> io::Result<usize> {
        loop {
            read_ready(self).await?;
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
        let io = match &mut self.io {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => return tls.try_read(&mut self.rbuf, spare),
            Stream::Gone => return Err(gone()),
        };
        let rbuf = &mut self.rbuf;
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

    /// Writes all of `wbuf`, and all TLS holds back.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        loop {
            while !self.wbuf.is_empty() {
                match self.io.try_write(&self.wbuf) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        let _ = self.wbuf.split_to(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if self.wbuf.is_empty() && !self.io.flush_pending()? {
                return Ok(());
            }
            write_ready(self).await?;
        }
    }

    /// Ends a TLS connection cleanly, within `limit`: what is queued goes out, then a
    /// close_notify alert, so the peer can tell the end from a cut. Nothing to do for a
    /// plaintext connection (the socket closes when the `Conn` is dropped).
    pub(crate) async fn close(&mut self, limit: std::time::Duration) {
        if !self.io.is_tls() {
            return;
        }
        let _ = tokio::time::timeout(limit, async {
            self.flush().await?;
            if let Stream::Tls(tls) = &mut self.io {
                tls.send_close_notify();
            }
            self.flush().await
        })
        .await;
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
