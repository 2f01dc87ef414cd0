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
            tracing::info!(%addr, "Prometheus metrics at /metrics");
        }
        Err(e) => tracing::warn!(%addr, "metrics exporter not started: {e}"),
    }
}
