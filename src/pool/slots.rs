//! The connection pool of one host: a list of free servers, a queue of waiting clients and
//! a count of places (`size`), with direct hand-off from a returning lease to the first
//! waiter.
//!
//! Owns: the free list, the wait queue, the count of places, `Claim`, and the sweeper
//! that turns waiters away at their deadline.
//! Does not: open or check server connections (`ServerManager`), time anything else.
//!
//! Replaces deadpool (docs/architecture.md, "The pool"): deadpool's semaphore, its second
//! lock and its per-checkout timestamps cost 1-2 µs per transaction, and a waiter there
//! re-runs the whole checkout when woken instead of receiving the server.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

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

/// The sweeper looks at the queue at most this often: each look walks the whole queue,
/// so thousands of clients timing out one after another cost a bounded amount of work.
/// It is also how late, at most, a waiter hears that its time is up.
const SWEEP_GAP: Duration = Duration::from_millis(10);

/// What a waiting client receives: a claim, or word that its deadline passed.
pub(crate) type Handed = Result<Claim, Expired>;

/// A waiting client's deadline passed before a place came free (`query_wait_timeout`).
#[derive(Debug)]
pub(crate) struct Expired;

/// A client in the wait queue.
#[derive(Debug)]
struct Waiter {
    /// Where its claim (or `Expired`) goes. Closed when the client gave up.
    handoff: oneshot::Sender<Handed>,
    /// When it stops waiting.
    deadline: Instant,
}

/// What a checkout found without waiting.
#[derive(Debug)]
#[must_use = "a claim or a queue place is given back when dropped"]
pub(crate) enum Take {
    /// A claim: a free connection, or an empty place to open one in.
    Claim(Claim),
    /// Every place is taken; the claim arrives here when one is given back, or `Expired`
    /// at the deadline. A receive error means the pool closed meanwhile.
    Wait(oneshot::Receiver<Handed>),
    /// The pool is closed.
    Closed,
}

/// The shared state of one pool.
#[derive(Debug)]
pub(crate) struct Slots {
    /// Everything, under one lock held only for list and counter updates.
    state: Mutex<State>,
    /// Wakes the sweeper early: a waiter with an earlier deadline than it planned for (a
    /// RELOAD shortened `query_wait_timeout`), or the pool closed.
    sweep: Notify,
}

/// The free list, the wait queue and the count of places.
#[derive(Debug)]
struct State {
    /// Free connections, the most recently returned last (taken first: LIFO keeps the
    /// working set small, so `server_idle_timeout` can close the rest).
    free: Vec<Free>,
    /// Waiting clients, first come first served. A waiter that gave up leaves a closed
    /// sender behind, skipped when met.
    waiters: VecDeque<Waiter>,
    /// When the sweeper next looks at the queue; `None` when no sweeper runs. One task
    /// per pool, only while clients wait, instead of a timer per waiting client: arming
    /// and disarming a timer for every checkout was 4% of weir's work per transaction in
    /// a busy pool.
    sweep_at: Option<Instant>,
    /// A waiter was queued behind one with a later deadline (a RELOAD shortened
    /// `query_wait_timeout`): the sweeper must walk the whole queue, not just its front.
    unsorted: bool,
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
    /// When the connection's last use ended, if its holder knows (saves reading the
    /// clock when the place comes back).
    idle_since: Option<Instant>,
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

