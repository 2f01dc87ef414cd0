//! Which function names make a statement a write: a built-in list, plus names the caller
//! adds (user VOLATILE functions from the primary's `pg_proc`, learned by `cluster`, and
//! `routing.write_functions`), minus the caller's read overrides (`routing.read_functions`).
//!
//! Owns: the built-in list and name matching. Does not: learn names from a server or
//! read configuration; the caller hands the names in.

use std::collections::HashSet;
use std::sync::Arc;

use sqlparser::ast::ObjectName;

/// Built-in functions that must run on the primary, by exact (lower-case) name. Each
/// writes, takes a lock, reads or changes session state that lives on the primary, fails
/// on a standby, or describes the primary's role to a driver that asks.
const BUILTIN: &[&str] = &[
    // Sequences: nextval/setval write; currval/lastval read this session's last nextval,
    // which ran on the primary.
    "nextval",
    "setval",
    "currval",
    "lastval",
    // Session state.
    "set_config",
    "setseed",
    "pg_notify",
    "pg_listening_channels",
    "pg_export_snapshot",
    // Transaction ids: assign one (a write), or report the primary's.
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    // WAL positions and control: fail during recovery, or write WAL.
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_current_xlog_location",
    "pg_current_xlog_insert_location",
    "pg_current_xlog_flush_location",
    "pg_walfile_name",
    "pg_walfile_name_offset",
    "pg_xlogfile_name",
    "pg_xlogfile_name_offset",
    "pg_switch_wal",
    "pg_switch_xlog",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_log_standby_snapshot",
    // Replication slots.
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_replication_slot_advance",
    // Server administration. Sent to the primary, a standby-only one fails there rather
    // than act on a replica weir happened to pick (no promotion by routing).
    "pg_promote",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_xlog_replay_pause",
    "pg_xlog_replay_resume",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_log_backend_memory_contexts",
    "pg_cancel_backend",
    "pg_terminate_backend",
    "pg_import_system_collations",
    "pg_stat_statements_reset",
    "pg_truncate_visibility_map",
    // adminpack: write server files.
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_file_sync",
    // Large objects without the lo_ prefix.
    "loread",
    "lowrite",
    // The server's role: a driver looking for a writable server (libpq
    // `target_session_attrs`) must hear the primary's answer, as weir is read-write.
    "pg_is_in_recovery",
];

/// Built-in families matched by prefix: advisory locks (`pg_advisory_lock`,
/// `pg_advisory_xact_lock_shared`, `pg_advisory_unlock_all`, ...), `pg_try_advisory_*`,
/// large objects (`lo_create`, `lo_import`, `lo_export`, `lo_put`, `lo_from_bytea`,
/// `lo_unlink`, ...; `lo_get` reads but goes along), `dblink*` (remote statements and
/// connection state), statistics resets, replication origins and logical decoding.
const BUILTIN_PREFIXES: &[&str] = &[
    "pg_advisory_",
    "pg_try_advisory_",
    "lo_",
    "dblink",
    "pg_stat_reset",
    "pg_replication_origin_",
    "pg_logical_",
];

/// Names of functions whose call anywhere in a statement sends it to the primary.
///
/// Cheap to clone (the names are shared), so a config snapshot and a [`ClassCache`]
/// can each hold one; two lists compare equal when they hold the same names.
///
/// [`ClassCache`]: super::ClassCache
#[derive(Clone, Debug, Default)]
pub struct WriteFunctions {
    /// The caller's names, normalised; shared so that clones are free.
    names: Arc<Names>,
}

/// The caller's additions and overrides, normalised by [`normalize`].
#[derive(Debug, Default, PartialEq, Eq)]
struct Names {
    /// Extra write functions (user VOLATILE functions, `routing.write_functions`).
    writes: HashSet<String>,
    /// Functions declared reads (`routing.read_functions`); they win over every list,
    /// the built-in one included.
    reads: HashSet<String>,
}

