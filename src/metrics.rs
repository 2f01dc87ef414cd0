//! Metric names (all in one place), the Prometheus recorder, and the gauges refreshed
//! when `/metrics` is scraped.
//!
//! Owns: names, descriptions, installing the recorder. Labels are bounded: database,
//! user, host, role, state, reason; never query text or client addresses.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Metric names.
pub(crate) mod names {
    /// Client connections accepted.
    pub(crate) const CLIENTS_ACCEPTED_TOTAL: &str = "weir_clients_accepted_total";
    /// Clients that became pinned to a server, by `reason` (`server::probe::Pins::KINDS`).
    pub(crate) const CLIENT_PINS_TOTAL: &str = "weir_client_pins_total";
    /// Transactions (server leases) by `database` and `role` (`primary` / `replica`).
    pub(crate) const ROUTED_TOTAL: &str = "weir_routed_transactions_total";
    /// Transactions by `database`, `target` (primary / replica) and `reason`
    /// (`client::route::Reason`).
    pub(crate) const ROUTING_DECISIONS_TOTAL: &str = "weir_routing_decisions_total";
    /// Statement classifications answered from the router's cache (`result` = hit / miss).
    pub(crate) const ROUTER_CACHE_TOTAL: &str = "weir_router_cache_lookups_total";
    /// Requests the router could not parse, sent to the primary, by `database`.
    pub(crate) const ROUTER_UNPARSED_TOTAL: &str = "weir_router_unparsed_total";
    /// Primary changes seen by the health checks, by `database`.
    pub(crate) const FAILOVERS_TOTAL: &str = "weir_failovers_total";
    /// Hosts refused for claiming to be primary while another one is, by `database`.
    pub(crate) const SPLIT_BRAIN_TOTAL: &str = "weir_split_brain_refusals_total";
    /// Replicas weir promoted (`cluster.auto_promote`), by `database`.
    pub(crate) const PROMOTIONS_TOTAL: &str = "weir_promotions_total";
    /// Client logins refused for a wrong password or unknown user.
    pub(crate) const AUTH_FAILURES_TOTAL: &str = "weir_auth_failures_total";
    /// Client connections ended for breaking the protocol.
    pub(crate) const PROTOCOL_ERRORS_TOTAL: &str = "weir_protocol_errors_total";
    /// Seconds clients waited for a server, per pool.
    pub(crate) const WAIT_SECONDS: &str = "weir_pool_wait_seconds";
    /// Seconds from a request to its answer, per pool.
    pub(crate) const QUERY_SECONDS: &str = "weir_pool_query_seconds";
    /// Seconds a server was leased for one transaction, per pool.
    pub(crate) const XACT_SECONDS: &str = "weir_pool_transaction_seconds";
    /// Clients per pool by `state`: active, waiting, idle, pinned.
    pub(crate) const POOL_CLIENTS: &str = "weir_pool_clients";
    /// Server connections per pool by `state`: active, idle, used, tested, login.
    pub(crate) const POOL_SERVERS: &str = "weir_pool_servers";
    /// Transactions per pool.
    pub(crate) const POOL_XACTS_TOTAL: &str = "weir_pool_transactions_total";
    /// Requests (Queries and Syncs) per pool.
    pub(crate) const POOL_QUERIES_TOTAL: &str = "weir_pool_queries_total";
    /// Bytes from clients to servers per pool.
    pub(crate) const POOL_RECEIVED_TOTAL: &str = "weir_pool_received_bytes_total";
    /// Bytes from servers to clients per pool.
    pub(crate) const POOL_SENT_TOTAL: &str = "weir_pool_sent_bytes_total";
    /// 1 when a host answered its last health check.
    pub(crate) const HOST_UP: &str = "weir_host_up";
    /// 1 for a host's current role (`role` label), 0 for the others.
    pub(crate) const HOST_ROLE: &str = "weir_host_role";
    /// A replica's lag in bytes of WAL.
    pub(crate) const HOST_LAG_BYTES: &str = "weir_host_lag_bytes";
    /// A replica's lag in seconds.
    pub(crate) const HOST_LAG_SECONDS: &str = "weir_host_lag_seconds";
    /// Client connections open now (logged in or logging in).
    pub(crate) const CLIENTS_CONNECTED: &str = "weir_clients_connected";
    /// Databases paused by PAUSE or KILL (1) or not (0).
    pub(crate) const DATABASE_PAUSED: &str = "weir_database_paused";
    /// Resident memory of the weir process.
    pub(crate) const RESIDENT_BYTES: &str = "weir_process_resident_memory_bytes";
}

