//! Run-time parameters of a session (`TimeZone`, `application_name`, `search_path`, ...):
//! what a client expects, what a server has, and the statement that makes them equal.

use std::fmt::Write as _;

/// Reported parameters a client may change and must see kept on every server it lands on.
/// The others PostgreSQL reports (server_version, is_superuser, ...) belong to the server.
const TRACKED_REPORTED: [&str; 6] = [
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "standard_conforming_strings",
];

/// A small name→value map with PostgreSQL's case-insensitive parameter names.
/// Linear search: sessions carry a handful of parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ParamSet {
    /// Entries in first-set order; names keep the spelling first seen.
    entries: Vec<(String, String)>,
}

impl ParamSet {
    /// The value of `name`, if set.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`.
    pub(crate) fn set(&mut self, name: &str, value: &str) {
        match self
            .entries
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => {
                if v != value {
                    value.clone_into(v);
                }
            }
            None => self.entries.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Removes `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// All entries.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The tracked, client-settable subset of a server's reported parameters: the
    /// defaults a client starts from before its own startup parameters are applied.
    pub(crate) fn client_defaults(&self) -> ParamSet {
        let mut out = ParamSet::default();
        for name in TRACKED_REPORTED {
            if let Some((n, v)) = self
                .entries
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                out.entries.push((n.clone(), v.clone()));
            }
        }
        out
    }

    /// The client's desired parameters after a probe found `session` set on its server:
    /// the reported parameters it follows as they are, its startup parameters (a RESET
    /// returns to those, as on PostgreSQL), and what its session set, which wins.
    pub(crate) fn after_probe(&self, startup: &ParamSet, session: &ParamSet) -> ParamSet {
        let mut out = ParamSet::default();
        for (name, value) in self.iter().filter(|(n, _)| Self::is_tracked(n)) {
            out.set(name, value);
        }
        for (name, value) in startup.iter().chain(session.iter()) {
            out.set(name, value);
        }
        out
    }

    /// Whether `name` is one of the reported parameters a client's state follows.
    pub(crate) fn is_tracked(name: &str) -> bool {
        TRACKED_REPORTED
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// What a server connection's session currently has.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerParams {
    /// Values the server reported with ParameterStatus (kept current while relaying).
    pub(crate) reported: ParamSet,
    /// Unreported parameters weir set on this server for a client (e.g. `search_path`).
    pub(crate) applied: ParamSet,
}

impl ServerParams {
    /// The SQL that turns this server's parameters into `desired`, or `None` when they match.
    /// Values go through `set_config`, which takes them exactly as a startup packet would.
    pub(crate) fn sync_sql(&self, desired: &ParamSet) -> Option<String> {
        let mut sets = String::new();
        for (name, value) in desired.iter() {
            let current = self.reported.get(name).or_else(|| self.applied.get(name));
            if current != Some(value) {
                sets.push_str(if sets.is_empty() { "SELECT " } else { ", " });
                let _ = write!(
                    sets,
                    "pg_catalog.set_config({}, {}, false)",
                    quote_literal(name),
                    quote_literal(value)
                );
            }
        }
        let mut resets = String::new();
        for (name, _) in self.applied.iter() {
            if desired.get(name).is_none() {
                let _ = write!(resets, "RESET {};", quote_ident(name));
            }
        }
        match (sets.is_empty(), resets.is_empty()) {
            (true, true) => None,
            (false, true) => Some(sets),
            (true, false) => Some(resets),
            (false, false) => Some(format!("{sets};{resets}")),
        }
    }

    /// Records what a probe found set in this server's session (`session` source).
    pub(crate) fn probed(&mut self, session: &ParamSet) {
        self.applied = ParamSet::default();
        for (name, value) in session.iter() {
            if self.reported.get(name).is_none() {
                self.applied.set(name, value);
            }
        }
    }

    /// Records that `sync_sql(desired)` ran successfully.
    pub(crate) fn synced(&mut self, desired: &ParamSet) {
        let stale: Vec<String> = self
            .applied
            .iter()
            .filter(|(n, _)| desired.get(n).is_none())
            .map(|(n, _)| n.to_owned())
            .collect();
        for name in stale {
            self.applied.remove(&name);
        }
        for (name, value) in desired.iter() {
            if self.reported.get(name).is_none() {
                self.applied.set(name, value);
            }
        }
    }
}

/// An escape-string literal: safe whatever `standard_conforming_strings` is.
fn quote_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A double-quoted identifier.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_sets_only_differences_and_resets_leftovers() {
        let mut server = ServerParams::default();
        server.reported.set("TimeZone", "UTC");
        server.reported.set("application_name", "");
        server.applied.set("search_path", "old");
        let mut desired = ParamSet::default();
        desired.set("timezone", "UTC");
        desired.set("application_name", "it's");
        let sql = server.sync_sql(&desired).expect("differs");
        assert_eq!(
            sql,
            "SELECT pg_catalog.set_config(E'application_name', E'it''s', false);RESET \"search_path\";"
        );
        server.synced(&desired);
        server.reported.set("application_name", "it's");
        assert_eq!(server.sync_sql(&desired), None);
    }

    #[test]
    fn probe_results_become_the_clients_state() {
        let mut desired = ParamSet::default();
        desired.set("TimeZone", "UTC");
        desired.set("search_path", "old");
        let mut startup = ParamSet::default();
        startup.set("statement_timeout", "5s");
        let mut session = ParamSet::default();
        session.set("work_mem", "8MB");
        let next = desired.after_probe(&startup, &session);
        // search_path was RESET (no longer in the session): gone; the startup value is back.
        assert_eq!(next.get("search_path"), None);
        assert_eq!(next.get("timezone"), Some("UTC"));
        assert_eq!(next.get("statement_timeout"), Some("5s"));
        assert_eq!(next.get("work_mem"), Some("8MB"));
        let mut server = ServerParams::default();
        server.reported.set("TimeZone", "UTC");
        session.set("TimeZone", "UTC");
        server.probed(&session);
        assert_eq!(server.applied.get("work_mem"), Some("8MB"));
        assert_eq!(server.applied.get("TimeZone"), None);
        // The next sync on this server puts the startup value back.
        let sql = server.sync_sql(&next).expect("differs");
        assert!(sql.contains("statement_timeout"), "{sql}");
    }

    #[test]
    fn literal_escapes_backslashes() {
        assert_eq!(quote_literal(r"a\b'c"), r"E'a\\b''c'");
    }
}
