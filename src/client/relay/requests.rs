//! The client→server direction: count what needs an answer and, in transaction mode, give
//! named prepared statements weir's server-side names, preparing them on this server first
//! when it lacks them. Edits happen in place in the client's read buffer, in stream order.

use std::sync::Arc;

use bytes::BytesMut;

use super::replies::{Expect, Hidden, Request, Synth};
use super::Relay;
use crate::client::hints;
use crate::client::prepared::{ClientStatement, ClientStatements, StatementDef};
use crate::client::session::ClientState;
use crate::client::SessionError;
use crate::net::Conn;
use crate::protocol::{
    self, Extended, FrontendTag, MessageBuilder, ProtocolError, TxStatus, MAX_INSPECTED_LEN,
};
use crate::server::prepared::{tick, Held};
use crate::server::ServerConn;

/// Statement and portal names longer than this are refused (PostgreSQL truncates at 63).
const MAX_NAMES_LEN: usize = 4096;
/// How much of a Query's text is looked at to spot DEALLOCATE ALL / DISCARD ALL.
const QUERY_PEEK: usize = 32;

/// What scanning one message needs.
enum Step {
    /// Go on with the next message.
    Next,
    /// Wait for more client bytes.
    More,
}

impl Relay {
    /// Walks newly read client bytes: counts requests, renames prepared statements.
    pub(super) fn scan_client(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
        state: &mut ClientState,
    ) -> Result<(), SessionError> {
        let ClientState {
            statements,
            scratch,
            desired,
            ..
        } = state;
        let search_path = desired.get("search_path").unwrap_or_default();
        while !self.terminate {
            if !self.cscan.at_boundary() {
                let n = self.cscan.passable(client.rbuf.len() - self.cfwd);
                if n == 0 {
                    break;
                }
                self.cfwd += n;
                continue;
            }
            let Some(unscanned) = client.rbuf.get(self.cfwd..) else {
                break;
            };
            let Some((tag, total)) = self.cscan.peek(unscanned)? else {
                break;
            };
            if self.holds_next_request() && tag != FrontendTag::Flush {
                break;
            }
            let available = unscanned.len();
            let step = match tag {
                FrontendTag::Query | FrontendTag::FunctionCall => {
                    let want = total.min(5 + QUERY_PEEK);
                    if available < want {
                        Step::More
                    } else {
                        // Text not read yet cannot be checked: a long query counts as a hint.
                        let text = unscanned.get(5..total.min(available)).unwrap_or_default();
                        self.hints
                            .merge(hints::Hints::of_text(text, total <= available));
                        if tag == FrontendTag::Query
                            && resets_statements(unscanned.get(5..want).unwrap_or_default())
                        {
                            // Settings are left to the probe (DEALLOCATE ALL keeps them).
                            statements.clear();
                            server.prepared.clear();
                        }
                        self.replies.push(Expect::Client(Request::Query));
                        self.add_pending();
                        self.requests_sent += 1;
                        self.cscan.pass(total);
                        Step::Next
                    }
                }
                FrontendTag::Sync => {
                    // A server in COPY IN ignores Sync until the data ends.
                    if !self.copy_in {
                        self.replies.push(Expect::Client(Request::Sync));
                        self.add_pending();
                        self.requests_sent += 1;
                        self.unsynced = false;
                    }
                    self.cscan.pass(total);
                    Step::Next
                }
                FrontendTag::Flush => {
                    // A Flush starts nothing: psycopg's pipelines send one right after their
                    // Sync, and the server is idle once that Sync is answered.
                    self.cscan.pass(total);
                    Step::Next
                }
                FrontendTag::Execute => self.plain(Request::Execute, total),
                FrontendTag::Parse if self.config.rewrite => {
                    self.on_parse(client, server, statements, scratch, search_path, total)?
                }
                FrontendTag::Bind if self.config.rewrite => {
                    self.on_bind(client, server, statements, scratch, total)?
                }
                FrontendTag::Describe | FrontendTag::Close if self.config.rewrite => {
                    self.on_target(client, server, statements, scratch, tag, total)?
                }
                FrontendTag::Parse => self.plain(Request::Parse(None), total),
                FrontendTag::Bind => self.plain(Request::Bind, total),
                FrontendTag::Describe => self.plain(Request::Describe, total),
                FrontendTag::Close => self.plain(Request::Close, total),
                FrontendTag::CopyData => {
                    self.cscan.pass(total);
                    Step::Next
                }
                FrontendTag::CopyDone | FrontendTag::CopyFail => {
                    if self.copy_in {
                        self.copy_in = false;
                    } else {
                        self.replies.push(Expect::CopyEnd);
                    }
                    self.cscan.pass(total);
                    Step::Next
                }
                FrontendTag::Terminate => {
                    // Terminate is the last thing a client sends: it is not forwarded.
                    self.terminate = true;
                    client.rbuf.truncate(self.cfwd);
                    Step::More
                }
                FrontendTag::Password => return Err(ProtocolError::UnexpectedTag('p').into()),
            };
            match step {
                Step::More => break,
                Step::Next => self.started = true,
            }
        }
        Ok(())
    }

