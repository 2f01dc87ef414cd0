//! The SHOW commands: their columns (PgBouncer 1.18's names, types and order where
//! PgBouncer has the command) and their rows, read from the shared state.
//!
//! Owns: turning registries, pools and totals into rows of text.
//! Does not: change anything.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::app::Shared;
use crate::stats::{format_time, Rates, Totals};

use super::columns::*;
use super::settings;

/// PostgreSQL type OIDs used in the console's columns.
pub(super) const TEXT: u32 = 25;
pub(super) const INT4: u32 = 23;
pub(super) const INT8: u32 = 20;
pub(super) const NUMERIC: u32 = 1700;

/// One result column: name and type OID.
pub(super) type Column = (&'static str, u32);

/// A result: its columns, then its rows (values as text, `None` for NULL).
pub(super) type Rows = Vec<Vec<Option<String>>>;

/// Which SHOW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Show {
    /// The commands, as a notice.
    Help,
    /// Per (database, user): clients and servers by state.
    Pools,
    /// Per logged-in client.
    Clients,
    /// Per server connection.
    Servers,
    /// Per database: totals and averages.
    Stats,
    /// Per database: totals.
    StatsTotals,
    /// Per database: averages over the last 15 s.
    StatsAverages,
    /// All databases' totals and averages, one figure per row.
    Totals,
    /// Per configured database.
    Databases,
    /// Per configured user.
    Users,
    /// Per configuration key.
    Config,
    /// PgBouncer's list sizes.
    Lists,
    /// weir's version.
    Version,
    /// weir's memory.
    Mem,
    /// weir's own: per (database, host).
    Hosts,
    /// weir's own: clients pinned to a server.
    Pinned,
    /// Always empty: the OS resolves names.
    DnsHosts,
    /// Always empty: the OS resolves names.
    DnsZones,
}

impl Show {
    /// The SHOW named `name` (any case).
    pub(super) fn from_name(name: &str) -> Option<Show> {
        Some(match name.to_ascii_uppercase().as_str() {
            "HELP" => Show::Help,
            "POOLS" => Show::Pools,
            "CLIENTS" => Show::Clients,
            "SERVERS" => Show::Servers,
            "STATS" => Show::Stats,
            "STATS_TOTALS" => Show::StatsTotals,
            "STATS_AVERAGES" => Show::StatsAverages,
            "TOTALS" => Show::Totals,
            "DATABASES" => Show::Databases,
            "USERS" => Show::Users,
            "CONFIG" => Show::Config,
            "LISTS" => Show::Lists,
            "VERSION" => Show::Version,
            "MEM" => Show::Mem,
            "HOSTS" => Show::Hosts,
            "PINNED" => Show::Pinned,
            "DNS_HOSTS" => Show::DnsHosts,
            "DNS_ZONES" => Show::DnsZones,
            _ => return None,
        })
    }

    /// Its columns; empty for SHOW HELP, which answers with a notice only.
    pub(super) fn columns(self) -> &'static [Column] {
        match self {
            Show::Help => &[],
            Show::Pools => POOLS,
            Show::Clients => CLIENTS,
            Show::Servers => SERVERS,
            Show::Stats => STATS,
            Show::StatsTotals | Show::StatsAverages => STATS_PARTS,
            Show::Totals => TOTALS,
            Show::Databases => DATABASES,
            Show::Users => USERS,
            Show::Config => CONFIG,
            Show::Lists => LISTS,
            Show::Version => VERSION,
            Show::Mem => MEM,
            Show::Hosts => HOSTS,
            Show::Pinned => PINNED,
            Show::DnsHosts => DNS_HOSTS,
            Show::DnsZones => DNS_ZONES,
        }
    }

    /// Its rows now.
    pub(super) fn rows(self, shared: &Shared) -> Rows {
        match self {
            Show::Help | Show::DnsHosts | Show::DnsZones => Vec::new(),
            Show::Pools => pools(shared),
            Show::Clients => clients(shared),
            Show::Servers => servers(shared),
            Show::Stats => stats(shared),
            Show::StatsTotals => per_database(shared)
                .into_iter()
                .map(|(db, t, _)| parts(db, &t.parts()))
                .collect(),
            Show::StatsAverages => per_database(shared)
                .into_iter()
                .map(|(db, _, r)| parts(db, &r.parts()))
                .collect(),
            Show::Totals => totals(shared),
            Show::Databases => databases(shared),
            Show::Users => shared
                .snapshot()
                .config
                .users
                .iter()
                .map(|u| vec![Some(u.name.clone()), None])
                .collect(),
            Show::Config => settings::rows(&shared.snapshot().config),
            Show::Lists => lists(shared),
            Show::Version => vec![vec![Some(version())]],
            Show::Mem => mem(),
            Show::Hosts => hosts(shared),
            Show::Pinned => pinned(shared),
        }
    }
}