    /// Records when the connection's use ended, for `server_idle_timeout`.
    pub(crate) fn idle_since(&mut self, at: Instant) {
        self.idle_since = Some(at);
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
        let since = self.idle_since.take();
        let free = self.free.take().map(|conn| Free {
            conn: conn.conn,
            since: since.unwrap_or_else(Instant::now),
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
                sweep_at: None,
                unsorted: false,
            }),
            sweep: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under the lock can leave the state half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A free connection, else an empty place, else a place in the wait queue until
    /// `deadline`.
    pub(crate) fn take(self: &Arc<Self>, deadline: Instant) -> Take {
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
        let (handoff, rx) = oneshot::channel();
        if s.waiters.len() >= SWEEP_FROM && s.waiters.len().is_power_of_two() {
            // Waiters that gave up (disconnects) while no place came free.
            s.waiters.retain(|w| !w.handoff.is_closed());
        }
        match s.waiters.back() {
            None => s.unsorted = false,
            Some(last) if deadline < last.deadline => s.unsorted = true,
            Some(_) => {}
        }
        s.waiters.push_back(Waiter { handoff, deadline });
        let running = s.sweep_at;
        if running.is_none_or(|at| deadline < at) {
            s.sweep_at = Some(deadline);
        }
        drop(s);
        match running {
            // The common case in a busy pool: the sweeper is there, and due before this
            // waiter's deadline. Nothing to do, not even a look at the runtime.
            Some(at) if deadline >= at => {}
            Some(_) => self.sweep.notify_one(),
            None => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(sweep(SweepGuard {
                        slots: self.clone(),
                        done: false,
                    }));
                }
                // Outside a runtime (benchmarks) no sweeper can run: nothing turns
                // waiters away, and the next waiter inside one starts it.
                Err(_) => self.lock().sweep_at = None,
            },
        }
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
            idle_since: None,
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
                match waiter.handoff.send(Ok(self.claim(free))) {
                    Ok(()) => return,
                    // That waiter gave up: on to the next one.
                    Err(handed) => free = handed.ok().and_then(Claim::disarm),
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
            waiting: s.waiters.iter().filter(|w| !w.handoff.is_closed()).count(),
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
            if let Err(handed) = waiter.handoff.send(Ok(self.claim(None))) {
                handed.ok().map(Claim::disarm);
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
        self.sweep.notify_one();
        for free in free {
            terminate(free.conn);
        }
    }
}

impl State {
    /// Takes out the waiters whose deadline has passed (to be told once the lock is
    /// released) and forgets those that gave up; returns the earliest deadline left.
    /// Waiters queue in deadline order unless a RELOAD changed the timeout, so usually
    /// only the front of the queue is looked at.
    fn expire(
        &mut self,
        now: Instant,
        expired: &mut Vec<oneshot::Sender<Handed>>,
    ) -> Option<Instant> {
        if !self.unsorted {
            while let Some(front) = self.waiters.front() {
                if !front.handoff.is_closed() && front.deadline > now {
                    return Some(front.deadline);
                }
                if let Some(w) = self.waiters.pop_front() {
                    if !w.handoff.is_closed() {
                        expired.push(w.handoff);
                    }
                }
            }
            return None;
        }
        let mut next: Option<Instant> = None;
        for waiter in std::mem::take(&mut self.waiters) {
            if waiter.handoff.is_closed() {
                continue;
            }
            if waiter.deadline <= now {
                expired.push(waiter.handoff);
                continue;
            }
            next = Some(next.map_or(waiter.deadline, |n| n.min(waiter.deadline)));
            self.waiters.push_back(waiter);
        }
        next
    }
}

/// The sweeper's hold on its pool. Dropped before the sweeper finished (its runtime
/// shutting down), it leaves word that no sweeper runs, so the next waiter starts one.
struct SweepGuard {
    slots: Arc<Slots>,
    /// The sweeper ended on its own, having said so under the lock.
    done: bool,
}

impl Drop for SweepGuard {
    fn drop(&mut self) {
        if !self.done {
            self.slots.lock().sweep_at = None;
        }
    }
}

/// The pool's sweeper: while clients wait, it sleeps until the earliest deadline and
/// turns away those whose time is up. Ends when nobody waits or the pool closes.
async fn sweep(mut guard: SweepGuard) {
    let mut expired = Vec::new();
    loop {
        let now = Instant::now();
        let next = {
            let mut s = guard.slots.lock();
            let next = if s.closed {
                None
            } else {
                s.expire(now, &mut expired)
            };
            s.sweep_at = next;
            guard.done = next.is_none();
            next
        };
        // Told outside the lock: each is a task to wake.
        for handoff in expired.drain(..) {
            // Refused only if it gave up just now: nothing to do either way.
            let _ = handoff.send(Err(Expired));
        }
        let Some(next) = next else {
            return;
        };
        let at = next.max(now + SWEEP_GAP);
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => {}
            () = guard.slots.sweep.notified() => {}
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

    /// A deadline no test reaches.
    fn later() -> Instant {
        Instant::now() + Duration::from_secs(600)
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
        let a = claim(slots.take(later()));
        let b = claim(slots.take(later()));
        assert_eq!(counts(&slots), (2, 0, 0));
        // Full: the third waits, and gets the place `a` gives back, directly.
        let Take::Wait(rx) = slots.take(later()) else {
            panic!("a full pool must queue")
        };
        assert_eq!(counts(&slots), (2, 0, 1));
        drop(a);
        let c = rx.await.expect("handed over").expect("in time");
        assert_eq!(counts(&slots), (2, 0, 0));
        drop((b, c));
        // Empty places come back as nothing: the count drops.
        assert_eq!(counts(&slots), (0, 0, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_is_skipped() {
        let slots = Slots::new(1);
        let a = claim(slots.take(later()));
        let Take::Wait(gone) = slots.take(later()) else {
            panic!("queued")
        };
        let Take::Wait(next) = slots.take(later()) else {
            panic!("queued")
        };
        drop(gone);
        assert_eq!(counts(&slots), (1, 0, 1));
        drop(a);
        let b = next
            .await
            .expect("the second waiter gets the place")
            .expect("in time");
        drop(b);
        assert_eq!(counts(&slots), (0, 0, 0));
    }

    #[tokio::test]
    async fn resize_and_close() {
        let slots = Slots::new(1);
        let a = claim(slots.take(later()));
        let Take::Wait(rx) = slots.take(later()) else {
            panic!("queued")
        };
        // Growing hands the new place to the waiter at once.
        slots.resize(2);
        let b = rx.await.expect("a new place").expect("in time");
        assert_eq!(counts(&slots), (2, 0, 0));
        // Shrinking: places over the new size go as they come back.
        slots.resize(1);
        drop(a);
        assert_eq!(counts(&slots), (1, 0, 0));
        let Take::Wait(rx) = slots.take(later()) else {
            panic!("queued")
        };
        slots.close();
        assert!(rx.await.is_err(), "a waiter learns of the close");
        assert!(matches!(slots.take(later()), Take::Closed));
        drop(b);
        assert_eq!(counts(&slots), (0, 0, 0));
        assert!(slots.take_empty().is_none());
    }

    #[tokio::test]
    async fn waiters_are_turned_away_at_their_deadline() {
        let slots = Slots::new(1);
        let a = claim(slots.take(later()));
        let Take::Wait(patient) = slots.take(later()) else {
            panic!("queued")
        };
        // Queued behind a later deadline (a RELOAD shortened the timeout): the sweeper,
        // asleep until the first deadline, is woken for it.
        let Take::Wait(hasty) = slots.take(Instant::now() + Duration::from_millis(50)) else {
            panic!("queued")
        };
        let answer = tokio::time::timeout(Duration::from_secs(10), hasty)
            .await
            .expect("the sweeper answers");
        assert!(matches!(answer, Ok(Err(Expired))), "{answer:?}");
        assert_eq!(counts(&slots), (1, 0, 1));
        // The patient one still gets the place.
        drop(a);
        let b = patient.await.expect("not closed").expect("in time");
        drop(b);
        assert_eq!(counts(&slots), (0, 0, 0));
        // A deadline already past is answered too.
        let c = claim(slots.take(later()));
        let Take::Wait(late) = slots.take(Instant::now()) else {
            panic!("queued")
        };
        assert!(matches!(late.await, Ok(Err(Expired))));
        drop(c);
    }
}
