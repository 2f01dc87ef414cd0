//! weir: a PostgreSQL connection pooler and router.
//!
//! Clients speak the PostgreSQL protocol to weir; weir multiplexes their transactions
//! onto a small pool of server connections. See docs/architecture.md for the map.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, clippy::await_holding_lock)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod admin;
mod app;
mod auth;
#[doc(hidden)]
pub mod benching;
mod cancel;
mod client;
mod cluster;
pub mod config;
mod control;
pub mod demo;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod import;
mod limits;
mod metrics;
mod net;
pub mod pgcluster;
mod pool;
mod protocol;
pub mod router;
mod server;
mod stats;

pub use app::{HostReport, ShutdownTrigger, StartError, Weir};

/// Checks a configuration beyond what loading validates (the user list, server logins).
/// Returns warnings a person should read; an error means weir would not start.
pub fn check(config: &config::Config) -> Result<Vec<String>, StartError> {
    let users = auth::UserTable::build(&config.users, config.auth.method, None)
        .map_err(|e| StartError::Users(Box::new(e)))?;
    net::tls::offered(config).map_err(|e| StartError::Tls(Box::new(e)))?;
    net::tls::client_config(&config.server_tls).map_err(|e| StartError::Tls(Box::new(e)))?;
    Ok(users.server_login_warnings())
}
