//! What a client's session left on a server, asked of the server itself: the settings it
//! changed and the state that ties the client to this server (see docs/architecture.md,
//! "Session state in transaction mode").

use std::fmt;

use bytes::BytesMut;

use super::{BackendError, ParamSet, ServerConn};

/// One query, one round trip: a row per setting changed in this session (`source =
/// 'session'` covers SET, set_config and weir's own replay; `transaction_*` are left by SET
/// TRANSACTION and cannot be replayed), then one row with the kinds of state that pin the
/// client, by their names in `Pins::KINDS`. `$locks` is the advisory-lock check, or nothing.
macro_rules! probe_sql {
    ($locks:literal) => {
        concat!(
            "SELECT name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings ",
            "WHERE source = 'session' ",
            "AND name NOT IN ('transaction_isolation', 'transaction_read_only', 'transaction_deferrable') ",
            "UNION ALL SELECT NULL, pg_catalog.concat_ws(',', ",
            "CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_listening_channels()) THEN 'listen' END, ",
            "CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()) THEN 'temp_table' END, ",
            $locks,
            "CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql) THEN 'sql_prepare' END, ",
            "CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE is_holdable) THEN 'hold_cursor' END)"
        )
    };
}

/// The probe with the advisory-lock check (`pg_locks` takes every lock-manager partition,
/// so it runs only when a lock may have been taken or is held).
const PROBE_WITH_LOCKS_SQL: &str = probe_sql!("CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()) THEN 'advisory_lock' END, ");
/// The probe without it.
const PROBE_SQL: &str = probe_sql!("");

/// Kinds of session state that only this server has, so the client must stay on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pins(u8);

impl Pins {
    /// Every kind, by the name weir reports it under (logs, metrics, docs).
    pub(crate) const KINDS: [&'static str; 5] = [
        "listen",
        "temp_table",
        "advisory_lock",
        "sql_prepare",
        "hold_cursor",
    ];

    /// Whether a session advisory lock is among the kinds.
    pub(crate) fn has_advisory_lock(self) -> bool {
        self.names().any(|n| n == "advisory_lock")
    }

    /// The kinds as bits (for the client registry's atomic).
    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    /// The kinds from `bits()`.
    pub(crate) fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    /// Whether nothing pins the client.
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds present, by name.
    pub(crate) fn names(self) -> impl Iterator<Item = &'static str> {
        Self::KINDS
            .into_iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, name)| name)
    }

    /// The kinds in `self` that `before` lacked.
    pub(crate) fn added_since(self, before: Pins) -> Pins {
        Pins(self.0 & !before.0)
    }

    /// Reads the probe's comma-separated list; unknown names are ignored.
    fn parse(list: &str) -> Self {
        let mut bits = 0;
        for name in list.split(',') {
            if let Some(i) = Self::KINDS.iter().position(|k| *k == name) {
                bits |= 1 << i;
            }
        }
        Pins(bits)
    }
}

impl fmt::Display for Pins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

/// What the probe found.
#[derive(Debug, Default)]
pub(crate) struct SessionProbe {
    /// Settings changed in this session, with their current values.
    pub(crate) settings: ParamSet,
    /// State that pins the client to this server.
    pub(crate) pins: Pins,
}

impl ServerConn {
    /// Runs the probe on an idle server that belongs to a client's session; with `locks`,
    /// session advisory locks are looked for too. Notifications that arrive meanwhile go
    /// to `sink` (the client's write buffer).
    pub(crate) async fn probe_session(
        &mut self,
        sink: &mut BytesMut,
        locks: bool,
    ) -> Result<SessionProbe, BackendError> {
        let sql = if locks {
            PROBE_WITH_LOCKS_SQL
        } else {
            PROBE_SQL
        };
        let rows = self.query_passing_async(sql, sink).await?;
        let mut probe = SessionProbe::default();
        for row in rows {
            match row.as_slice() {
                [Some(name), Some(value)] => probe.settings.set(name, value),
                [None, Some(list)] => probe.pins = Pins::parse(list),
                _ => {}
            }
        }
        Ok(probe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_and_print() {
        let p = Pins::parse("listen,advisory_lock");
        assert_eq!(p.to_string(), "listen, advisory_lock");
        assert!(Pins::parse("").is_empty());
        let q = Pins::parse("listen,temp_table,nonsense");
        assert_eq!(q.added_since(p).to_string(), "temp_table");
    }
}