impl WriteFunctions {
    /// The built-in list alone.
    #[must_use]
    pub fn builtin() -> Self {
        Self::default()
    }

    /// The built-in list plus `writes`, minus `reads`. Names may be schema-qualified
    /// (`app.audit`, only the last part counts) and in any case.
    #[must_use]
    pub fn new<W, R>(writes: W, reads: R) -> Self
    where
        W: IntoIterator,
        W::Item: AsRef<str>,
        R: IntoIterator,
        R::Item: AsRef<str>,
    {
        let set = |names: Vec<String>| names.into_iter().collect::<HashSet<_>>();
        let writes = set(writes.into_iter().map(|n| normalize(n.as_ref())).collect());
        let reads = set(reads.into_iter().map(|n| normalize(n.as_ref())).collect());
        Self {
            names: Arc::new(Names { writes, reads }),
        }
    }

    /// Whether calling `name` (possibly schema-qualified, in any case) makes a statement
    /// a write.
    #[must_use]
    pub fn writes(&self, name: &str) -> bool {
        self.writes_normalized(&normalize(name))
    }

    /// Whether a function named in a parsed statement writes. Only the last part of the
    /// name counts, so `pg_catalog.nextval` is `nextval`; a part that is not a plain
    /// identifier counts as a write (fail closed).
    pub(crate) fn writes_object(&self, name: &ObjectName) -> bool {
        match name.0.last().and_then(|part| part.as_ident()) {
            Some(ident) => self.writes_normalized(&ident.value.to_lowercase()),
            None => true,
        }
    }

    /// The check on a name already normalised.
    fn writes_normalized(&self, name: &str) -> bool {
        if self.names.reads.contains(name) {
            return false;
        }
        BUILTIN.contains(&name)
            || BUILTIN_PREFIXES.iter().any(|p| name.starts_with(p))
            || self.names.writes.contains(name)
    }
}

impl PartialEq for WriteFunctions {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.names, &other.names) || self.names == other.names
    }
}

impl Eq for WriteFunctions {}

/// The form names are compared in: the part after the last `.`, without surrounding
/// double quotes, lower-cased. Comparing without regard to case may match more than
/// PostgreSQL would (a quoted `"NextVal"` is another function there), which only ever
/// sends more to the primary.
fn normalize(name: &str) -> String {
    let last = name.rsplit('.').next().unwrap_or(name);
    last.trim().trim_matches('"').to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_match_in_any_case_and_schema() {
        let f = WriteFunctions::builtin();
        assert!(f.writes("nextval"));
        assert!(f.writes("NEXTVAL"));
        assert!(f.writes("pg_catalog.nextval"));
        assert!(f.writes("\"pg_catalog\".\"nextval\""));
        assert!(f.writes("pg_advisory_xact_lock_shared"));
        assert!(f.writes("pg_try_advisory_lock"));
        assert!(f.writes("lo_from_bytea"));
        assert!(f.writes("dblink_exec"));
        assert!(!f.writes("now"));
        assert!(!f.writes("count"));
        assert!(!f.writes("lower"));
        assert!(!f.writes("current_setting"));
    }

    #[test]
    fn caller_names_add_and_reads_override() {
        let f = WriteFunctions::new(["app.Audit_Insert"], ["lo_get", "public.NEXTVAL"]);
        assert!(f.writes("audit_insert"));
        assert!(f.writes("other_schema.AUDIT_INSERT"));
        assert!(!f.writes("lo_get"));
        assert!(!f.writes("nextval"));
        assert!(f.writes("setval"));
    }

    #[test]
    fn equality_is_by_names() {
        let a = WriteFunctions::new(["f"], Vec::<String>::new());
        let b = WriteFunctions::new(["F"], Vec::<String>::new());
        assert_eq!(a, b);
        assert_eq!(a, a.clone());
        assert_ne!(a, WriteFunctions::builtin());
    }
}
