//! The class of one parsed statement. Reads are an allow-list (queries, SHOW, EXPLAIN
//! without ANALYZE, COPY ... TO STDOUT, and `BEGIN READ ONLY` as its own class); every
//! other statement kind is a write, so a kind sqlparser adds later is a write too.
//!
//! Owns: the statement kinds that may be reads. Does not: walk queries (see `reads`).

use sqlparser::ast::{
    CopySource, CopyTarget, DescribeAlias, Ident, Statement, TransactionAccessMode,
    TransactionIsolationLevel, TransactionMode, UtilityOption,
};

use super::reads::query_only_reads;
use super::{Class, WriteFunctions};

/// Settings whose value tells a driver whether it reached a writable server; answered by
/// the primary, as weir stands for a read-write database (pgjdbc's `targetServerType`
/// asks `SHOW transaction_read_only`).
const ROLE_SETTINGS: &[&str] = &[
    "transaction_read_only",
    "default_transaction_read_only",
    "in_hot_standby",
];

/// The class of `statement`: `Read`, `Write` or `ReadOnlyBegin`.
pub(crate) fn classify(statement: &Statement, functions: &WriteFunctions) -> Class {
    match statement {
        Statement::Query(query) => read_if(query_only_reads(query, functions)),
        Statement::Explain {
            describe_alias: DescribeAlias::Explain,
            analyze: false,
            query_plan: false,
            estimate: false,
            statement,
            options,
            ..
        } if !analyzes(options.as_deref()) => explained(statement, functions),
        Statement::ShowVariable { variable } => read_if(!names_role_setting(variable)),
        Statement::Copy {
            source,
            to: true,
            target: CopyTarget::Stdout,
            ..
        } => read_if(match source {
            CopySource::Table { .. } => true,
            CopySource::Query(query) => query_only_reads(query, functions),
        }),
        Statement::StartTransaction {
            modes,
            modifier: None,
            statements,
            exception: None,
            has_end_keyword: false,
            ..
        } if statements.is_empty() && opens_replica_safe_read_only(modes) => Class::ReadOnlyBegin,
        _ => Class::Write,
    }
}

/// `Read` when `reads`, else `Write`.
fn read_if(reads: bool) -> Class {
    if reads {
        Class::Read
    } else {
        Class::Write
    }
}

/// EXPLAIN without ANALYZE runs nothing, but it is a read here only when what it explains
/// is: an `EXPLAIN INSERT` goes to the primary, where its plan is the one that matters.
fn explained(statement: &Statement, functions: &WriteFunctions) -> Class {
    match classify(statement, functions) {
        Class::Read => Class::Read,
        _ => Class::Write,
    }
}

/// Whether EXPLAIN's parenthesised options ask for ANALYZE (either spelling). Any value,
/// even `false`, counts: fail closed.
fn analyzes(options: Option<&[UtilityOption]>) -> bool {
    options.unwrap_or_default().iter().any(|o| {
        o.name.value.eq_ignore_ascii_case("analyze") || o.name.value.eq_ignore_ascii_case("analyse")
    })
}

/// Whether `SHOW` names a setting from [`ROLE_SETTINGS`].
fn names_role_setting(variable: &[Ident]) -> bool {
    match variable {
        [one] => ROLE_SETTINGS
            .iter()
            .any(|s| one.value.eq_ignore_ascii_case(s)),
        _ => false,
    }
}

/// Whether a transaction started with `modes` is read only and can run on a standby:
/// `READ ONLY` given and `READ WRITE` not (PostgreSQL applies the last mode given; either
/// order of both goes to the primary), and not `SERIALIZABLE`, which a hot standby
/// refuses.
fn opens_replica_safe_read_only(modes: &[TransactionMode]) -> bool {
    let has = |mode: TransactionMode| modes.contains(&mode);
    has(TransactionMode::AccessMode(TransactionAccessMode::ReadOnly))
        && !has(TransactionMode::AccessMode(
            TransactionAccessMode::ReadWrite,
        ))
        && !has(TransactionMode::IsolationLevel(
            TransactionIsolationLevel::Serializable,
        ))
}
