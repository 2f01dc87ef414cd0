//! What the server owes: one entry per request in flight, in order, so each reply can be
//! passed to the client, dropped (replies to weir's own requests), or preceded by a reply
//! weir makes itself (for a client request it answered without the server).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::protocol::BackendTag;
use crate::server::prepared::PreparedSet;

use super::super::prepared::ClientStatements;

/// A request whose reply is still due.
#[derive(Debug)]
pub(super) enum Expect {
    /// The client's own request: its reply goes to the client.
    Client(Request),
    /// weir's own request: its reply is dropped (a failed re-prepare still reaches the client).
    Hidden(Hidden),
    /// A client request weir answered itself; the reply is produced when this reaches the front.
    Synth(Synth),
    /// The client ended COPY data here (CopyDone/CopyFail); no reply of its own.
    CopyEnd,
}

/// A client request, by what ends its reply.
#[derive(Debug)]
pub(super) enum Request {
    /// Parse; a named one carries both names so a failure can be undone.
    Parse(Option<(Arc<str>, String)>),
    /// Bind.
    Bind,
    /// Describe.
    Describe,
    /// Execute.
    Execute,
    /// Close.
    Close,
    /// Sync: ends with ReadyForQuery.
    Sync,
    /// Query or FunctionCall: ends with ReadyForQuery, errors do not skip anything.
    Query,
}

/// A request weir slipped in.
#[derive(Debug)]
pub(super) enum Hidden {
    /// Re-preparing a client's statement on this server.
    Parse(Arc<str>),
    /// Closing a statement on this server: evicted, or about to be prepared again.
    Close(Arc<str>),
    /// The session-parameter sync query.
    ParamSync,
    /// A BEGIN the client sent earlier and weir answered itself (`routing.transactions =
    /// "first_statement"`), sent now that the transaction's first statement chose a server.
    Begin,
}

/// A reply weir makes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Synth {
    /// The client closed one of its statements; the server keeps it for others.
    CloseComplete,
}

/// What to do with one reply message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// Pass it to the client.
    Forward,
    /// Drop it.
    Drop,
}

/// What a ReadyForQuery (or an error) meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// It ended a client request.
    Client,
    /// It ended the parameter sync.
    ParamSync,
    /// It ended the deferred BEGIN: nothing for the client.
    Begin,
}

/// Replies owed by the server, oldest first.
#[derive(Debug, Default)]
pub(super) struct Replies {
    /// One entry per request in flight.
    queue: VecDeque<Expect>,
}

impl Replies {
    /// Adds a request at the end.
    pub(super) fn push(&mut self, e: Expect) {
        self.queue.push_back(e);
    }

    /// Forgets everything owed, keeping the allocation.
    pub(super) fn clear(&mut self) {
        self.queue.clear();
    }

    /// Gives back room beyond `capacity` entries.
    pub(super) fn shrink_to(&mut self, capacity: usize) {
        self.queue.shrink_to(capacity);
    }

    /// Whether nothing is owed.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The next reply weir makes itself, if one is due now (everything before it is done).
    pub(super) fn pop_synth(&mut self) -> Option<Synth> {
        while matches!(self.queue.front(), Some(Expect::CopyEnd)) {
            self.queue.pop_front();
        }
        match self.queue.front() {
            Some(Expect::Synth(s)) => {
                let s = *s;
                self.queue.pop_front();
                Some(s)
            }
            _ => None,
        }
    }

    /// Routes a reply message that weir does not decode.
    pub(super) fn on_message(&mut self, tag: BackendTag) -> Route {
        // A notification answers nothing and is always the client's, even amid weir's own
        // hidden replies: PostgreSQL sends pending ones just before any ReadyForQuery.
        if tag == BackendTag::NotificationResponse {
            return Route::Forward;
        }
        let (route, done) = match self.queue.front() {
            None => (Route::Forward, false),
            Some(Expect::Client(req)) => (Route::Forward, completes(req, tag)),
            Some(Expect::Hidden(h)) => {
                let done = matches!(
                    (h, tag),
                    (Hidden::Parse(_), BackendTag::ParseComplete)
                        | (Hidden::Close(_), BackendTag::CloseComplete)
                );
                (Route::Drop, done)
            }
            Some(Expect::Synth(_) | Expect::CopyEnd) => (Route::Forward, false),
        };
        if done {
            self.queue.pop_front();
        }
        route
    }

    /// The server entered COPY IN for the request at the front: it ignores the Syncs the
    /// client sent after it until its CopyDone/CopyFail. Drops those Syncs and returns how
    /// many, and whether the client's end of the COPY data was already seen.
    pub(super) fn copy_in_started(&mut self) -> (u32, bool) {
        let mut dropped = 0;
        let mut i = 1;
        while i < self.queue.len() {
            match self.queue.get(i) {
                Some(Expect::Client(Request::Sync)) => {
                    self.queue.remove(i);
                    dropped += 1;
                }
                Some(Expect::CopyEnd) => {
                    self.queue.remove(i);
                    return (dropped, true);
                }
                _ => i += 1,
            }
        }
        (dropped, false)
    }

