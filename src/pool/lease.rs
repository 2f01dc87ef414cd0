//! A checked-out server connection. Dropping it returns a clean server to its pool and
//! closes a dirty one; nothing async ever runs in `Drop`.

use std::ops::{Deref, DerefMut};

use super::slots::Claim;
use crate::server::ServerConn;

/// A server connection leased to one client until its transaction (or session) ends.
#[must_use = "dropping a Lease returns or discards the server connection"]
#[derive(Debug)]
pub(crate) struct Lease {
    /// The pool's place, holding the connection until drop.
    claim: Claim,
}

impl Lease {
    /// Leases `conn`, which fills the place `claim`. It counts as dirty until
    /// `mark_clean`: a task that is aborted mid-transaction (shutdown) then closes it
    /// instead of returning it.
    pub(super) fn new(mut claim: Claim, mut conn: Box<ServerConn>) -> Self {
        conn.clean = false;
        claim.fill(conn);
        Self { claim }
    }

    /// The transaction ended cleanly: dropping the lease returns the server to the pool.
    pub(crate) fn mark_clean(&mut self) {
        self.clean = true;
    }

    /// The transaction ended at `at` (its last answer): the server counts as idle from
    /// then once back in the pool.
    pub(crate) fn ended_at(&mut self, at: std::time::Instant) {
        self.claim.idle_since(at);
    }

    /// Marks the connection as not reusable: it will be closed instead of returned.
    pub(crate) fn poison(&mut self) {
        self.clean = false;
    }
}

impl Deref for Lease {
    type Target = ServerConn;
    #[allow(clippy::expect_used)] // `new` fills the claim, and only drop empties it
    fn deref(&self) -> &ServerConn {
        self.claim.conn().expect("lease without a connection")
    }
}

impl DerefMut for Lease {
    #[allow(clippy::expect_used)] // `new` fills the claim, and only drop empties it
    fn deref_mut(&mut self) -> &mut ServerConn {
        self.claim.conn_mut().expect("lease without a connection")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.claim.conn() else {
            return;
        };
        conn.info.released();
        let reusable = conn.clean && conn.conn.rbuf.is_empty() && conn.conn.wbuf.is_empty();
        if !reusable {
            // The socket closes; the place goes back empty for the next client to fill.
            self.claim.discard();
        }
        // Dropping the claim gives the place back.
    }
}
