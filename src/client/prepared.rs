//! A client's named prepared statements in transaction mode.
//!
//! A client's `Parse` with a name is remembered here. On the server, the statement gets a
//! name of weir's own, derived from its text and parameter types, so clients that prepare
//! the same statement share it on every server, and any server can be given it on demand.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The name is this statement's alone (`with_unique_name`): when the client closes it,
    /// nobody else can use it, so it is closed on the server too.
    pub(crate) unique: bool,
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
            unique: false,
        }
    }
}

impl StatementDef {
    /// The same definition under a name no other statement has: for a client's Parse of a
    /// text a server already holds under the shared name (see `relay::requests::on_parse`).
    pub(crate) fn with_unique_name(self) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self {
            server_name: format!("{}_{n}", self.server_name).into(),
            unique: true,
            ..self
        }
    }
}

/// The statements one client has prepared, by the client's names.
#[derive(Debug, Default)]
pub(crate) struct ClientStatements {
    /// Client name → definition.
    by_name: HashMap<String, Arc<StatementDef>>,
}

impl ClientStatements {
    /// The definition behind the client's `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<StatementDef>> {
        self.by_name.get(name).cloned()
    }

    /// Remembers a Parse.
    pub(crate) fn insert(&mut self, name: &str, def: Arc<StatementDef>) {
        self.by_name.insert(name.to_owned(), def);
    }

    /// Forgets a Close'd (or failed) statement; returns its definition.
    pub(crate) fn remove(&mut self, name: &str) -> Option<Arc<StatementDef>> {
        self.by_name.remove(name)
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
        let e = StatementDef::new(b"SELECT $1\0\0\0", "").with_unique_name();
        assert_ne!(c.server_name, e.server_name);
        assert!(e.server_name.len() <= 63, "{}", e.server_name);
        assert_eq!(a.server_name, b.server_name);
        assert_ne!(a.server_name, c.server_name);
        assert_eq!(a.server_name.len(), 29);
    }
}
