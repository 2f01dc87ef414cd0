//! The connection pool of one host: a list of free servers, a queue of waiting clients and
//! a count of places (`size`), with direct hand-off from a returning lease to the first
//! waiter.
//!
//! Owns: the free list, the wait queue, the count of places, `Claim`.
//! Does not: open or check server connections (`ServerManager`), time anything.
//!
//! Replaces deadpool (docs/architecture.md, "The pool"): deadpool's semaphore, its second
//! lock and its per-checkout timestamps cost 1-2 µs per transaction, and a waiter there
//! re-runs the whole checkout when woken instead of receiving the server.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::server::ServerConn;

/// A free server connection and when it was given back.
#[derive(Debug)]
pub(crate) struct Free {
    /// The connection, boxed once when opened so each checkout and return moves a pointer,
    /// not the whole connection.
    pub(crate) conn: Box<ServerConn>,
    /// When its last lease ended (or it was opened).
    pub(crate) since: Instant,
}

/// Counts of one pool now.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SlotCounts {
    /// Places taken: open connections, leased or free, plus logins in progress.
    pub(crate) size: usize,
    /// Free connections.
    pub(crate) free: usize,
    /// Clients waiting for a place.
    pub(crate) waiting: usize,
    /// Most places.
    pub(crate) max: usize,
}

/// Past this many queued waiters, the queue is swept of those that gave up whenever its
/// length reaches a power of two (amortised: each sweep halves at most what is left).
const SWEEP_FROM: usize = 64;

/// What a checkout found without waiting.
#[derive(Debug)]
#[must_use = "a claim or a queue place is given back when dropped"]
pub(crate) enum Take {
    /// A claim: a free connection, or an empty place to open one in.
    Claim(Claim),
    /// Every place is taken; the claim arrives here when one is given back. `Err` means
    /// the pool closed meanwhile.
    Wait(oneshot::Receiver<Claim>),
    /// The pool is closed.
    Closed,
}

/// The shared state of one pool.
#[derive(Debug)]
pub(crate) struct Slots {
    /// Everything, under one lock held only for list and counter updates.
    state: Mutex<State>,
}

/// The free list, the wait queue and the count of places.
#[derive(Debug)]
struct State {
    /// Free connections, the most recently returned last (taken first: LIFO keeps the
    /// working set small, so `server_idle_timeout` can close the rest).
    free: Vec<Free>,
    /// Waiting clients, first come first served. A waiter that gave up leaves a closed
    /// sender behind, skipped when met.
    waiters: VecDeque<oneshot::Sender<Claim>>,
    /// Places taken, see `SlotCounts::size`.
    size: usize,
    /// Most places (`pool.size`).
    max: usize,
    /// No more checkouts; returns close their connection.
    closed: bool,
}

/// One of the pool's places, held by a client: with a connection, or empty (the holder
/// opens one). Dropping it gives the place back, so a client that gives up at any await
/// point never leaks one.
#[derive(Debug)]
#[must_use = "dropping a claim gives its place back at once"]
pub(crate) struct Claim {
    /// The pool the place belongs to.
    slots: Arc<Slots>,
    /// The connection, once there is one.
    free: Option<Free>,
    /// Whether dropping it gives the place back (false once the pool took it back).
    armed: bool,
}

impl Claim {
    /// Takes the free connection out of the claim, to be checked before use; the place
    /// stays taken.
    pub(crate) fn take(&mut self) -> Option<Free> {
        self.free.take()
    }

    /// Puts a connection (checked or newly opened) in the place.
    pub(crate) fn fill(&mut self, conn: Box<ServerConn>) {
        // `since` is set when the place comes back; until then any time will do.
        let since = conn.created;
        self.free = Some(Free { conn, since });
    }

    /// Its connection, if it has one.
    pub(crate) fn conn(&self) -> Option<&ServerConn> {
        self.free.as_ref().map(|f| &*f.conn)
    }

