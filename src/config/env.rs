//! Environment overrides: `WEIR_<TABLE>__<KEY>=value` sets `<table>.<key>`, e.g.
//! `WEIR_POOL__SIZE=50` or `WEIR_LISTEN__ADDR=0.0.0.0:6432`; entries of `[[users]]` and
//! `[[databases]]` are named by position: `WEIR_DATABASES__0__HOSTS=10.0.0.5:5432`.
//!
//! Owns: reading `WEIR_*` variables into key paths, and keeping them from damaging the
//! arrays of tables that come from the file.
//! Does not: interpret values; they stay strings and `convert.rs` parses them like the file's.
//!
//! Why not `config::Environment`: with `try_parsing` it turns `"0123"` into the number 123
//! (a password or a database name loses its zeros); without it, it has no way to address
//! an entry of an array of tables, and `WEIR_DATABASES__0__HOSTS` would replace the file's
//! whole `[[databases]]` list with a table `{"0": ...}`. Errors here also name the variable.

use std::collections::BTreeMap;
use std::ffi::OsString;

use super::error::{ConfigError, EnvProblem};

/// The prefix every override starts with (matched without regard to case).
const PREFIX: &str = "WEIR_";

/// `WEIR_*` variables that are not configuration keys: they are read elsewhere and skipped
/// here. `WEIR_LOG` is the log filter and `WEIR_LOG_FORMAT` the log format (`main.rs`).
pub const NOT_CONFIGURATION: &[&str] = &["WEIR_LOG", "WEIR_LOG_FORMAT"];

/// The configuration's tables (`RawConfig`'s fields). A `WEIR_*` name without `__` that
/// starts with one of them (`WEIR_POOL_SIZE`) is a misspelt override and refused; any
/// other (`WEIR_DIR`) belongs to someone else and is skipped.
const TABLES: [&str; 12] = [
    "listen",
    "pool",
    "auth",
    "admin",
    "metrics",
    "tls",
    "server_tls",
    "cluster",
    "routing",
    "limits",
    "users",
    "databases",
];

/// The tables written as `[[name]]`: their entries are addressed by position.
pub(crate) const ARRAY_TABLES: [&str; 2] = ["users", "databases"];

/// One override, ready to apply on top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Override {
    /// The variable's name, for messages.
    pub var: String,
    /// The key path in the `config` crate's syntax: `pool.size`, `databases[0].hosts`.
    pub key: String,
    /// The value, always as a string (see the module header).
    pub value: String,
    /// For `[[users]]` / `[[databases]]` entries: which entry it sets.
    pub entry: Option<Entry>,
}

/// One entry of an array of tables, e.g. `databases[1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `users` or `databases`.
    pub table: &'static str,
    /// Position in the list, from 0.
    pub index: usize,
}

/// Reads the `WEIR_*` variables among `vars`, in name order so results never depend on
/// the environment's order.
pub(crate) fn collect(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<Override>, ConfigError> {
    let mut found = Vec::new();
    for (name, value) in vars {
        // A name that is not UTF-8 cannot spell WEIR_<TABLE>__<KEY>.
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = strip_prefix_ignore_case(name, PREFIX) else {
            continue;
        };
        if NOT_CONFIGURATION
            .iter()
            .any(|skip| skip.eq_ignore_ascii_case(name))
            || !(rest.contains("__") || names_a_table(rest))
            || (kubernetes_service(rest) && !sets_a_key(rest))
        {
            continue;
        }
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.to_owned(),
            problem: EnvProblem::NotUnicode,
        })?;
        let (key, entry) = key_path(rest).map_err(|problem| ConfigError::Env {
            var: name.to_owned(),
            problem,
        })?;
        found.push(Override {
            var: name.to_owned(),
            key,
            value,
            entry,
        });
    }
    found.sort_by(|a, b| a.var.cmp(&b.var));
    Ok(found)
}

/// Refuses overrides that would leave a hole in an array of tables. `in_file(table)` is
/// how many entries the file defines; the environment may change those and append more,
/// numbered on from there without gaps.
pub(crate) fn check_entries(
    overrides: &[Override],
    in_file: impl Fn(&str) -> usize,
) -> Result<(), ConfigError> {
    for table in ARRAY_TABLES {
        // entry number -> first variable naming it
        let mut named: BTreeMap<usize, &str> = BTreeMap::new();
        for o in overrides {
            if let Some(entry) = o.entry.filter(|e| e.table == table) {
                named.entry(entry.index).or_insert(&o.var);
            }
        }
        let in_file = in_file(table);
        for (next, (&index, var)) in (in_file..).zip(named.range(in_file..)) {
            if index != next {
                return Err(ConfigError::Env {
                    var: (*var).to_owned(),
                    problem: EnvProblem::IndexGap {
                        table,
                        missing: next,
                        in_file,
                    },
                });
            }
        }
    }
    Ok(())
}

