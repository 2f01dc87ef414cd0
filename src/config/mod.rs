//! Configuration: the TOML file plus `WEIR_<TABLE>__<KEY>` environment overrides,
//! validated once into an immutable [`Config`] snapshot.
//!
//! Owns: reading the file, applying the environment, every check and default, and error
//! messages that name the key at fault (`pool.size: ...`).
//! Does not: keep global state, watch the file, or act on the settings. The caller (`app`)
//! loads, and on reload loads again and swaps the whole snapshot.
//!
//! Layers: `raw` (the file's shape, unknown keys refused) -> `convert` (every check and
//! default) -> `model` (what the rest of weir sees). `env` turns variables into key paths;
//! `duration` parses `"30s"`; `values` checks each value's form; `error` holds the
//! messages.

mod convert;
mod duration;
mod env;
mod error;
mod model;
mod raw;
#[cfg(test)]
mod tests;
mod values;

use std::ffi::OsString;
use std::path::Path;

use ::config::{File, FileFormat};

pub use convert::RESERVED_DATABASES;
pub use env::NOT_CONFIGURATION;
pub use error::{ConfigError, EnvProblem, Problem};
pub use model::MAX_FAILURE_DELAY;
pub use model::{
    AdminSettings, AuthMethod, AuthSettings, ClusterSettings, Config, DatabaseConfig, HostAddr,
    LimitsSettings, ListenSettings, MetricsSettings, PoolMode, PoolSettings, PrimaryReads, Routing,
    RoutingSettings, ServerTlsMode, ServerTlsSettings, TlsMode, TlsSettings, TransactionRouting,
    UserConfig,
};

/// Loads the file at `path` (which must exist), applies `WEIR_*` environment overrides
/// and validates the result.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, std::env::vars_os(), &[])
}

/// [`load`] with `settings` (key path, value) applied over the file and the environment,
/// as the admin console's `SET key = value` does; each is validated like the file's keys.
pub(crate) fn load_with_settings(
    path: &Path,
    settings: &[(String, String)],
) -> Result<Config, ConfigError> {
    load_with_env(path, std::env::vars_os(), settings)
}

/// Parses and validates configuration text, without the environment. For tests and for
/// building configurations in code.
pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
    build(text, "configuration text", &[])
}

/// [`load`] with the environment given explicitly, so tests need not touch the process's.
fn load_with_env(
    path: &Path,
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    settings: &[(String, String)],
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut overrides = env::collect(vars)?;
    overrides.extend(settings.iter().map(|(key, value)| env::Override {
        var: format!("SET {key}"),
        key: key.clone(),
        value: value.clone(),
        entry: None,
    }));
    build(&text, &path.display().to_string(), &overrides)
}

/// Layers the overrides over the TOML text, deserializes into the raw structs, converts.
/// `origin` names the text in syntax errors.
fn build(text: &str, origin: &str, overrides: &[env::Override]) -> Result<Config, ConfigError> {
    let backend = |e| ConfigError::from_backend(e, origin);
    let file = ::config::Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .build()
        .map_err(backend)?;
    env::check_entries(overrides, |table| {
        file.get_array(table).map(|a| a.len()).unwrap_or(0)
    })?;

    let mut layered = ::config::Config::builder().add_source(file);
    for o in overrides {
        layered = layered
            .set_override(o.key.as_str(), o.value.clone())
            .map_err(backend)?;
    }
    let blame: Vec<(String, String)> = overrides
        .iter()
        .map(|o| (o.key.clone(), o.var.clone()))
        .collect();
    let raw: raw::RawConfig = layered
        .build()
        .map_err(backend)?
        .try_deserialize()
        .map_err(|e| backend(e).blame_env(&blame))?;
    convert::config(raw).map_err(|e| e.blame_env(&blame))
}