    /// Its connection, if it has one.
    pub(crate) fn conn_mut(&mut self) -> Option<&mut ServerConn> {
        self.free.as_mut().map(|f| &mut *f.conn)
    }

    /// Drops its connection without returning it (dirty or broken): the socket closes and
    /// the place comes back empty.
    pub(crate) fn discard(&mut self) {
        self.free = None;
    }

    /// The claim's connection, leaving the claim inert: the caller holds the pool's lock
    /// and accounts for the place itself.
    fn disarm(mut self) -> Option<Free> {
        self.armed = false;
        self.free.take()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let free = self.free.take().map(|conn| Free {
            conn: conn.conn,
            since: Instant::now(),
        });
        self.slots.release(free);
    }
}

impl Slots {
    /// An empty pool of at most `max` places.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: Vec::new(),
                waiters: VecDeque::new(),
                size: 0,
                max,
                closed: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under the lock can leave the state half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A free connection, else an empty place, else a place in the wait queue.
    pub(crate) fn take(self: &Arc<Self>) -> Take {
        let mut s = self.lock();
        if s.closed {
            return Take::Closed;
        }
        if let Some(free) = s.free.pop() {
            return Take::Claim(self.claim(Some(free)));
        }
        if s.size < s.max {
            s.size += 1;
            return Take::Claim(self.claim(None));
        }
        let (tx, rx) = oneshot::channel();
        if s.waiters.len() >= SWEEP_FROM && s.waiters.len().is_power_of_two() {
            // Waiters that gave up (timeouts, disconnects) while no place came free.
            s.waiters.retain(|w| !w.is_closed());
        }
        s.waiters.push_back(tx);
        Take::Wait(rx)
    }

    /// An empty place if one is untaken, never waiting (warm connections).
    pub(crate) fn take_empty(self: &Arc<Self>) -> Option<Claim> {
        let mut s = self.lock();
        if s.closed || s.size >= s.max {
            return None;
        }
        s.size += 1;
        Some(self.claim(None))
    }

    fn claim(self: &Arc<Self>, free: Option<Free>) -> Claim {
        Claim {
            slots: self.clone(),
            free,
            armed: true,
        }
    }

    /// A place comes back, with a connection or empty: to the first waiter still waiting,
    /// else to the free list; with the pool shrunk or closed, the place goes.
    fn release(self: &Arc<Self>, mut free: Option<Free>) {
        let mut s = self.lock();
        let surplus = s.closed || s.size > s.max;
        if !surplus {
            while let Some(waiter) = s.waiters.pop_front() {
                match waiter.send(self.claim(free)) {
                    Ok(()) => return,
                    // That waiter gave up: on to the next one.
                    Err(claim) => free = claim.disarm(),
                }
            }
            if let Some(free) = free {
                s.free.push(free);
                return;
            }
        }
        s.size -= 1;
        drop(s);
        // Called from `Drop`: no task is started here. The socket just closes, which the
        // server takes as a Terminate.
        drop(free);
    }

    /// Its counts now.
    pub(crate) fn counts(&self) -> SlotCounts {
        let s = self.lock();
        SlotCounts {
            size: s.size,
            free: s.free.len(),
            waiting: s.waiters.iter().filter(|w| !w.is_closed()).count(),
            max: s.max,
        }
    }

    /// Places taken plus clients waiting: the pool's outstanding work (cheap; a waiter
    /// that gave up moments ago may still count).
    pub(crate) fn busy(&self) -> usize {
        let s = self.lock();
        s.size - s.free.len() + s.waiters.len()
    }

