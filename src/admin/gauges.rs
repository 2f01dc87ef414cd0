//! What `/metrics` and `/health` read: gauges set from the live state at scrape time,
//! and the health verdict.
//!
//! Owns: turning pools, clients and hosts into gauge values. Counters and histograms are
//! updated where events happen; here only point-in-time values and the pools' running
//! totals (as absolute counters) are written.

use std::collections::HashMap;

use metrics::{counter, gauge};

use crate::app::Shared;
use crate::cancel::ClientState;
use crate::cluster::Role;
use crate::metrics::names;

/// Roles a host can have, for the zeroed series of `weir_host_role` and pool gauges.
const ROLES: [Role; 3] = [Role::Primary, Role::Replica, Role::Unknown];

/// Client counts of one (database, user, host index) by state.
#[derive(Default)]
struct States {
    active: u64,
    waiting: u64,
    idle: u64,
    pinned: u64,
}

/// Sets every gauge from the state now (called before each `/metrics` render).
pub(crate) fn refresh_gauges(shared: &Shared) {
    let snap = shared.snapshot();
    let mut clients: HashMap<(String, String, usize), States> = HashMap::new();
    for (_, slot) in shared.cancel.clients() {
        let info = &slot.info;
        let s = clients
            .entry((info.database.clone(), info.user.clone(), info.host()))
            .or_default();
        match info.state() {
            ClientState::Waiting | ClientState::Held => s.waiting += 1,
            ClientState::Active => s.active += 1,
            ClientState::Idle if info.pins() != 0 => s.pinned += 1,
            ClientState::Idle => s.idle += 1,
        }
    }
    gauge!(names::CLIENTS_CONNECTED)
        .set(shared.clients.load(std::sync::atomic::Ordering::Relaxed) as f64);
    gauge!(names::RESIDENT_BYTES).set(super::resident_bytes() as f64);
    for pool in shared.pools.all() {
        let db = snap.databases.get(&pool.database);
        for (i, hp) in pool.hosts.iter().enumerate() {
            let role = db.map_or(Role::Unknown, |db| db.cluster.role_of(i));
            let labels = |role: Role| {
                [
                    ("database", pool.database.clone()),
                    ("user", pool.user.clone()),
                    ("host", hp.addr.clone()),
                    ("role", role.as_str().to_owned()),
                ]
            };
            let c = hp.counts();
            let s = clients
                .remove(&(pool.database.clone(), pool.user.clone(), i))
                .unwrap_or_default();
            for r in ROLES {
                let on = |v: u64| if r == role { v as f64 } else { 0.0 };
                let with_state = |state: &'static str| {
                    let mut l = labels(r).to_vec();
                    l.push(("state", state.to_owned()));
                    l
                };
                for (state, v) in [
                    ("active", s.active),
                    ("waiting", s.waiting),
                    ("idle", s.idle),
                    ("pinned", s.pinned),
                ] {
                    gauge!(names::POOL_CLIENTS, &with_state(state)).set(on(v));
                }
                for (state, v) in [
                    ("active", c.active),
                    ("idle", c.idle),
                    ("used", 0),
                    ("tested", 0),
                    ("login", c.login),
                ] {
                    gauge!(names::POOL_SERVERS, &with_state(state)).set(on(v as u64));
                }
            }
            let t = hp.live.totals.load();
            let l = [
                ("database", pool.database.clone()),
                ("user", pool.user.clone()),
                ("host", hp.addr.clone()),
            ];
            counter!(names::POOL_XACTS_TOTAL, &l).absolute(t.xacts);
            counter!(names::POOL_QUERIES_TOTAL, &l).absolute(t.queries);
            counter!(names::POOL_RECEIVED_TOTAL, &l).absolute(t.received);
            counter!(names::POOL_SENT_TOTAL, &l).absolute(t.sent);
        }
    }
    for (name, db) in &snap.databases {
        gauge!(names::DATABASE_PAUSED, "database" => name.clone())
            .set(f64::from(u8::from(db.control.is_paused())));
        for (i, h) in db.cluster.hosts().into_iter().enumerate() {
            let l = [("database", name.clone()), ("host", h.addr.clone())];
            let up = db.cluster.is_healthy(i);
            gauge!(names::HOST_UP, &l).set(f64::from(u8::from(up)));
            let role = db.cluster.role_of(i);
            for r in ROLES {
                let mut rl = l.to_vec();
                rl.push(("role", r.as_str().to_owned()));
                gauge!(names::HOST_ROLE, &rl).set(f64::from(u8::from(r == role)));
            }
            gauge!(names::HOST_LAG_BYTES, &l).set(h.lag_bytes.unwrap_or(0) as f64);
            gauge!(names::HOST_LAG_SECONDS, &l).set(h.lag.map_or(0.0, |d| d.as_secs_f64()));
        }
    }
}

/// `/health`: healthy when weir accepts clients and every database knows its primary.
pub(crate) fn health(shared: &Shared) -> (bool, String) {
    if *shared.closing.borrow() || *shared.shutdown.borrow() {
        return (false, "shutting down: not accepting clients\n".to_owned());
    }
    let snap = shared.snapshot();
    let mut missing: Vec<&str> = snap
        .databases
        .iter()
        .filter(|(_, db)| db.cluster.primary_index().is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    missing.sort_unstable();
    if missing.is_empty() {
        (true, "ok\n".to_owned())
    } else {
        (
            false,
            format!("no primary known for: {}\n", missing.join(", ")),
        )
    }
}
