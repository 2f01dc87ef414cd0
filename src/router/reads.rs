//! Whether a parsed query only reads: a walk over its whole tree (subqueries, CTEs, FROM
//! functions, expressions everywhere) with sqlparser's `Visitor`, stopping at the first
//! sign of a write.
//!
//! Owns: the list of what makes a query a write. Does not: decide which statement kinds
//! are queries (see `statement`).

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Query, Select, Statement, TableFactor, Visit, Visitor};

use super::WriteFunctions;

/// Whether `query`, everything nested in it included, only reads.
pub(crate) fn query_only_reads(query: &Query, functions: &WriteFunctions) -> bool {
    query.visit(&mut WriteFinder { functions }).is_continue()
}

/// Walks a query and breaks at the first thing that writes, locks, or is not known to
/// be a read.
struct WriteFinder<'a> {
    /// Names of functions whose call is a write.
    functions: &'a WriteFunctions,
}

/// The visitor's verdict on one node.
fn write_if(writes: bool) -> ControlFlow<()> {
    if writes {
        ControlFlow::Break(())
    } else {
        ControlFlow::Continue(())
    }
}

impl Visitor for WriteFinder<'_> {
    type Break = ();

    /// A locking clause (`FOR UPDATE` / `FOR SHARE`, at any depth, as PostgreSQL locks the
    /// rows of a subquery too), or clauses of other dialects that PostgreSQL has not.
    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        write_if(
            !query.locks.is_empty()
                || query.for_clause.is_some()
                || query.settings.is_some()
                || query.format_clause.is_some()
                || !query.pipe_operators.is_empty(),
        )
    }

    /// `SELECT ... INTO new_table` creates a table.
    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        write_if(select.into.is_some())
    }

    /// A statement inside a query is a data-modifying CTE (`WITH x AS (INSERT ...)`) or
    /// the like; only a nested query is a read.
    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        write_if(!matches!(statement, Statement::Query(_)))
    }

    /// A call of a function that writes, anywhere an expression can be.
    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => write_if(self.functions.writes_object(&f.name)),
            _ => ControlFlow::Continue(()),
        }
    }

    /// A function in FROM (`FROM nextval('s')`, `LATERAL f(x)`); table factors of other
    /// dialects count as writes, as PostgreSQL would not run them as reads.
    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table { name, args, .. } => {
                write_if(args.is_some() && self.functions.writes_object(name))
            }
            TableFactor::Function { name, .. } => write_if(self.functions.writes_object(name)),
            TableFactor::Derived { .. }
            | TableFactor::TableFunction { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::JsonTable { .. }
            | TableFactor::XmlTable { .. }
            | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            _ => ControlFlow::Break(()),
        }
    }
}
