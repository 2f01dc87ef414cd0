//! Per-database switches the admin console flips: PAUSE / RESUME and DISABLE / ENABLE.
//!
//! Owns: the switches and the wait for a paused database to resume. They outlive a
//! RELOAD (the new snapshot takes the old switches), so a paused database stays paused.
//! Does not: count or wait for running transactions (the admin console does, from the
//! client registry).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// The switches of one database.
#[derive(Debug)]
pub(crate) struct DbControl {
    /// `true` while paused: new transactions wait at `wait_resumed`. The receiver side is
    /// only used on the slow path; the hot path reads `paused` below.
    gate: watch::Sender<bool>,
    /// Mirrors the gate, so a transaction pays one relaxed load when nothing is paused.
    paused: AtomicBool,
    /// New logins are refused while set.
    disabled: AtomicBool,
}

impl Default for DbControl {
    fn default() -> Self {
        Self {
            gate: watch::channel(false).0,
            paused: AtomicBool::new(false),
            disabled: AtomicBool::new(false),
        }
    }
}

impl DbControl {
    /// Holds new transactions until `resume`.
    pub(crate) fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.gate.send_replace(true);
    }

    /// Lets held and new transactions go.
    pub(crate) fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.gate.send_replace(false);
    }

    /// Whether new transactions are held. Sequentially consistent: see
    /// `ClientInfo::waiting` for the other half.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Refuses (`true`) or admits (`false`) new logins.
    pub(crate) fn set_disabled(&self, disabled: bool) {
        self.disabled.store(disabled, Ordering::SeqCst);
    }

    /// Whether new logins are refused.
    pub(crate) fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    /// Returns once the database is not paused.
    pub(crate) async fn wait_resumed(&self) {
        let mut rx = self.gate.subscribe();
        // The sender lives as long as `self`, so this only ends by resuming.
        let _ = rx.wait_for(|paused| !*paused).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_paused_database_holds_until_resumed() {
        let c = std::sync::Arc::new(DbControl::default());
        c.wait_resumed().await;
        c.pause();
        assert!(c.is_paused());
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.wait_resumed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        c.resume();
        waiter.await.expect("resumed");
        assert!(!c.is_paused());
    }
}
