//! A checked-out server connection. Dropping it returns a clean server to its pool and
//! closes a dirty one; nothing async ever runs in `Drop`.

use std::ops::{Deref, DerefMut};

use deadpool::managed::Object;

use super::ServerManager;
use crate::server::ServerConn;

/// A server connection leased to one client until its transaction (or session) ends.
#[must_use = "dropping a Lease returns or discards the server connection"]
#[derive(Debug)]
pub(crate) struct Lease {
    /// `Some` until dropped.
    obj: Option<Object<ServerManager>>,
}

impl Lease {
    /// Takes a connection out of the pool. It counts as dirty until `mark_clean`: a task
    /// that is aborted mid-transaction (shutdown) then closes it instead of returning it.
    pub(super) fn new(mut obj: Object<ServerManager>) -> Self {
        obj.clean = false;
        Self { obj: Some(obj) }
    }

    /// The transaction ended cleanly: dropping the lease returns the server to the pool.
    pub(crate) fn mark_clean(&mut self) {
        if let Some(obj) = self.obj.as_mut() {
            obj.clean = true;
        }
    }

    /// Marks the connection as not reusable: it will be closed instead of returned.
    pub(crate) fn poison(&mut self) {
        if let Some(obj) = self.obj.as_mut() {
            obj.clean = false;
        }
    }
}

impl Deref for Lease {
    type Target = ServerConn;
    #[allow(clippy::expect_used)] // `obj` is only taken in drop
    fn deref(&self) -> &ServerConn {
        self.obj.as_ref().expect("lease used after drop")
    }
}

impl DerefMut for Lease {
    #[allow(clippy::expect_used)] // `obj` is only taken in drop
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.obj.as_mut().expect("lease used after drop")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(obj) = self.obj.take() else { return };
        obj.info.released();
        let reusable = obj.clean && obj.conn.rbuf.is_empty() && obj.conn.wbuf.is_empty();
        if !reusable {
            // Detach from the pool: the slot frees up and the socket closes.
            drop(Object::take(obj));
        }
    }
}