/// What SHOW VERSION says.
pub(crate) fn version() -> String {
    format!("weir {}", env!("CARGO_PKG_VERSION"))
}

fn text(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// What the clients of one (database, user) are doing.
#[derive(Default)]
struct ClientCounts {
    active: usize,
    waiting: usize,
    /// When the longest-waiting client started waiting.
    oldest_wait: Option<SystemTime>,
}

fn pools(shared: &Shared) -> Rows {
    let mut clients: HashMap<(String, String), ClientCounts> = HashMap::new();
    for (_, slot) in shared.cancel.clients() {
        let info = &slot.info;
        let c = clients
            .entry((info.database.clone(), info.user.clone()))
            .or_default();
        if info.state().waits() {
            c.waiting += 1;
            let since = info.request_at();
            c.oldest_wait = Some(c.oldest_wait.map_or(since, |o| o.min(since)));
        } else {
            c.active += 1;
        }
    }
    let mode = shared.snapshot().config.pool.mode.as_str();
    let mut pools = shared.pools.all();
    pools.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
    pools
        .iter()
        .map(|pool| {
            let key = (pool.database.clone(), pool.user.clone());
            let c = clients.remove(&key).unwrap_or_default();
            let (mut active, mut idle, mut login) = (0, 0, 0);
            for hp in &pool.hosts {
                let n = hp.counts();
                active += n.active;
                idle += n.idle;
                login += n.login;
            }
            let waited = c
                .oldest_wait
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            vec![
                text(&pool.database),
                text(&pool.user),
                text(c.active),
                text(c.waiting),
                text(0),
                text(0),
                text(active),
                text(0),
                text(0),
                text(idle),
                text(0),
                text(0),
                text(login),
                text(waited.as_secs()),
                text(waited.subsec_micros()),
                text(mode),
            ]
        })
        .collect()
}

/// A client's or server's `ptr`: an id unique among both (servers are offset by 2^40).
pub(super) fn client_ptr(process_id: i32) -> String {
    format!("0x{:x}", process_id)
}

fn server_ptr(process_id: i32) -> String {
    format!(
        "0x{:x}",
        (1u64 << 40) | u64::from(process_id.unsigned_abs())
    )
}

/// `addr` and `port` columns of a socket address.
fn addr_port(a: Option<std::net::SocketAddr>) -> [Option<String>; 2] {
    match a {
        Some(a) => [text(a.ip()), text(a.port())],
        None => [text("unix"), text(0)],
    }
}

fn clients(shared: &Shared) -> Rows {
    let mut all = shared.cancel.clients();
    all.sort_by_key(|(pid, _)| *pid);
    let now = SystemTime::now();
    all.iter()
        .map(|(pid, slot)| {
            let info = &slot.info;
            let state = info.state();
            let waited = if state.waits() {
                now.duration_since(info.request_at()).unwrap_or_default()
            } else {
                std::time::Duration::ZERO
            };
            let link = slot.server().map(server_ptr).unwrap_or_default();
            let [addr, port] = addr_port(info.addr);
            let [laddr, lport] = addr_port(info.local);
            vec![
                text("C"),
                text(&info.user),
                text(&info.database),
                text(if state.waits() { "waiting" } else { "active" }),
                addr,
                port,
                laddr,
                lport,
                text(format_time(info.connected)),
                text(format_time(info.request_at())),
                text(waited.as_secs()),
                text(waited.subsec_micros()),
                text(0),
                text(client_ptr(*pid)),
                text(link),
                text(pid),
                text(&info.tls),
                text(&info.application_name),
                text(crate::server::probe::Pins::from_bits(info.pins())),
            ]
        })
        .collect()
}

fn pinned(shared: &Shared) -> Rows {
    let mut all = shared.cancel.clients();
    all.retain(|(_, slot)| slot.info.pins() != 0);
    all.sort_by_key(|(pid, _)| *pid);
    all.iter()
        .map(|(pid, slot)| {
            let info = &slot.info;
            let server = info.pinned_to().or_else(|| slot.server());
            vec![
                text(client_ptr(*pid)),
                text(&info.user),
                text(&info.database),
                text(server.map(server_ptr).unwrap_or_default()),
                server.map(|s| s.to_string()),
                text(crate::server::probe::Pins::from_bits(info.pins())),
            ]
        })
        .collect()
}

fn servers(shared: &Shared) -> Rows {
    let mut rows = Vec::new();
    for pool in shared.pools.all() {
        for hp in &pool.hosts {
            let generation = hp.generation();
            for s in hp.servers() {
                let (host, port) = hp.addr.rsplit_once(':').unwrap_or((&hp.addr, "0"));
                let [laddr, lport] = addr_port(s.local);
                let active = s.state() == crate::stats::ServerState::Active;
                rows.push(vec![
                    text("S"),
                    text(&pool.user),
                    text(&pool.database),
                    text(if active { "active" } else { "idle" }),
                    text(host),
                    text(port),
                    laddr,
                    lport,
                    text(format_time(s.connected)),
                    text(format_time(s.leased_at())),
                    text(0),
                    text(0),
                    text(u8::from(s.generation() < generation)),
                    text(server_ptr(s.process_id)),
                    text(s.link().map(client_ptr).unwrap_or_default()),
                    text(s.process_id),
                    text(&s.tls),
                    text(""),
                ]);
            }
        }
    }
    rows
}

/// Totals and rates per database, in configuration order.
fn per_database(shared: &Shared) -> Vec<(String, Totals, Rates)> {
    let snap = shared.snapshot();
    let mut totals = shared.pools.totals_by_database();
    snap.config
        .databases
        .iter()
        .map(|d| {
            let total = totals.remove(&d.name).unwrap_or_default();
            let rates = shared.history.rates(&d.name);
            (d.name.clone(), total, rates)
        })
        .collect()
}

/// A database name followed by seven figures.
fn parts(db: String, figures: &[u64; 7]) -> Vec<Option<String>> {
    std::iter::once(Some(db))
        .chain(figures.iter().map(text))
        .collect()
}

fn stats(shared: &Shared) -> Rows {
    per_database(shared)
        .into_iter()
        .map(|(db, t, r)| {
            let mut row = parts(db, &t.parts());
            row.extend(r.parts().iter().map(text));
            row.push(text(t.queries));
            row
        })
        .collect()
}

fn totals(shared: &Shared) -> Rows {
    let (t, r) = per_database(shared).into_iter().fold(
        (Totals::default(), Rates::default()),
        |(t, r), (_, dt, dr)| (t.plus(dt), r.plus(&dr)),
    );
    let names = [
        "xact_count",
        "query_count",
        "client_bytes",
        "server_bytes",
        "xact_time",
        "query_time",
        "wait_time",
    ];
    let total = names
        .iter()
        .zip(t.parts())
        .map(|(n, v)| (format!("total_{n}"), v));
    let avg = names
        .iter()
        .zip(r.parts())
        .map(|(n, v)| (format!("avg_{n}"), v));
    total
        .chain(avg)
        .map(|(n, v)| vec![Some(n), text(v)])
        .collect()
}

fn databases(shared: &Shared) -> Rows {
    let snap = shared.snapshot();
    let pools = shared.pools.all();
    snap.config
        .databases
        .iter()
        .map(|d| {
            let db = snap.databases.get(&d.name);
            // Where writes go now: the primary when known, else the first host.
            let host = db
                .and_then(|db| db.cluster.primary_index())
                .and_then(|i| d.hosts.get(i))
                .or_else(|| d.hosts.first());
            let open: usize = pools
                .iter()
                .filter(|p| p.database == d.name)
                .flat_map(|p| p.hosts.iter())
                .map(|hp| hp.servers().len())
                .sum();
            let flag = |on: bool| text(u8::from(on));
            vec![
                text(&d.name),
                host.map(|h| h.host.clone()),
                host.map(|h| h.port.to_string()),
                text(&d.dbname),
                None,
                text(snap.config.pool.size),
                text(snap.config.pool.min_size),
                text(0),
                None,
                text(0),
                text(open),
                flag(db.is_some_and(|db| db.control.is_paused())),
                flag(db.is_some_and(|db| db.control.is_disabled())),
            ]
        })
        .collect()
}

fn lists(shared: &Shared) -> Rows {
    let snap = shared.snapshot();
    let pools = shared.pools.all();
    let logged_in = shared.cancel.clients().len();
    let connected = shared.clients.load(std::sync::atomic::Ordering::Relaxed);
    let servers: usize = pools
        .iter()
        .flat_map(|p| p.hosts.iter())
        .map(|hp| hp.servers().len())
        .sum();
    [
        ("databases", snap.config.databases.len()),
        ("users", snap.config.users.len()),
        ("pools", pools.len()),
        ("free_clients", 0),
        ("used_clients", logged_in),
        ("login_clients", connected.saturating_sub(logged_in)),
        ("free_servers", 0),
        ("used_servers", servers),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ]
    .into_iter()
    .map(|(name, n)| vec![text(name), text(n)])
    .collect()
}

/// weir has no fixed-size caches like PgBouncer's; it reports its resident memory.
fn mem() -> Rows {
    let rss = resident_bytes();
    vec![vec![
        text("process_rss"),
        text(rss),
        text(1),
        text(0),
        text(rss),
    ]]
}

/// The process's resident set in bytes (Linux), 0 where unknown.
pub(crate) fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn hosts(shared: &Shared) -> Rows {
    let snap = shared.snapshot();
    let pools = shared.pools.all();
    let mut rows = Vec::new();
    for d in &snap.config.databases {
        let Some(db) = snap.databases.get(&d.name) else {
            continue;
        };
        for (i, h) in db.cluster.hosts().into_iter().enumerate() {
            let (mut n, mut active, mut idle) = (0, 0, 0);
            for p in pools.iter().filter(|p| p.database == d.name) {
                if let Some(hp) = p.hosts.get(i) {
                    let c = hp.counts();
                    n += 1;
                    active += c.active;
                    idle += c.idle;
                }
            }
            rows.push(vec![
                text(&d.name),
                text(&h.addr),
                text(db.cluster.role_of(i).as_str()),
                text(u8::from(db.cluster.is_healthy(i))),
                h.lag_bytes.map(|b| b.to_string()),
                h.lag.map(|l| l.as_millis().to_string()),
                h.last_role_change.map(format_time),
                h.last_check.map(format_time),
                text(n),
                text(active),
                text(idle),
                h.last_error.clone(),
            ]);
        }
    }
    rows
}
