//! The registry of connected clients: weir's cancel keys per client, which server query
//! each one points at now, what each is doing (SHOW CLIENTS), and a per-client wake-up
//! used to tell clients to leave (shutdown, KILL): a flag and a waker per client
//! (`Wake`), so waking thousands never contends on one lock.
//!
//! Owns: the registry. Does not: read client sockets (the client task decodes the
//! CancelRequest and calls `forward`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::protocol::MessageBuilder;

/// Registry shards: connects and disconnects of many clients do not contend on one lock.
const SHARDS: usize = 16;

/// Where a cancel must be sent to reach the query a client is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CancelTarget {
    /// The server's address.
    pub(crate) addr: SocketAddr,
    /// The server backend's process id.
    pub(crate) process_id: i32,
    /// The server backend's secret key.
    pub(crate) secret_key: i32,
}

/// One client's cancel state; the client task updates `target` at checkout and release.
#[derive(Debug)]
pub(crate) struct CancelSlot {
    /// The secret weir gave this client.
    secret_key: i32,
    /// The server the client is using right now, if any. Uncontended: only this client's
    /// task writes it, and a cancel request reads it.
    target: Mutex<Option<CancelTarget>>,
    /// Wakes the client task when weir wants it to stop (shutdown, or KILL: `info`'s
    /// `killed` flag, set first, says which).
    pub(crate) wake: Wake,
    /// Who the client is and what it is doing, for the admin console.
    pub(crate) info: ClientInfo,
}

/// What a client is doing, as SHOW CLIENTS and SHOW POOLS count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ClientState {
    /// Between transactions (PgBouncer counts these as `cl_active` too).
    Idle = 0,
    /// Waiting for a server (`cl_waiting`).
    Waiting = 1,
    /// Running a transaction on a server.
    Active = 2,
    /// Held by PAUSE before asking for a server (PgBouncer counts these as `cl_waiting`).
    Held = 3,
}

impl ClientState {
    /// Whether the client waits: for a server, or for RESUME.
    pub(crate) fn waits(self) -> bool {
        matches!(self, ClientState::Waiting | ClientState::Held)
    }
}

/// One logged-in client as the admin console sees it. Only its own task writes the
/// atomics, with relaxed stores on a cache line no other client touches.
#[derive(Debug)]
pub(crate) struct ClientInfo {
    /// The client's address.
    pub(crate) addr: Option<SocketAddr>,
    /// weir's address the client connected to.
    pub(crate) local: Option<SocketAddr>,
    /// The user it logged in as.
    pub(crate) user: String,
    /// The database it connected to (client-facing name).
    pub(crate) database: String,
    /// Its `application_name` at login.
    pub(crate) application_name: String,
    /// TLS version and cipher suite, empty without TLS (SHOW CLIENTS' `tls`).
    pub(crate) tls: String,
    /// When it logged in.
    pub(crate) connected: SystemTime,
    /// `ClientState` as a byte.
    state: AtomicU8,
    /// When its current (or last) request arrived, in microseconds since the Unix epoch.
    request_at: AtomicU64,
    /// The host index of the server it holds or last held.
    host: AtomicU32,
    /// Why it is pinned to its server (`server::probe::Pins` bits), 0 when it is not.
    pins: AtomicU8,
    /// The backend pid of the server it is pinned to, 0 when none.
    pinned_to: AtomicI32,
    /// An administrator asked for it to be disconnected.
    killed: AtomicBool,
}

/// A task's wake-up, like a `Notify` with one waiter: a wake while the task is busy is
/// kept until its next wait. Every idle wait of every client listens to one, so it costs
/// no lock and no waiter list: a flag and the task's waker.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    /// Woken and not yet seen.
    pending: AtomicBool,
    /// The waiting task.
    waker: futures_util::task::AtomicWaker,
}

impl Wake {
    /// Wakes the task, now or at its next wait.
    pub(crate) fn notify(&self) {
        self.pending.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    /// Resolves at the next wake (a kept one at once).
    pub(crate) fn notified(&self) -> Notified<'_> {
        Notified {
            wake: self,
            registered: false,
        }
    }
}

/// Resolves at a task's next wake (`Wake::notified`), without the lock and waiter list
/// of a `Notify`. It registers the task's waker on its first poll, and again after each
/// time it resolved (a wake takes the waker out), so one future may be polled across a
/// relay's whole loop. That relies on being polled by one task only: any waker of a
/// tokio task wakes that task.
pub(crate) struct Notified<'a> {
    /// The wake-up it waits for.
    wake: &'a Wake,
    /// The task's waker is with `wake` (not registered again on every poll: that was the
    /// cost of a `Notify` this replaces).
    registered: bool,
}

