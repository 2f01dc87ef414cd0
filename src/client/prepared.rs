//! A client's named prepared statements in transaction mode.
//!
//! A client's `Parse` with a name is remembered here. On the server, the statement gets a
//! name of weir's own, derived from its text and parameter types, so clients that prepare
//! the same statement share it on every server, and any server can be given it on demand.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// One statement as prepared by a client.
#[derive(Debug)]
pub(crate) struct StatementDef {
    /// weir's server-side name: `weir_` + 24 hex digits of a hash of `tail`.
    pub(crate) server_name: Arc<str>,
    /// The Parse body after the name: query text and parameter types, replayed as is.
    pub(crate) tail: Bytes,
    /// What the text suggests about session state (an advisory lock, `set_config`): each
    /// run of it makes the session probe the server.
    pub(crate) hints: super::hints::Hints,
}

impl StatementDef {
    /// The definition of a Parse body tail, prepared under `search_path`: the same text
    /// can name different tables under different paths, so the path is part of the name.
    pub(crate) fn new(tail: &[u8], search_path: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(search_path.as_bytes());
        hash.update([0xff]);
        hash.update(tail);
        let digest = hash.finalize();
        let mut name = String::with_capacity(29);
        name.push_str("weir_");
        for b in digest.iter().take(12) {
            let _ = write!(name, "{b:02x}");
        }
        Self {
            server_name: name.into(),
            tail: Bytes::copy_from_slice(tail),
            hints: super::hints::Hints::of_text(tail, true),
        }
    }
}

/// One of a client's statements, with the ticks (`server::prepared::tick`) that tell which
/// servers' copies are fresh enough for it.
#[derive(Debug, Clone)]
pub(crate) struct ClientStatement {
    /// What was prepared.
    pub(crate) def: Arc<StatementDef>,
    /// When its Parse was sent: the copy that Parse made is the client's own.
    pub(crate) sent: u64,
    /// When its Parse was answered (`None` until then): copies made later are fresh.
    pub(crate) answered: Option<u64>,
}

/// The statements one client has prepared, by the client's names.
#[derive(Debug, Default)]
pub(crate) struct ClientStatements {
    /// Client name → statement.
    by_name: HashMap<String, ClientStatement>,
}

impl ClientStatements {
    /// The statement behind the client's `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&ClientStatement> {
        self.by_name.get(name)
    }

    /// Remembers a Parse sent at tick `sent`.
    pub(crate) fn insert(&mut self, name: &str, def: Arc<StatementDef>, sent: u64) {
        let statement = ClientStatement {
            def,
            sent,
            answered: None,
        };
        self.by_name.insert(name.to_owned(), statement);
    }

    /// The Parse of `name` was answered at tick `at`.
    pub(crate) fn answered(&mut self, name: &str, at: u64) {
        if let Some(s) = self.by_name.get_mut(name) {
            s.answered = Some(at);
        }
    }

    /// Forgets a Close'd (or failed) statement.
    pub(crate) fn remove(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    /// The server was lost with Parses unanswered: whether they ran is not known, so each
    /// counts as answered now (the copies made before it are then replaced before use,
    /// instead of every use waiting for an answer that will not come).
    pub(crate) fn settle(&mut self, at: u64) {
        for s in self.by_name.values_mut() {
            s.answered.get_or_insert(at);
        }
    }

    /// Forgets everything (DEALLOCATE ALL, DISCARD ALL).
    pub(crate) fn clear(&mut self) {
        self.by_name.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_and_types_share_a_server_name() {
        let a = StatementDef::new(b"SELECT $1\0\0\x01\0\0\0\x17", "");
        let b = StatementDef::new(b"SELECT $1\0\0\x01\0\0\0\x17", "");
        let c = StatementDef::new(b"SELECT $1\0\0\0", "");
        let d = StatementDef::new(b"SELECT $1\0\0\0", "s1, public");
        assert_ne!(c.server_name, d.server_name);
        assert_eq!(a.server_name, b.server_name);
        assert_ne!(a.server_name, c.server_name);
        assert_eq!(a.server_name.len(), 29);
    }
}
