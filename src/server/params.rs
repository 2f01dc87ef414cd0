//! Run-time parameters of a session (`TimeZone`, `application_name`, `search_path`, ...):
//! what a client expects, what a server has, and the statement that makes them equal.

use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

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
    /// Order-independent digest of the contents (see `entry_digest`), kept as entries change,
    /// so "is this server already set up for this client?" is one comparison.
    digest: u64,
}

/// Digest of one entry: a keyed SipHash of the lower-cased name and the value. The keys are
/// random per process, so a client cannot choose values whose digest matches another's.
fn entry_digest(name: &str, value: &str) -> u64 {
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let mut h = KEYS.get_or_init(Default::default).build_hasher();
    // Lower-cased a chunk at a time: the hasher costs per call, not per byte.
    let mut chunk = [0u8; 32];
    for piece in name.as_bytes().chunks(chunk.len()) {
        if let Some(lower) = chunk.get_mut(..piece.len()) {
            lower.copy_from_slice(piece);
            lower.make_ascii_lowercase();
            h.write(lower);
        }
    }
    h.write_u8(0xff);
    h.write(value.as_bytes());
    h.finish()
}

impl ParamSet {
    /// A digest of the contents: equal sets have equal digests, whatever their order.
    pub(crate) fn digest(&self) -> u64 {
        self.digest
    }

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
            Some((n, v)) => {
                if v != value {
                    self.digest = self
                        .digest
                        .wrapping_sub(entry_digest(n, v))
                        .wrapping_add(entry_digest(n, value));
                    value.clone_into(v);
                }
            }
            None => {
                self.digest = self.digest.wrapping_add(entry_digest(name, value));
                self.entries.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    /// Removes `name`.
    pub(crate) fn remove(&mut self, name: &str) {
        let mut digest = self.digest;
        self.entries.retain(|(n, v)| {
            let keep = !n.eq_ignore_ascii_case(name);
            if !keep {
                digest = digest.wrapping_sub(entry_digest(n, v));
            }
            keep
        });
        self.digest = digest;
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
                out.set(n, v);
            }
        }
        out
    }

    /// The client's desired parameters after a probe found `session` set on its server:
    /// the reported parameters it follows as they are, its startup parameters (a RESET
    /// returns to those, as on PostgreSQL), and what its session set, which wins.
    /// A followed parameter's value is known from ParameterStatus, and a SET of it to the
    /// server's default leaves no trace in `session`; so its startup value comes back only
    /// when the transaction ran a RESET (`reset`), never over a later SET.
    pub(crate) fn after_probe(
        &self,
        startup: &ParamSet,
        session: &ParamSet,
        reset: bool,
    ) -> ParamSet {
        let mut out = ParamSet::default();
        for (name, value) in self.iter().filter(|(n, _)| Self::is_tracked(n)) {
            out.set(name, value);
        }
        let from_startup = startup
            .iter()
            .filter(|(n, _)| reset || !Self::is_tracked(n));
        for (name, value) in from_startup.chain(session.iter()) {
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

/// What a server connection's session currently has. Changes go through the methods, which
/// also forget which client state the server was last found equal to.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerParams {
    /// Values the server reported with ParameterStatus (kept current while relaying).
    reported: ParamSet,
    /// Unreported parameters weir set on this server for a client (e.g. `search_path`).
    applied: ParamSet,
    /// Digest of the desired set this server was last made or found equal to (0: none).
    /// Clients that connect alike share one digest, so most checkouts skip `sync_sql`.
    matches: u64,
    /// A client's commands may have changed settings weir cannot list (custom `app.x`
    /// settings, `SET ROLE`): the next sync starts with `RESET ALL` and sets everything.
    tainted: bool,
}

impl ServerParams {
    /// A freshly logged-in server that reported `reported`.
    pub(crate) fn new(reported: ParamSet) -> Self {
        Self {
            reported,
            ..Self::default()
        }
    }

    /// Values the server reported.
    pub(crate) fn reported(&self) -> &ParamSet {
        &self.reported
    }

    /// Unreported parameters weir set on this server for a client.
    pub(crate) fn applied(&self) -> &ParamSet {
        &self.applied
    }

    /// The server reported a new value with ParameterStatus.
    pub(crate) fn report(&mut self, name: &str, value: &str) {
        self.reported.set(name, value);
        self.matches = 0;
    }

    /// A client ran something that may have changed settings: before the next client's
    /// statements, the server is reset and given that client's settings from scratch.
    pub(crate) fn taint(&mut self) {
        self.tainted = true;
        self.matches = 0;
    }

    /// The server's session was reset (DISCARD ALL): nothing weir applied is left.
    pub(crate) fn forget_applied(&mut self) {
        self.applied = ParamSet::default();
        self.matches = 0;
    }

    /// `sync_sql`, skipped when this server is known to match `desired` already; a server
    /// found to match is remembered as such.
    /// `defaults` are what a fresh session of this pool reports (what `RESET ALL` restores).
    pub(crate) fn sync_for(&mut self, desired: &ParamSet, defaults: &ParamSet) -> Option<String> {
        if self.tainted {
            return Some(Self::reset_sql(desired, defaults));
        }
        if self.matches != 0 && self.matches == desired.digest() {
            return None;
        }
        let sql = self.sync_sql(desired);
        if sql.is_none() {
            self.matches = desired.digest();
        }
        sql
    }

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

    /// `RESET ALL` (which leaves the role alone, hence the two more), then every desired
    /// value that differs from a fresh session's.
    fn reset_sql(desired: &ParamSet, defaults: &ParamSet) -> String {
        let mut sql = String::from("RESET ALL;RESET ROLE;RESET SESSION AUTHORIZATION;");
        let mut first = true;
        for (name, value) in desired.iter() {
            if defaults.get(name) == Some(value) {
                continue;
            }
            sql.push_str(if first { "SELECT " } else { ", " });
            first = false;
            let _ = write!(
                sql,
                "pg_catalog.set_config({}, {}, false)",
                quote_literal(name),
                quote_literal(value)
            );
        }
        sql
    }

    /// Records what a probe found set in this server's session (`session` source).
    pub(crate) fn probed(&mut self, session: &ParamSet) {
        self.matches = 0;
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
        self.matches = desired.digest();
        self.tainted = false;
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
        let next = desired.after_probe(&startup, &session, true);
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
    fn digest_ignores_order_and_name_case() {
        let mut a = ParamSet::default();
        a.set("TimeZone", "UTC");
        a.set("search_path", "x");
        let mut b = ParamSet::default();
        b.set("search_path", "y");
        b.set("timezone", "UTC");
        assert_ne!(a.digest(), b.digest());
        b.set("search_path", "x");
        assert_eq!(a.digest(), b.digest());
        b.remove("search_path");
        a.remove("SEARCH_PATH");
        assert_eq!(a.digest(), b.digest());
        assert_eq!(ParamSet::default().digest(), 0);
        // Names longer than the digest's 32-byte chunk, in either case.
        let long = "my_extension.a_setting_with_a_long_name";
        assert_eq!(
            entry_digest(long, "1"),
            entry_digest(&long.to_ascii_uppercase(), "1")
        );
        assert_ne!(entry_digest(long, "1"), entry_digest(&long[..32], "1"));
    }

    #[test]
    fn a_matching_server_is_remembered_until_it_changes() {
        let mut reported = ParamSet::default();
        reported.set("TimeZone", "UTC");
        let mut server = ServerParams::new(reported);
        let mut desired = ParamSet::default();
        desired.set("TimeZone", "UTC");
        assert_eq!(server.sync_for(&desired, &ParamSet::default()), None);
        assert_eq!(server.matches, desired.digest());
        // After a client's SET, the next sync resets everything and replays what differs.
        server.taint();
        let mut defaults = ParamSet::default();
        defaults.set("TimeZone", "UTC");
        desired.set("search_path", "a");
        let sql = server.sync_for(&desired, &defaults).expect("reset");
        assert!(sql.starts_with("RESET ALL;"), "{sql}");
        assert!(
            sql.contains("search_path") && !sql.contains("TimeZone"),
            "{sql}"
        );
        server.synced(&desired);
        assert_eq!(server.sync_for(&desired, &defaults), None);
        server.report("TimeZone", "Asia/Tokyo");
        assert!(server.sync_for(&desired, &ParamSet::default()).is_some());
    }

    #[test]
    fn literal_escapes_backslashes() {
        assert_eq!(quote_literal(r"a\b'c"), r"E'a\\b''c'");
    }
}