impl std::future::Future for Notified<'_> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if !self.registered {
            self.wake.waker.register(cx.waker());
            self.registered = true;
        }
        // Looked at after registering: a wake in between is not missed.
        let pending = &self.wake.pending;
        let woken = pending.load(Ordering::SeqCst) && pending.swap(false, Ordering::SeqCst);
        if !woken {
            return std::task::Poll::Pending;
        }
        self.registered = false;
        std::task::Poll::Ready(())
    }
}

impl ClientInfo {
    /// A client that just logged in.
    /// The same, with the connection's TLS description (`Stream::tls_description`).
    pub(crate) fn with_tls(mut self, tls: String) -> Self {
        self.tls = tls;
        self
    }

    pub(crate) fn new(
        addr: Option<SocketAddr>,
        local: Option<SocketAddr>,
        user: &str,
        database: &str,
        application_name: &str,
    ) -> Self {
        let now = SystemTime::now();
        Self {
            addr,
            local,
            user: user.to_owned(),
            database: database.to_owned(),
            application_name: application_name.to_owned(),
            tls: String::new(),
            connected: now,
            state: AtomicU8::new(ClientState::Idle as u8),
            request_at: AtomicU64::new(crate::stats::unix_micros(now)),
            host: AtomicU32::new(0),
            pins: AtomicU8::new(0),
            pinned_to: AtomicI32::new(0),
            killed: AtomicBool::new(false),
        }
    }

    /// The client sent a request at `at_wall_micros` (see `stats::wall_micros`) and waits
    /// for a server. Sequentially consistent with the PAUSE switch: the client stores
    /// this, then reads the switch; PAUSE sets the switch, then reads the states. So
    /// either the client sees the pause, or PAUSE sees the client and waits for its
    /// transaction.
    pub(crate) fn waiting(&self, at_wall_micros: u64) {
        self.request_at.store(at_wall_micros, Ordering::Relaxed);
        self.state
            .store(ClientState::Waiting as u8, Ordering::SeqCst);
    }

    /// The client's request is held by PAUSE.
    pub(crate) fn held(&self) {
        self.state.store(ClientState::Held as u8, Ordering::SeqCst);
    }

    /// The client got a server of host `host`.
    pub(crate) fn active(&self, host: usize) {
        self.host
            .store(u32::try_from(host).unwrap_or(u32::MAX), Ordering::Relaxed);
        self.state
            .store(ClientState::Active as u8, Ordering::Relaxed);
    }

    /// The client's transaction ended; `pins` is what keeps it on the server whose backend
    /// pid is `server` (both 0 when nothing does).
    pub(crate) fn idle(&self, pins: u8, server: i32) {
        self.pins.store(pins, Ordering::Relaxed);
        self.pinned_to.store(server, Ordering::Relaxed);
        self.state.store(ClientState::Idle as u8, Ordering::Relaxed);
    }

    /// What it is doing now.
    pub(crate) fn state(&self) -> ClientState {
        match self.state.load(Ordering::SeqCst) {
            1 => ClientState::Waiting,
            2 => ClientState::Active,
            3 => ClientState::Held,
            _ => ClientState::Idle,
        }
    }

    /// When its current or last request arrived.
    pub(crate) fn request_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.request_at.load(Ordering::Relaxed))
    }

    /// The host index of the server it holds or last held.
    pub(crate) fn host(&self) -> usize {
        self.host.load(Ordering::Relaxed) as usize
    }

    /// The backend pid of the server it is pinned to.
    pub(crate) fn pinned_to(&self) -> Option<i32> {
        Some(self.pinned_to.load(Ordering::Relaxed)).filter(|&p| p != 0)
    }

    /// `server::probe::Pins` bits of what keeps it on its server.
    pub(crate) fn pins(&self) -> u8 {
        self.pins.load(Ordering::Relaxed)
    }

    /// Whether an administrator asked for it to be disconnected.
    pub(crate) fn killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }
}

impl CancelSlot {
    /// The backend process id of the server the client holds now, if any.
    pub(crate) fn server(&self) -> Option<i32> {
        let target = *self.target.lock().unwrap_or_else(PoisonError::into_inner);
        target.map(|t| t.process_id)
    }

    /// Points cancels at `target` (a server was checked out) or at nobody (`None`).
    pub(crate) fn set(&self, target: Option<CancelTarget>) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = target;
    }
}

/// All connected clients' keys.
#[derive(Debug)]
pub(crate) struct CancelRegistry {
    /// Next process id to hand out.
    next_pid: AtomicI32,
    /// pid → slot, sharded by pid.
    shards: Vec<Mutex<HashMap<i32, Arc<CancelSlot>>>>,
}

/// Keeps a client registered; unregisters on drop.
#[derive(Debug)]
pub(crate) struct CancelHandle {
    /// The registry this came from.
    registry: Arc<CancelRegistry>,
    /// The pid handed to the client.
    pub(crate) process_id: i32,
    /// The slot to update.
    pub(crate) slot: Arc<CancelSlot>,
}