    /// Whether a one-request relay must not take up the client's next request yet: the
    /// last one is unanswered (its answer tells whether a transaction goes on), or it was
    /// answered outside a transaction, so the session routes the next one afresh.
    fn holds_next_request(&self) -> bool {
        self.config.one_request
            && self.requests_sent > 0
            && (self.pending > 0 || self.tx == TxStatus::Idle)
    }

    /// The unscanned client bytes, and the part of the next message's body (of `total`
    /// bytes) that has arrived.
    fn next_message<'a>(&self, client: &'a Conn, total: usize) -> (&'a [u8], &'a [u8]) {
        let unscanned = client.rbuf.get(self.cfwd..).unwrap_or_default();
        let body = unscanned
            .get(5..total.min(unscanned.len()))
            .unwrap_or_default();
        (unscanned, body)
    }

    /// An extended-protocol message forwarded untouched.
    fn plain(&mut self, request: Request, total: usize) -> Step {
        self.unsynced = true;
        self.replies.push(Expect::Client(request));
        self.cscan.pass(total);
        Step::Next
    }

    /// Parse: an unnamed statement passes through; a named one is remembered for the client
    /// and prepared under weir's name, unless this server already has it.
    fn on_parse(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
        statements: &mut ClientStatements,
        out: &mut BytesMut,
        search_path: &str,
        total: usize,
    ) -> Result<Step, SessionError> {
        let (unscanned, body) = self.next_message(client, total);
        self.hints
            .merge(hints::Hints::of_text(body, unscanned.len() >= total));
        let Some((name, _)) = Extended::parse_name(body)? else {
            if unscanned.len() >= total {
                return Err(ProtocolError::Malformed { what: "Parse" }.into());
            }
            return Ok(Step::More);
        };
        if name.is_empty() {
            return Ok(self.plain(Request::Parse(None), total));
        }
        if total > MAX_INSPECTED_LEN {
            return Err(ProtocolError::BadLength {
                tag: 'P',
                len: total - 1,
            }
            .into());
        }
        let Some(whole) = unscanned.get(..total) else {
            return Ok(Step::More);
        };
        let Some((name, tail)) = Extended::parse_name(whole.get(5..).unwrap_or_default())? else {
            return Err(ProtocolError::Malformed { what: "Parse" }.into());
        };
        let name = name.to_owned();
        let def = Arc::new(StatementDef::new(tail, search_path));
        self.unsynced = true;
        out.clear();
        // A Parse is always analysed afresh, as on PostgreSQL: a copy this server already
        // holds may predate a schema change, so it is replaced.
        let sent = self.make_room(server, &def.server_name, out);
        MessageBuilder::parse(out, &def.server_name, &def.tail);
        statements.insert(&name, def.clone(), sent);
        self.replies.push(Expect::Client(Request::Parse(Some((
            def.server_name.clone(),
            name,
        )))));
        protocol::splice(&mut client.rbuf, self.cfwd, total, out);
        self.cfwd += out.len();
        Ok(Step::Next)
    }

    /// Bind: a named statement of the client's gets weir's name, prepared here first if needed.
    fn on_bind(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
        statements: &mut ClientStatements,
        out: &mut BytesMut,
        total: usize,
    ) -> Result<Step, SessionError> {
        let (unscanned, body) = self.next_message(client, total);
        let Some((portal, stmt, rest_at)) = Extended::bind_names(body)? else {
            if unscanned.len() >= total {
                return Err(ProtocolError::Malformed { what: "Bind" }.into());
            }
            if body.len() > MAX_NAMES_LEN {
                return Err(ProtocolError::Malformed {
                    what: "Bind (names too long)",
                }
                .into());
            }
            return Ok(Step::More);
        };
        let Some(statement) = (!stmt.is_empty()).then(|| statements.get(stmt)).flatten() else {
            // Unnamed, or unknown to weir: the server answers (26000 for an unknown name).
            return Ok(self.plain(Request::Bind, total));
        };
        let rest_len = total - 5 - rest_at;
        self.hints.merge(statement.def.hints);
        out.clear();
        self.ensure_prepared(server, statement, out);
        MessageBuilder::bind_prefix(out, portal, &statement.def.server_name, rest_len);
        protocol::splice(&mut client.rbuf, self.cfwd, 5 + rest_at, out);
        self.cfwd += out.len();
        self.unsynced = true;
        self.replies.push(Expect::Client(Request::Bind));
        self.cscan.pass(rest_len);
        Ok(Step::Next)
    }

    /// Describe or Close of a named statement: renamed (Describe) or answered by weir (Close:
    /// the client forgets its name; the server keeps the statement for other clients).
    fn on_target(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
        statements: &mut ClientStatements,
        out: &mut BytesMut,
        tag: FrontendTag,
        total: usize,
    ) -> Result<Step, SessionError> {
        let (what, request) = match tag {
            FrontendTag::Describe => ("Describe", Request::Describe),
            _ => ("Close", Request::Close),
        };
        if total > 5 + MAX_NAMES_LEN {
            return Err(ProtocolError::BadLength {
                tag: what.chars().next().unwrap_or('?'),
                len: total - 1,
            }
            .into());
        }
        let unscanned = client.rbuf.get(self.cfwd..).unwrap_or_default();
        let Some(whole) = unscanned.get(..total) else {
            return Ok(Step::More);
        };
        let (kind, name) = Extended::target(whole.get(5..).unwrap_or_default(), what)?;
        if kind != b'S' || name.is_empty() {
            return Ok(self.plain(request, total));
        }
        self.unsynced = true;
        out.clear();
        if tag == FrontendTag::Close {
            // The client forgets its name; the server keeps the statement for others.
            // Closing a name that does not exist is not an error in PostgreSQL either.
            statements.remove(name);
            self.replies.push(Expect::Synth(Synth::CloseComplete));
        } else {
            let Some(statement) = statements.get(name) else {
                return Ok(self.plain(request, total));
            };
            self.ensure_prepared(server, statement, out);
            MessageBuilder::target(out, b'D', b'S', &statement.def.server_name);
            self.replies.push(Expect::Client(Request::Describe));
        }
        protocol::splice(&mut client.rbuf, self.cfwd, total, out);
        self.cfwd += out.len();
        Ok(Step::Next)
    }

    /// Queues a Parse of a client's statement when this server lacks a copy fresh enough
    /// for it (see `server::prepared`).
    fn ensure_prepared(
        &mut self,
        server: &mut ServerConn,
        statement: &ClientStatement,
        out: &mut BytesMut,
    ) {
        let name = &statement.def.server_name;
        let held = server
            .prepared
            .touch(name, statement.sent, statement.answered);
        if held == Held::Fresh {
            return;
        }
        self.make_room(server, name, out);
        MessageBuilder::parse(out, name, &statement.def.tail);
        self.replies
            .push(Expect::Hidden(Hidden::Parse(name.clone())));
    }

    /// Queues what must precede a Parse of `name` on this server: a Close of the copy it
    /// holds, and of the least recently used statements while the set is over the limit.
    /// Records the Parse and returns its tick.
    fn make_room(&mut self, server: &mut ServerConn, name: &Arc<str>, out: &mut BytesMut) -> u64 {
        let mut close = |replies: &mut super::replies::Replies, victim: Arc<str>| {
            MessageBuilder::target(out, b'C', b'S', &victim);
            replies.push(Expect::Hidden(Hidden::Close(victim)));
        };
        if server.prepared.contains(name) {
            close(&mut self.replies, name.clone());
        }
        let sent = tick();
        server.prepared.insert(name.clone(), sent);
        while let Some(victim) = server.prepared.evict(name, self.config.max_prepared) {
            close(&mut self.replies, victim);
        }
        sent
    }
}

