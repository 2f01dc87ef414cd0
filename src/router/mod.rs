//! Read/write classification of statement text: may it run on a replica, or must it go
//! to the primary? The pure core of issue 4's router: no I/O, no config, no tokio.
//!
//! Owns: hints (`hint`), the classification of parsed statements (`statement`, `reads`),
//! the list of functions that write (`functions`), and a bounded cache (`cache`).
//! Does not: know about sessions, transactions in progress, replicas, lag or
//! read-your-writes; those belong to the caller.
//!
//! The client session calls it through `client::route`, which walks a request's
//! messages and keeps one `ClassCache` per database per worker thread.
//!
//! The rule is fail closed: a statement is `Read` only when its parse proves it cannot
//! write. Whatever sqlparser (PostgreSQL dialect) cannot parse is `Unparsed`, which goes
//! to the primary and which the caller counts.
//!
//! Assumes `standard_conforming_strings = on` (PostgreSQL's default since 9.1): with it
//! off, a backslash in a plain string literal escapes a quote, and the text splits into
//! statements differently from how sqlparser reads it. A caller must send a session that
//! turned it off to the primary.
//!
//! What a statement's text cannot show is out of reach: a view whose definition calls a
//! function that writes, an operator or cast backed by one, a function called in
//! attribute notation (`t.f` for `f(t)`). User VOLATILE functions called by name come in
//! through [`WriteFunctions`]; `/* weir:primary */` covers the rest.

mod cache;
mod functions;
mod hint;
mod reads;
mod statement;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

pub use cache::{ClassCache, DEFAULT_ENTRIES, DEFAULT_MAX_TEXT};
pub use functions::WriteFunctions;

/// Where a statement is to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// The primary: the only server that can write.
    Primary,
    /// Any healthy replica within the lag limit (or the primary, should none qualify).
    Replica,
}

/// What a statement text is, as far as routing goes. [`Class::route`] gives where it
/// runs; the variants keep why, so the caller can count unparsed statements and open a
/// read-only transaction on a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum Class {
    /// Every statement only reads: SELECT, VALUES, `WITH ... SELECT`, TABLE, SHOW,
    /// EXPLAIN without ANALYZE of a read, `COPY ... TO STDOUT` of a table or a read, with
    /// no locking clause, no SELECT INTO, no data-modifying CTE and no call of a function
    /// that writes, at any depth. Also the empty text (PostgreSQL runs nothing).
    Read,
    /// A statement must run on the primary: it writes, locks, changes session or
    /// transaction state, asks whether the server is read only (`SHOW
    /// transaction_read_only`, `pg_is_in_recovery()`), or is of a kind not known to be a
    /// read (DDL, DO, CALL, COPY FROM, SET, BEGIN, COMMIT, PREPARE, ...).
    Write,
    /// `BEGIN READ ONLY` / `START TRANSACTION READ ONLY` (not `SERIALIZABLE`, which a
    /// standby refuses), possibly with reads around it in the same text: opens a
    /// transaction that cannot write, which may run on a replica as a whole.
    ReadOnlyBegin,
    /// sqlparser could not parse the text. It goes to the primary (fail closed); the
    /// caller counts it, as it is read traffic the router may be losing.
    Unparsed,
    /// A leading `/* weir:primary */` or `/* weir:replica */` comment decided, without
    /// parsing. The application's word: a replica hint on a write fails there with
    /// PostgreSQL's own error.
    Hinted(Route),
}

impl Class {
    /// Where a statement of this class runs.
    #[must_use]
    pub fn route(self) -> Route {
        match self {
            Self::Read | Self::ReadOnlyBegin => Route::Replica,
            Self::Write | Self::Unparsed => Route::Primary,
            Self::Hinted(route) => route,
        }
    }
}

/// The class of a simple-protocol query string (one or several statements) or of one
/// extended-protocol statement text (with `$1` parameters), given the functions that
/// write. Several statements are a write if any is; otherwise a read-only BEGIN among
/// reads makes the whole `ReadOnlyBegin`.
///
/// Parses with sqlparser on every call (tens of microseconds): the hot path goes through
/// a [`ClassCache`].
pub fn classify(text: &str, functions: &WriteFunctions) -> Class {
    if let Some(route) = hint::leading(text) {
        return Class::Hinted(route);
    }
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, text) else {
        return Class::Unparsed;
    };
    statements
        .iter()
        .map(|s| statement::classify(s, functions))
        .fold(Class::Read, combine)
}

/// The class of two statements sent together: any write makes a write; a read-only
/// BEGIN among reads leaves the transaction read only.
fn combine(a: Class, b: Class) -> Class {
    match (a, b) {
        (Class::Read, Class::Read) => Class::Read,
        (Class::Read | Class::ReadOnlyBegin, Class::Read | Class::ReadOnlyBegin) => {
            Class::ReadOnlyBegin
        }
        _ => Class::Write,
    }
}

#[cfg(test)]
mod tests;