/// Histogram buckets, in seconds: 100 µs to 30 s.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The process's Prometheus recorder, installed on first use (`None` if another recorder
/// was installed first, e.g. by an embedding program).
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = match PrometheusBuilder::new().set_buckets(BUCKETS) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("metrics not started: {e}");
                    return None;
                }
            };
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!("metrics not started: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// The recorder's handle if `handle` installed it already (never installs one).
pub(crate) fn handle_if_installed() -> Option<&'static PrometheusHandle> {
    HANDLE.get().and_then(Option::as_ref)
}

/// The recorder installed by `handle`, once per process.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(names::CLIENTS_ACCEPTED_TOTAL, "Client connections accepted");
    describe_counter!(
        names::CLIENT_PINS_TOTAL,
        "Clients pinned to their server in transaction mode, by reason"
    );
    describe_counter!(
        names::ROUTED_TOTAL,
        "Transactions given a server, by database and role (primary or replica)"
    );
    describe_counter!(
        names::ROUTING_DECISIONS_TOTAL,
        "Transactions by target (primary or replica) and the reason for it"
    );
    describe_counter!(
        names::ROUTER_CACHE_TOTAL,
        "Statement classifications looked up in the router's cache, by result (hit or miss)"
    );
    describe_counter!(
        names::ROUTER_UNPARSED_TOTAL,
        "Requests the router could not parse and sent to the primary"
    );
    describe_counter!(
        names::FAILOVERS_TOTAL,
        "Primary changes seen by the health checks"
    );
    describe_counter!(
        names::SPLIT_BRAIN_TOTAL,
        "Hosts refused for claiming to be primary while another one is"
    );
    describe_counter!(
        names::PROMOTIONS_TOTAL,
        "Replicas weir promoted after the primary was gone for cluster.promote_after"
    );
    describe_counter!(
        names::AUTH_FAILURES_TOTAL,
        "Client logins refused: wrong password or unknown user"
    );
    describe_counter!(
        names::PROTOCOL_ERRORS_TOTAL,
        "Client connections closed for breaking the protocol"
    );
    describe_histogram!(
        names::WAIT_SECONDS,
        Unit::Seconds,
        "Time clients waited for a server connection"
    );
    describe_histogram!(
        names::QUERY_SECONDS,
        Unit::Seconds,
        "Time from a request to its answer"
    );
    describe_histogram!(
        names::XACT_SECONDS,
        Unit::Seconds,
        "Time a server connection was leased for one transaction"
    );
    describe_gauge!(
        names::POOL_CLIENTS,
        "Clients of a pool by state (active, waiting, idle, pinned)"
    );
    describe_gauge!(
        names::POOL_SERVERS,
        "Server connections of a pool by state (active, idle, used, tested, login)"
    );
    describe_counter!(names::POOL_XACTS_TOTAL, "Transactions served by a pool");
    describe_counter!(
        names::POOL_QUERIES_TOTAL,
        "Requests (Query or Sync) served by a pool"
    );
    describe_counter!(
        names::POOL_RECEIVED_TOTAL,
        Unit::Bytes,
        "Bytes passed from clients to servers"
    );
    describe_counter!(
        names::POOL_SENT_TOTAL,
        Unit::Bytes,
        "Bytes passed from servers to clients"
    );
    describe_gauge!(
        names::HOST_UP,
        "1 when the host answered its last health check"
    );
    describe_gauge!(
        names::HOST_ROLE,
        "1 for the host's current role, 0 for the others"
    );
    describe_gauge!(
        names::HOST_LAG_BYTES,
        Unit::Bytes,
        "Replica lag behind the primary in WAL bytes"
    );
    describe_gauge!(
        names::HOST_LAG_SECONDS,
        Unit::Seconds,
        "Replica lag behind the primary in seconds"
    );
    describe_gauge!(names::CLIENTS_CONNECTED, "Client connections open now");
    describe_gauge!(
        names::DATABASE_PAUSED,
        "1 while the database is paused (PAUSE or KILL)"
    );
    describe_gauge!(
        names::RESIDENT_BYTES,
        Unit::Bytes,
        "Resident memory of the weir process"
    );
}
