//! Metric names (all in one place) and the Prometheus exporter.
//!
//! Owns: names, descriptions, exporter installation. Labels are bounded: pool, database,
//! user, host, role, outcome; never query text or client addresses.

use std::net::SocketAddr;

/// Metric names.
pub(crate) mod names {
    /// Client connections accepted.
    pub(crate) const CLIENTS_ACCEPTED_TOTAL: &str = "weir_clients_accepted_total";
    /// Clients that became pinned to a server, by `reason` (`server::probe::Pins::KINDS`).
    pub(crate) const CLIENT_PINS_TOTAL: &str = "weir_client_pins_total";
    /// Transactions (server leases) by `database` and `role` (`primary` / `replica`).
    pub(crate) const ROUTED_TOTAL: &str = "weir_routed_transactions_total";
    /// Requests the router could not parse, sent to the primary, by `database`.
    pub(crate) const ROUTER_UNPARSED_TOTAL: &str = "weir_router_unparsed_total";
    /// Primary changes seen by the health checks, by `database`.
    pub(crate) const FAILOVERS_TOTAL: &str = "weir_failovers_total";
    /// Hosts refused for claiming to be primary while another one is, by `database`.
    pub(crate) const SPLIT_BRAIN_TOTAL: &str = "weir_split_brain_refusals_total";
    /// Replicas weir promoted (`cluster.auto_promote`), by `database`.
    pub(crate) const PROMOTIONS_TOTAL: &str = "weir_promotions_total";
}

/// Installs the Prometheus exporter on `addr` (once per process; later calls only log).
pub(crate) fn install(addr: SocketAddr) {
    let result = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install();
    match result {
        Ok(()) => {
            metrics::describe_counter!(
                names::CLIENTS_ACCEPTED_TOTAL,
                "Client connections accepted"
            );
            metrics::describe_counter!(
                names::CLIENT_PINS_TOTAL,
                "Clients pinned to their server in transaction mode, by reason"
            );
            metrics::describe_counter!(
                names::ROUTED_TOTAL,
                "Transactions given a server, by database and role (primary or replica)"
            );
            metrics::describe_counter!(
                names::ROUTER_UNPARSED_TOTAL,
                "Requests the router could not parse and sent to the primary"
            );
            metrics::describe_counter!(
                names::FAILOVERS_TOTAL,
                "Primary changes seen by the health checks"
            );
            metrics::describe_counter!(
                names::SPLIT_BRAIN_TOTAL,
                "Hosts refused for claiming to be primary while another one is"
            );
            metrics::describe_counter!(
                names::PROMOTIONS_TOTAL,
                "Replicas weir promoted after the primary was gone for cluster.promote_after"
            );
            tracing::info!(%addr, "Prometheus metrics at /metrics");
        }
        Err(e) => tracing::warn!(%addr, "metrics exporter not started: {e}"),
    }
}