    /// Closes the free connections `keep` refuses (each with a Terminate); returns how
    /// many.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&ServerConn, Instant) -> bool) -> usize {
        let removed: Vec<Free> = {
            let mut s = self.lock();
            let (kept, removed) = std::mem::take(&mut s.free)
                .into_iter()
                .partition(|f| keep(&f.conn, f.since));
            s.free = kept;
            s.size -= removed.len();
            // Free connections mean nobody waits, so no waiter needs the places.
            removed
        };
        let closed = removed.len();
        for free in removed {
            terminate(free.conn);
        }
        closed
    }

    /// Sets the most places: growing hands the new places to waiting clients at once;
    /// shrinking closes free connections now and busy ones as they come back.
    pub(crate) fn resize(self: &Arc<Self>, max: usize) {
        let mut s = self.lock();
        s.max = max;
        while s.size < s.max {
            let Some(waiter) = s.waiters.pop_front() else {
                break;
            };
            s.size += 1;
            if let Err(claim) = waiter.send(self.claim(None)) {
                claim.disarm();
                s.size -= 1;
            }
        }
        let mut removed = Vec::new();
        while s.size > s.max {
            let Some(free) = s.free.pop() else { break };
            removed.push(free);
            s.size -= 1;
        }
        drop(s);
        for free in removed {
            terminate(free.conn);
        }
    }

    /// No more checkouts: waiting clients get `Closed`, free connections close, busy ones
    /// close as they come back.
    pub(crate) fn close(&self) {
        let (waiters, free) = {
            let mut s = self.lock();
            s.closed = true;
            let free = std::mem::take(&mut s.free);
            s.size -= free.len();
            (std::mem::take(&mut s.waiters), free)
        };
        drop(waiters);
        for free in free {
            terminate(free.conn);
        }
    }
}

/// Closes a clean connection politely (Terminate), off the caller's path. Outside a
/// runtime (the process is ending) the socket just closes.
pub(super) fn terminate(conn: Box<ServerConn>) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(conn.terminate());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(slots: &Slots) -> (usize, usize, usize) {
        let c = slots.counts();
        (c.size, c.free, c.waiting)
    }

    fn claim(take: Take) -> Claim {
        match take {
            Take::Claim(claim) => claim,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn places_are_counted_handed_over_and_given_back() {
        let slots = Slots::new(2);
        let a = claim(slots.take());
        let b = claim(slots.take());
        assert_eq!(counts(&slots), (2, 0, 0));
        // Full: the third waits, and gets the place `a` gives back, directly.
        let Take::Wait(rx) = slots.take() else {
            panic!("a full pool must queue")
        };
        assert_eq!(counts(&slots), (2, 0, 1));
        drop(a);
        let c = rx.await.expect("handed over");
        assert_eq!(counts(&slots), (2, 0, 0));
        drop((b, c));
        // Empty places come back as nothing: the count drops.
        assert_eq!(counts(&slots), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_is_skipped() {
        let slots = Slots::new(1);
        let a = claim(slots.take());
        let Take::Wait(gone) = slots.take() else {
            panic!("queued")
        };
        let Take::Wait(next) = slots.take() else {
            panic!("queued")
        };
        drop(gone);
        assert_eq!(counts(&slots), (1, 0, 1));
        drop(a);
        let b = next.await.expect("the second waiter gets the place");
        drop(b);
        assert_eq!(counts(&slots), (0, 0, 0));
    }

    #[tokio::test]
    async fn resize_and_close() {
        let slots = Slots::new(1);
        let a = claim(slots.take());
        let Take::Wait(rx) = slots.take() else {
            panic!("queued")
        };
        // Growing hands the new place to the waiter at once.
        slots.resize(2);
        let b = rx.await.expect("a new place");
        assert_eq!(counts(&slots), (2, 0, 0));
        // Shrinking: places over the new size go as they come back.
        slots.resize(1);
        drop(a);
        assert_eq!(counts(&slots), (1, 0, 0));
        let Take::Wait(rx) = slots.take() else {
            panic!("queued")
        };
        slots.close();
        assert!(rx.await.is_err(), "a waiter learns of the close");
        assert!(matches!(slots.take(), Take::Closed));
        drop(b);
        assert_eq!(counts(&slots), (0, 0, 0));
        assert!(slots.take_empty().is_none());
    }
}