    /// The client's name of the statement whose ParseComplete is due next, if the client
    /// prepared it.
    pub(super) fn client_parse_due(&self) -> Option<&str> {
        match self.queue.front() {
            Some(Expect::Client(Request::Parse(Some((_, name))))) => Some(name),
            _ => None,
        }
    }

    /// Whether a ParameterStatus now belongs to weir's own request (and is not the client's).
    pub(super) fn in_hidden(&self) -> bool {
        matches!(self.queue.front(), Some(Expect::Hidden(_)))
    }

    /// Routes a ReadyForQuery: it ends the oldest Sync or Query.
    pub(super) fn on_ready(&mut self) -> Ending {
        while let Some(e) = self.queue.pop_front() {
            match e {
                Expect::Client(Request::Sync | Request::Query) => return Ending::Client,
                Expect::Hidden(Hidden::ParamSync) => return Ending::ParamSync,
                Expect::Hidden(Hidden::Begin) => return Ending::Begin,
                _ => {}
            }
        }
        Ending::Client
    }

    /// Routes a (non-fatal) ErrorResponse. In the extended protocol the server then skips
    /// everything up to the next Sync, so those requests are dropped here too, undoing what
    /// weir assumed about them (a failed Parse prepared nothing; a skipped Close closed nothing).
    pub(super) fn on_error(
        &mut self,
        prepared: &mut PreparedSet,
        statements: &mut ClientStatements,
    ) -> Ending {
        match self.queue.front() {
            Some(Expect::Client(Request::Query)) => return Ending::Client,
            Some(Expect::Hidden(Hidden::ParamSync)) => return Ending::ParamSync,
            Some(Expect::Hidden(Hidden::Begin)) => return Ending::Begin,
            _ => {}
        }
        while let Some(e) = self.queue.front() {
            if matches!(
                e,
                Expect::Client(Request::Sync | Request::Query)
                    | Expect::Hidden(Hidden::ParamSync | Hidden::Begin)
            ) {
                break;
            }
            // Whether the server holds a name whose Parse or Close failed or was skipped is
            // not known (a Parse that replaces a copy follows a Close of it, and either may
            // have run): the next use closes and prepares it again.
            match self.queue.pop_front() {
                Some(Expect::Client(Request::Parse(Some((server_name, client_name))))) => {
                    prepared.mark_unknown(server_name);
                    statements.remove(&client_name);
                }
                Some(Expect::Hidden(Hidden::Parse(name) | Hidden::Close(name))) => {
                    prepared.mark_unknown(name);
                }
                _ => {}
            }
        }
        Ending::Client
    }
}

/// Whether `tag` is the last message of the reply to `req`.
fn completes(req: &Request, tag: BackendTag) -> bool {
    match req {
        Request::Parse(_) => tag == BackendTag::ParseComplete,
        Request::Bind => tag == BackendTag::BindComplete,
        Request::Close => tag == BackendTag::CloseComplete,
        Request::Describe => matches!(tag, BackendTag::RowDescription | BackendTag::NoData),
        Request::Execute => matches!(
            tag,
            BackendTag::CommandComplete
                | BackendTag::EmptyQueryResponse
                | BackendTag::PortalSuspended
        ),
        Request::Sync | Request::Query => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::prepared::Held;

    #[test]
    fn error_skips_to_sync_and_undoes_prepares() {
        let mut r = Replies::default();
        let mut prepared = PreparedSet::default();
        let mut stmts = ClientStatements::default();
        prepared.insert("weir_a".into(), 1);
        r.push(Expect::Hidden(Hidden::Parse("weir_a".into())));
        r.push(Expect::Client(Request::Bind));
        r.push(Expect::Synth(Synth::CloseComplete));
        r.push(Expect::Client(Request::Execute));
        r.push(Expect::Client(Request::Sync));
        assert_eq!(r.on_error(&mut prepared, &mut stmts), Ending::Client);
        assert_eq!(prepared.touch("weir_a", 1, Some(1)), Held::Stale);
        assert_eq!(r.pop_synth(), None);
        assert_eq!(r.on_ready(), Ending::Client);
        assert!(r.is_empty());
    }

    #[test]
    fn hidden_replies_are_dropped_and_synth_waits_its_turn() {
        let mut r = Replies::default();
        r.push(Expect::Hidden(Hidden::Parse("weir_b".into())));
        r.push(Expect::Synth(Synth::CloseComplete));
        r.push(Expect::Client(Request::Bind));
        assert_eq!(r.pop_synth(), None);
        assert_eq!(
            r.on_message(BackendTag::NotificationResponse),
            Route::Forward
        );
        assert_eq!(r.on_message(BackendTag::ParseComplete), Route::Drop);
        assert_eq!(r.pop_synth(), Some(Synth::CloseComplete));
        assert_eq!(r.on_message(BackendTag::BindComplete), Route::Forward);
        assert!(r.is_empty());
    }
}