/// Whether a query's text starts with DEALLOCATE [PREPARE] ALL or DISCARD ALL, which drop
/// every prepared statement of the session. Runs on every Query: no allocation.
fn resets_statements(text: &[u8]) -> bool {
    // Nearly every text starts with another letter: decide those without splitting words.
    let first = text
        .iter()
        .find(|b| !(b.is_ascii_whitespace() || **b == b';' || **b == 0));
    if !first.is_some_and(|b| b.eq_ignore_ascii_case(&b'd')) {
        return false;
    }
    let mut words = text
        .split(|b| b.is_ascii_whitespace() || *b == b';' || *b == 0)
        .filter(|w| !w.is_empty());
    let is =
        |w: Option<&[u8]>, word: &str| w.is_some_and(|w| w.eq_ignore_ascii_case(word.as_bytes()));
    let (a, b, c) = (words.next(), words.next(), words.next());
    (is(a, "DISCARD") && is(b, "ALL"))
        || (is(a, "DEALLOCATE") && (is(b, "ALL") || (is(b, "PREPARE") && is(c, "ALL"))))
}

#[cfg(test)]
mod tests {
    use super::resets_statements;

    #[test]
    fn spots_statement_resets() {
        assert!(resets_statements(b"DEALLOCATE ALL"));
        assert!(resets_statements(b"  discard all;"));
        assert!(resets_statements(b"; DISCARD ALL"));
        assert!(!resets_statements(b"DEALLOCATE foo"));
        assert!(!resets_statements(b"SELECT 1"));
        assert!(resets_statements(b"deallocate prepare all"));
        assert!(!resets_statements(b"DEALLOCATE PREPARE foo"));
        // A short Query's text is peeked at with its terminating NUL (psycopg sends this).
        assert!(resets_statements(b"DEALLOCATE ALL\0"));
    }
}
