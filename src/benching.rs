//! Entry points for the criterion benchmarks in `benches/` (see docs/benchmarks.md).
//! Not an API: each item runs one hot path of the transaction the way the relay and the
//! pool run it, so that a regression there shows in `cargo bench` without a server.
//!
//! Owns: building the inputs (a pgbench-like query and reply) and driving the scanners
//! and the pool's places. Does not: measure anything itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::pool::bench::{Slots, Take};
use crate::protocol::{
    BackendEvent, BackendScanner, FrontendEvent, FrontendScanner, MessageBuilder, TxStatus,
};

/// The bytes of pgbench -S's simple Query, as a client sends them.
pub fn pgbench_query() -> Vec<u8> {
    let mut buf = BytesMut::new();
    MessageBuilder::query(
        &mut buf,
        "SELECT abalance FROM pgbench_accounts WHERE aid = 43210;",
    );
    buf.to_vec()
}

/// The server's reply to it: RowDescription, DataRow, CommandComplete, ReadyForQuery.
pub fn pgbench_reply() -> Vec<u8> {
    let mut buf = BytesMut::new();
    MessageBuilder::row_description(&mut buf, &[("abalance", 23)]);
    MessageBuilder::data_row(&mut buf, &[Some("0")]);
    MessageBuilder::command_complete(&mut buf, "SELECT 1");
    MessageBuilder::ready_for_query(&mut buf, TxStatus::Idle);
    buf.to_vec()
}

/// Walks client bytes as the relay does; returns the messages seen.
pub fn scan_frontend(data: &[u8]) -> usize {
    let mut scanner = FrontendScanner::default();
    let (mut at, mut messages) = (0, 0);
    while let Some(rest) = data.get(at..) {
        match scanner.next(rest) {
            Ok(FrontendEvent::Start(_)) => messages += 1,
            Ok(FrontendEvent::Pass(n)) => at += n,
            Ok(FrontendEvent::NeedMore) | Err(_) => break,
        }
    }
    messages
}

/// Walks server bytes as the relay does; returns the messages seen.
pub fn scan_backend(data: &[u8]) -> usize {
    let mut scanner = BackendScanner::default();
    let (mut at, mut messages) = (0, 0);
    while let Some(rest) = data.get(at..) {
        let Ok(event) = scanner.next(rest) else {
            break;
        };
        let len = event.len();
        match event {
            BackendEvent::NeedMore => break,
            BackendEvent::Start { .. } => continue,
            _ => {
                messages += 1;
                at += len;
            }
        }
    }
    messages
}

/// One pool's places, for timing checkouts and returns without servers.
pub struct Pool {
    slots: Arc<Slots>,
    /// The waiters' deadline, far off: the transaction path reads no clock for it either.
    deadline: Instant,
}

impl Pool {
    /// A pool of `size` places.
    pub fn new(size: usize) -> Self {
        Self {
            slots: Slots::new(size),
            deadline: Instant::now() + Duration::from_secs(24 * 3600),
        }
    }

    /// Takes a place and gives it back: a checkout that finds a place free.
    pub fn take_and_return(&self) -> bool {
        match self.slots.take(self.deadline) {
            Take::Claim(claim) => {
                drop(claim);
                true
            }
            _ => false,
        }
    }

    /// In a pool of one place: with it taken, a client queues; a place comes back and is handed to it:
    /// the checkout of a busy pool. Returns whether the hand-off arrived.
    pub fn hand_off(&self) -> bool {
        let Take::Claim(held) = self.slots.take(self.deadline) else {
            return false;
        };
        let Take::Wait(mut handed) = self.slots.take(self.deadline) else {
            return false;
        };
        drop(held);
        matches!(handed.try_recv(), Ok(Ok(_)))
    }
}