impl CancelHandle {
    /// The secret handed to the client.
    pub(crate) fn secret_key(&self) -> i32 {
        self.slot.secret_key
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        self.registry
            .shard(self.process_id)
            .remove(&self.process_id);
    }
}

impl Default for CancelRegistry {
    fn default() -> Self {
        Self {
            next_pid: AtomicI32::new(rand::random::<u16>() as i32 + 1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl CancelRegistry {
    fn shard(&self, pid: i32) -> std::sync::MutexGuard<'_, HashMap<i32, Arc<CancelSlot>>> {
        let i = pid.unsigned_abs() as usize % SHARDS;
        // `shards` has SHARDS entries, and i < SHARDS.
        #[allow(clippy::indexing_slicing)]
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives a new client its keys and lists it.
    pub(crate) fn register(self: &Arc<Self>, info: ClientInfo) -> CancelHandle {
        let process_id = loop {
            let pid = self.next_pid.fetch_add(1, Ordering::Relaxed) & 0x3fff_ffff;
            if pid != 0 && !self.shard(pid).contains_key(&pid) {
                break pid;
            }
        };
        let slot = Arc::new(CancelSlot {
            secret_key: rand::random(),
            target: Mutex::new(None),
            wake: Wake::default(),
            info,
        });
        self.shard(process_id).insert(process_id, slot.clone());
        CancelHandle {
            registry: self.clone(),
            process_id,
            slot,
        }
    }

    /// Wakes every connected client (shutdown: idle clients leave at once, busy ones after
    /// their transaction).
    pub(crate) fn wake_all(&self) {
        for (_, slot) in self.clients() {
            slot.wake.notify();
        }
    }

    /// How many logged-in clients `pred` holds for, counted under the shard locks without
    /// copying the registry (PAUSE polls this).
    pub(crate) fn count(&self, pred: impl Fn(&ClientInfo) -> bool) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard.values().filter(|slot| pred(&slot.info)).count()
            })
            .sum()
    }

    /// Every logged-in client with its process id, in no particular order.
    pub(crate) fn clients(&self) -> Vec<(i32, Arc<CancelSlot>)> {
        let mut all = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            all.extend(shard.iter().map(|(pid, slot)| (*pid, slot.clone())));
        }
        all
    }

    /// Disconnects the client with process id `process_id`, whatever it is doing: idle,
    /// held by PAUSE, or mid-transaction (its relay is woken). Returns whether it was
    /// connected.
    pub(crate) fn kill(&self, process_id: i32) -> bool {
        let Some(slot) = self.shard(process_id).get(&process_id).cloned() else {
            return false;
        };
        // Set before the wake, so the woken task sees why.
        slot.info.killed.store(true, Ordering::SeqCst);
        slot.wake.notify();
        true
    }

    /// The server to cancel for these client keys, if they are valid and the client holds one.
    pub(crate) fn lookup(&self, process_id: i32, secret_key: i32) -> Option<CancelTarget> {
        let slot = self.shard(process_id).get(&process_id)?.clone();
        // Compare without an early exit so timing says nothing about the secret.
        if (slot.secret_key ^ secret_key) != 0 {
            return None;
        }
        let target = *slot.target.lock().unwrap_or_else(PoisonError::into_inner);
        target
    }
}

/// Sends a CancelRequest with the server's own keys to the server.
pub(crate) async fn forward(target: CancelTarget, limit: Duration) -> std::io::Result<()> {
    let send = async {
        let mut stream = TcpStream::connect(target.addr).await?;
        let mut buf = BytesMut::new();
        MessageBuilder::cancel_request(&mut buf, target.process_id, target.secret_key);
        stream.write_all(&buf).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(limit, send)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_the_current_server_only() {
        let reg = Arc::new(CancelRegistry::default());
        let info = || ClientInfo::new(None, None, "u", "d", "");
        let a = reg.register(info());
        let b = reg.register(info());
        assert_ne!(a.process_id, b.process_id);
        assert_eq!(reg.lookup(a.process_id, a.secret_key()), None);
        let t = CancelTarget {
            addr: "127.0.0.1:5432".parse().expect("addr"),
            process_id: 42,
            secret_key: 7,
        };
        a.slot.set(Some(t));
        assert_eq!(reg.lookup(a.process_id, a.secret_key()), Some(t));
        assert_eq!(
            reg.lookup(a.process_id, a.secret_key().wrapping_add(1)),
            None
        );
        assert_eq!(reg.lookup(b.process_id, b.secret_key()), None);
        let pid = a.process_id;
        drop(a);
        assert_eq!(reg.lookup(pid, 0), None);
    }
}
