//! The status page of the metrics listener (`GET /`): one self-contained HTML page, and
//! the JSON it refreshes itself from (`GET /status.json`).
//!
//! Owns: the page and the JSON document.
//! Does not: compute anything of its own. Hosts and pools are SHOW HOSTS and SHOW POOLS,
//! row for row, so the page and the console never disagree; routing counts are the
//! Prometheus counters.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::app::Shared;
use crate::metrics::names;

use super::show::{Column, Show};

/// The page: HTML, CSS and script in one file, no external assets (it must work where
/// the operator's browser reaches weir and nothing else).
pub(crate) const PAGE: &str = include_str!("status.html");

/// What the page shows, as `/status.json` serves it.
#[derive(Debug, Serialize)]
struct Status {
    /// SHOW VERSION.
    version: String,
    /// When this was taken, as SHOW CLIENTS prints times.
    time: String,
    /// SHOW HOSTS.
    hosts: Table,
    /// SHOW POOLS.
    pools: Table,
    /// Transactions routed per database, to the primary and to replicas.
    routing: Vec<Routed>,
}

/// A SHOW result: its column names, then its rows (`null` for NULL).
#[derive(Debug, Serialize)]
struct Table {
    columns: Vec<&'static str>,
    rows: Vec<Vec<Option<String>>>,
}

/// Transactions routed for one database since weir started.
#[derive(Debug, Default, Serialize)]
struct Routed {
    database: String,
    primary: u64,
    replica: u64,
}

/// `/status.json` now.
pub(crate) fn json(shared: &Shared) -> String {
    let status = Status {
        version: super::version(),
        time: crate::stats::format_time(std::time::SystemTime::now()),
        hosts: table(Show::Hosts, shared),
        pools: table(Show::Pools, shared),
        routing: routing(shared),
    };
    // Strings and numbers only: serialising cannot fail.
    serde_json::to_string(&status)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}

fn table(show: Show, shared: &Shared) -> Table {
    Table {
        columns: show
            .columns()
            .iter()
            .map(|(name, _): &Column| *name)
            .collect(),
        rows: show.rows(shared),
    }
}

/// Routing counts of the configured databases, read back from the Prometheus counters
/// (they are write-only handles; only the exporter keeps their values).
fn routing(shared: &Shared) -> Vec<Routed> {
    let mut by_db: BTreeMap<String, Routed> = shared
        .snapshot()
        .config
        .databases
        .iter()
        .map(|d| {
            let routed = Routed {
                database: d.name.clone(),
                ..Routed::default()
            };
            (d.name.clone(), routed)
        })
        .collect();
    if let Some(handle) = crate::metrics::handle_if_installed() {
        for (database, role, n) in routed_samples(&handle.render()) {
            let Some(entry) = by_db.get_mut(&database) else {
                continue;
            };
            match role.as_str() {
                "primary" => entry.primary = n,
                "replica" => entry.replica = n,
                _ => {}
            }
        }
    }
    by_db.into_values().collect()
}

/// The samples of `weir_routed_transactions_total` in a Prometheus text exposition:
/// (database, role, count).
fn routed_samples(exposition: &str) -> Vec<(String, String, u64)> {
    exposition
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(names::ROUTED_TOTAL)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            let value = value.trim().parse::<f64>().ok()?;
            let labels = parse_labels(labels);
            let label = |name: &str| {
                labels
                    .iter()
                    .find_map(|(k, v)| (k == name).then(|| v.clone()))
            };
            // Counts are whole numbers; the exposition writes them as floats.
            Some((label("database")?, label("role")?, value as u64))
        })
        .collect()
}

/// `name="value",...` as the exposition writes labels: values quoted, with `\\`, `\"`
/// and `\n` escaped (a database name may hold a comma or a quote).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = at + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.push((name.trim_start_matches(',').to_owned(), value));
        rest = after.get(end..).unwrap_or_default();
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_samples_are_read_back() {
        let text = format!(
            "# TYPE {0} counter\n{0}{{database=\"appdb\",role=\"primary\"}} 12\n\
             {0}{{database=\"appdb\",role=\"replica\"}} 30\nother_total{{database=\"appdb\"}} 5\n\
             {0}_bucket{{le=\"1\"}} 3\n",
            names::ROUTED_TOTAL
        );
        assert_eq!(
            routed_samples(&text),
            vec![
                ("appdb".to_owned(), "primary".to_owned(), 12),
                ("appdb".to_owned(), "replica".to_owned(), 30),
            ]
        );
        assert_eq!(
            parse_labels(r#"database="a,\"b\"",role="primary""#),
            vec![
                ("database".to_owned(), "a,\"b\"".to_owned()),
                ("role".to_owned(), "primary".to_owned()),
            ]
        );
    }
}
