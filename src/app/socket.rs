//! The client-facing listening socket, made once at start from `[listen]`.
//!
//! Owns: creating, configuring (`SO_REUSEADDR`, `listen.reuse_port`) and binding it.
//! Does not: accept or serve clients (`listen_loop` in app.rs). RELOAD never comes here:
//! a changed `listen.addr` or `listen.reuse_port` needs a restart.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

use super::StartError;
use crate::config::ListenSettings;

/// Connections the kernel queues before weir accepts them: what `TcpListener::bind` uses
/// (mio's 1024), so a burst of clients arriving at once is not refused.
const BACKLOG: u32 = 1024;

/// Binds `listen.addr`. With `listen.reuse_port`, other processes that also set it may
/// bind the same address, and the kernel spreads new connections over all of them.
pub(super) fn bind(listen: &ListenSettings) -> Result<TcpListener, StartError> {
    let addr = listen.addr;
    socket(addr, listen.reuse_port).map_err(|source| match source.kind() {
        io::ErrorKind::AddrInUse => StartError::AddrInUse { addr, source },
        _ => StartError::Listen { addr, source },
    })
}

fn socket(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As TcpListener::bind does: a restarted weir can bind while old connections linger
    // in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