/// `POOL__SIZE` -> `pool.size`; `DATABASES__0__HOSTS` -> `databases[0].hosts`.
fn key_path(rest: &str) -> Result<(String, Option<Entry>), EnvProblem> {
    let segments: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
    let well_formed = segments.len() >= 2
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if !well_formed {
        return Err(EnvProblem::BadName);
    }
    let (first, tail) = segments.split_first().ok_or(EnvProblem::BadName)?;
    let Some(table) = ARRAY_TABLES.iter().copied().find(|t| t == first) else {
        return Ok((segments.join("."), None));
    };
    match tail.split_first() {
        Some((index, keys)) if !keys.is_empty() => {
            let index: usize = index
                .parse()
                .map_err(|_| EnvProblem::MissingIndex { table })?;
            Ok((
                format!("{table}[{index}].{}", keys.join(".")),
                Some(Entry { table, index }),
            ))
        }
        _ => Err(EnvProblem::MissingIndex { table }),
    }
}

/// Whether `rest` (a name after `WEIR_`) is one of the variables Kubernetes gives every pod
/// for a Service named `weir` or `weir-<x>`: `<X>_SERVICE_HOST`, `<X>_SERVICE_PORT[_<name>]`,
/// `<X>_PORT`, `<X>_PORT_<n>_TCP[_PROTO|_PORT|_ADDR]` (`WEIR_METRICS_SERVICE_HOST`).
fn kubernetes_service(rest: &str) -> bool {
    let upper = rest.to_ascii_uppercase();
    upper.contains("SERVICE_HOST")
        || upper.contains("SERVICE_PORT")
        || upper == "PORT"
        || upper.ends_with("_PORT")
        || upper.starts_with("PORT_")
        || upper.contains("_PORT_")
}

/// Whether `rest` (a name after `WEIR_`) is `<TABLE>__<KEY>...` for one of the tables:
/// such a name is configuration even when it ends like a Kubernetes variable
/// (`WEIR_LISTEN__REUSE_PORT`).
fn sets_a_key(rest: &str) -> bool {
    rest.split_once("__")
        .is_some_and(|(table, _)| TABLES.iter().any(|t| t.eq_ignore_ascii_case(table)))
}

/// Whether `rest` (a name after `WEIR_`) starts with a table's name and `_`, or is one.
fn names_a_table(rest: &str) -> bool {
    TABLES.iter().any(|table| {
        strip_prefix_ignore_case(rest, table)
            .is_some_and(|tail| tail.is_empty() || tail.starts_with('_'))
    })
}

/// `name` without `prefix`, if it starts with it in any letter case.
fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        name.get(prefix.len()..)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn names_become_key_paths() {
        let found = collect(vars(&[
            ("PATH", "/usr/bin"),
            ("WEIR_LOG", "debug"),
            // Not ours: a script's variable, and what Kubernetes sets for a Service `weir`.
            ("WEIR_DIR", "/opt/weir"),
            ("WEIR_SERVICE_HOST", "10.0.0.7"),
            ("WEIR_PORT_6432_TCP_ADDR", "10.0.0.7"),
            ("WEIR_METRICS_SERVICE_HOST", "10.0.0.8"),
            ("WEIR_ADMIN_PORT", "tcp://10.0.0.9:6432"),
            ("WEIR_POOL_PORT_6432_TCP_PROTO", "tcp"),
            ("WEIR_POOL__SIZE", "50"),
            ("WEIR_DATABASES__1__HOSTS", "a:1,b:2"),
            ("weir_listen__addr", "0.0.0.0:6432"),
            // Ends like `<X>_PORT`, but names a table and a key: ours.
            ("WEIR_LISTEN__REUSE_PORT", "true"),
        ]))
        .unwrap();
        let keys: Vec<&str> = found.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "databases[1].hosts",
                "listen.reuse_port",
                "pool.size",
                "listen.addr"
            ]
        );
        let entry = Entry {
            table: "databases",
            index: 1,
        };
        assert_eq!(found[0].entry, Some(entry));
        assert_eq!(found[2].value, "50");
    }

    #[test]
    fn bad_names_are_refused_with_the_variable_named() {
        for name in ["WEIR_POOL_SIZE", "WEIR_POOL____SIZE", "WEIR_POOL__SI.ZE"] {
            let err = collect(vars(&[(name, "1")])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
            assert!(err.to_string().contains("WEIR_<TABLE>__<KEY>"), "{err}");
        }
        let err = collect(vars(&[("WEIR_DATABASES__HOSTS", "x")])).unwrap_err();
        assert!(err.to_string().contains("WEIR_DATABASES__0__NAME"), "{err}");
    }

    #[test]
    fn entries_may_be_appended_but_not_skipped() {
        let found = collect(vars(&[
            ("WEIR_USERS__0__PASSWORD", "x"),
            ("WEIR_USERS__1__NAME", "b"),
            ("WEIR_USERS__2__NAME", "c"),
        ]))
        .unwrap();
        assert!(check_entries(&found, |_| 1).is_ok());
        assert!(check_entries(&found, |_| 0).is_ok());
        let gap = collect(vars(&[("WEIR_USERS__3__NAME", "d")])).unwrap();
        let err = check_entries(&gap, |_| 1).unwrap_err();
        assert!(err.to_string().contains("users[1]"), "{err}");
        assert!(err.to_string().contains("WEIR_USERS__3__NAME"), "{err}");
    }
}
