//! The result columns of every SHOW: names and type OIDs, in PgBouncer 1.18's order where
//! PgBouncer has the command (`tests/admin.rs` compares them with a real PgBouncer).

use super::show::{Column, INT4, INT8, NUMERIC, TEXT};

pub(super) const POOLS: &[Column] = &[
    ("database", TEXT),
    ("user", TEXT),
    ("cl_active", INT4),
    ("cl_waiting", INT4),
    ("cl_active_cancel_req", INT4),
    ("cl_waiting_cancel_req", INT4),
    ("sv_active", INT4),
    ("sv_active_cancel", INT4),
    ("sv_being_canceled", INT4),
    ("sv_idle", INT4),
    ("sv_used", INT4),
    ("sv_tested", INT4),
    ("sv_login", INT4),
    ("maxwait", INT4),
    ("maxwait_us", INT4),
    ("pool_mode", TEXT),
];

/// SHOW CLIENTS: PgBouncer 1.18's columns, plus `pins`: why transaction mode keeps the
/// client on its server (empty when nothing does).
pub(super) const CLIENTS: &[Column] = &[
    ("type", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("state", TEXT),
    ("addr", TEXT),
    ("port", INT4),
    ("local_addr", TEXT),
    ("local_port", INT4),
    ("connect_time", TEXT),
    ("request_time", TEXT),
    ("wait", INT4),
    ("wait_us", INT4),
    ("close_needed", INT4),
    ("ptr", TEXT),
    ("link", TEXT),
    ("remote_pid", INT4),
    ("tls", TEXT),
    ("application_name", TEXT),
    ("pins", TEXT),
];

/// SHOW SERVERS: PgBouncer 1.18's columns.
pub(super) const SERVERS: &[Column] = &[
    ("type", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("state", TEXT),
    ("addr", TEXT),
    ("port", INT4),
    ("local_addr", TEXT),
    ("local_port", INT4),
    ("connect_time", TEXT),
    ("request_time", TEXT),
    ("wait", INT4),
    ("wait_us", INT4),
    ("close_needed", INT4),
    ("ptr", TEXT),
    ("link", TEXT),
    ("remote_pid", INT4),
    ("tls", TEXT),
    ("application_name", TEXT),
];

/// PgBouncer 1.18's SHOW STATS, plus `total_requests` (= `total_query_count`), the
/// pre-1.8 column Debian's prometheus-pgbouncer-exporter 1.7 still reads.
pub(super) const STATS: &[Column] = &[
    ("database", TEXT),
    ("total_xact_count", NUMERIC),
    ("total_query_count", NUMERIC),
    ("total_received", NUMERIC),
    ("total_sent", NUMERIC),
    ("total_xact_time", NUMERIC),
    ("total_query_time", NUMERIC),
    ("total_wait_time", NUMERIC),
    ("avg_xact_count", NUMERIC),
    ("avg_query_count", NUMERIC),
    ("avg_recv", NUMERIC),
    ("avg_sent", NUMERIC),
    ("avg_xact_time", NUMERIC),
    ("avg_query_time", NUMERIC),
    ("avg_wait_time", NUMERIC),
    ("total_requests", NUMERIC),
];

/// SHOW STATS_TOTALS and SHOW STATS_AVERAGES share these.
pub(super) const STATS_PARTS: &[Column] = &[
    ("database", TEXT),
    ("xact_count", NUMERIC),
    ("query_count", NUMERIC),
    ("bytes_received", NUMERIC),
    ("bytes_sent", NUMERIC),
    ("xact_time", NUMERIC),
    ("query_time", NUMERIC),
    ("wait_time", NUMERIC),
];

pub(super) const TOTALS: &[Column] = &[("name", TEXT), ("value", NUMERIC)];

pub(super) const DATABASES: &[Column] = &[
    ("name", TEXT),
    ("host", TEXT),
    ("port", INT4),
    ("database", TEXT),
    ("force_user", TEXT),
    ("pool_size", INT4),
    ("min_pool_size", INT4),
    ("reserve_pool", INT4),
    ("pool_mode", TEXT),
    ("max_connections", INT4),
    ("current_connections", INT4),
    ("paused", INT4),
    ("disabled", INT4),
];

pub(super) const USERS: &[Column] = &[("name", TEXT), ("pool_mode", TEXT)];
pub(super) const CONFIG: &[Column] = &[
    ("key", TEXT),
    ("value", TEXT),
    ("default", TEXT),
    ("changeable", TEXT),
];
pub(super) const LISTS: &[Column] = &[("list", TEXT), ("items", INT4)];
pub(super) const VERSION: &[Column] = &[("version", TEXT)];
pub(super) const MEM: &[Column] = &[
    ("name", TEXT),
    ("size", INT4),
    ("used", INT4),
    ("free", INT4),
    ("memtotal", INT4),
];

/// weir's own: one row per (database, host).
pub(super) const HOSTS: &[Column] = &[
    ("database", TEXT),
    ("host", TEXT),
    ("role", TEXT),
    ("healthy", INT4),
    ("lag_bytes", INT8),
    ("lag_ms", INT8),
    ("last_role_change", TEXT),
    ("last_check", TEXT),
    ("pools", INT4),
    ("sv_active", INT4),
    ("sv_idle", INT4),
    ("last_error", TEXT),
];

/// weir's own: clients kept on their server by session state (transaction mode).
pub(super) const PINNED: &[Column] = &[
    ("ptr", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("link", TEXT),
    ("remote_pid", INT4),
    ("pins", TEXT),
];

pub(super) const DNS_HOSTS: &[Column] = &[("hostname", TEXT), ("ttl", INT8), ("addrs", TEXT)];
pub(super) const DNS_ZONES: &[Column] = &[("zonename", TEXT), ("serial", INT8), ("count", INT4)];

/// SHOW HELP's notice: what the console understands.
pub(super) const HELP: &str = "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n\tSHOW HOSTS|PINNED|LISTS|MEM|DNS_HOSTS|DNS_ZONES\n\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n\tSET key = arg\n\tRELOAD\n\tPAUSE [<db>]\n\tRESUME [<db>]\n\tDISABLE <db>\n\tENABLE <db>\n\tRECONNECT [<db>]\n\tKILL <db>\n\tKILL_CLIENT <id>\n\tWAIT_CLOSE [<db>]\n\tSHUTDOWN [WAIT_FOR_CLIENTS]";
