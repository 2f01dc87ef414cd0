//! The server→client direction: walk the replies, route each one (to the client, or
//! dropped when it answers weir's own request), and follow what they report: transaction
//! status, parameters, errors, prepared statements answered.

use super::replies::{Ending, Route, Synth};
use super::Relay;
use crate::client::hints;
use crate::client::session::ClientState;
use crate::client::SessionError;
use crate::net::Conn;
use crate::protocol::{self, BackendEvent, BackendTag, ErrorSeverity, MessageBuilder, TxStatus};
use crate::server::{prepared, ServerConn};

impl Relay {
    /// Puts the replies weir makes itself that are due now into the client-bound stream.
    fn emit_synth(&mut self, server: &mut ServerConn) {
        while let Some(synth) = self.replies.pop_synth() {
            let msg: &[u8] = match synth {
                Synth::CloseComplete => &MessageBuilder::CLOSE_COMPLETE,
            };
            protocol::splice(&mut server.conn.rbuf, self.sfwd, 0, msg);
            self.sfwd += msg.len();
        }
    }

    /// Walks newly read server bytes: routes each reply, tracks ReadyForQuery and
    /// parameters, and keeps a FATAL error for the client to hear in weir's words.
    pub(super) fn scan_server(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
        state: &mut ClientState,
    ) -> Result<(), SessionError> {
        loop {
            self.emit_synth(server);
            let Some(unscanned) = server.conn.rbuf.get(self.sfwd..) else {
                break;
            };
            let event = self
                .sscan
                .next(unscanned)
                .inspect_err(|_| server.clean = false)?;
            let len = event.len();
            let route = match event {
                BackendEvent::NeedMore => break,
                BackendEvent::Whole { tag, .. } => self.on_reply(tag, state),
                BackendEvent::Start { tag, .. } => {
                    self.dropping = self.on_reply(tag, state) == Route::Drop;
                    continue;
                }
                BackendEvent::Pass(_) if self.dropping => Route::Drop,
                BackendEvent::Pass(_) => Route::Forward,
                BackendEvent::ReadyForQuery { status, .. } => {
                    self.on_ready(status, client, server, state)
                }
                BackendEvent::CommandComplete { len } => {
                    let route = self.replies.on_message(BackendTag::CommandComplete);
                    if route == Route::Forward {
                        let at = self.sfwd;
                        if let Some(tag) = server.conn.rbuf.get(at + 5..at + len - 1) {
                            self.hints.session |= hints::tag_changes_session(tag);
                            self.settings_reset |= hints::tag_resets_settings(tag);
                        }
                    }
                    route
                }
                BackendEvent::ParameterStatus { len } => {
                    let msg = server.conn.rbuf.get(self.sfwd..self.sfwd + len);
                    let (name, value) = protocol::parameter_status(msg.unwrap_or_default())
                        .inspect_err(|_| server.clean = false)?;
                    server.params.report(name, value);
                    let hidden = self.replies.in_hidden();
                    if hidden
                        || crate::server::ParamSet::is_tracked(name)
                        || state.desired.get(name).is_some()
                    {
                        // The client's own command changed it (or weir's sync canonicalised it).
                        state.desired.set(name, value);
                    }
                    if hidden {
                        Route::Drop
                    } else {
                        Route::Forward
                    }
                }
                BackendEvent::Error { len } => {
                    let msg = server.conn.rbuf.get(self.sfwd..self.sfwd + len);
                    let fields = protocol::error_fields(msg.unwrap_or_default())
                        .inspect_err(|_| server.clean = false)?;
                    if fields.is_fatal() {
                        server.clean = false;
                        self.fatal = Some(fields);
                        Route::Drop
                    } else {
                        match self
                            .replies
                            .on_error(&mut server.prepared, &mut state.statements)
                        {
                            Ending::ParamSync => {
                                self.sync_failed = Some(fields);
                                Route::Drop
                            }
                            Ending::Begin => {
                                // The BEGIN weir answered for (plain, or with a read-write
                                // isolation level) failed after all: the client hears it,
                                // and the ReadyForQuery that ends its request says `I`.
                                tracing::warn!(code = %fields.code, "deferred BEGIN failed: {}", fields.message);
                                Route::Forward
                            }
                            Ending::Client => Route::Forward,
                        }
                    }
                }
            };
            match route {
                Route::Forward => self.sfwd += len,
                // Dropped bytes are cut out where they are; what is before them still goes out.
                Route::Drop => protocol::splice(&mut server.conn.rbuf, self.sfwd, len, &[]),
            }
        }
        Ok(())
    }

    /// Routes a ReadyForQuery: it ends a client request, weir's parameter sync, or the
    /// deferred BEGIN.
    fn on_ready(
        &mut self,
        status: TxStatus,
        client: &mut Conn,
        server: &mut ServerConn,
        state: &mut ClientState,
    ) -> Route {
        match self.replies.on_ready() {
            Ending::ParamSync => {
                self.param_sync_done(client, server, state);
                Route::Drop
            }
            Ending::Begin => Route::Drop,
            Ending::Client => {
                self.pending = self.pending.saturating_sub(1);
                self.tally.answered += 1;
                if self.pending == 0 {
                    if let Some(since) = self.tally.busy_since.take() {
                        let now = std::time::Instant::now();
                        self.tally.busy_us +=
                            crate::stats::micros(now.saturating_duration_since(since));
                        self.tally.last_answer = Some(now);
                    }
                    self.waiting_since = None;
                    // Idle-in-transaction time counts from the answer, not the question.
                    self.touch_client();
                }
                self.tx = status;
                Route::Forward
            }
        }
    }

    /// Routes a reply message the scanner does not decode.
    fn on_reply(&mut self, tag: BackendTag, state: &mut ClientState) -> Route {
        match tag {
            BackendTag::CopyInResponse => {
                let (ignored, ended) = self.replies.copy_in_started();
                self.pending = self.pending.saturating_sub(ignored);
                self.copy_in = !ended;
            }
            BackendTag::ParseComplete => {
                if let Some(name) = self.replies.client_parse_due() {
                    state.statements.answered(name, prepared::tick());
                }
            }
            _ => {}
        }
        self.replies.on_message(tag)
    }

    /// The reply to weir's parameter sync ended.
    fn param_sync_done(
        &mut self,
        client: &mut Conn,
        server: &mut ServerConn,
        state: &mut ClientState,
    ) {
        let desired = &mut state.desired;
        match self.sync_failed.take() {
            None => server.params.synced(desired),
            Some(fields) => {
                tracing::warn!(code = %fields.code, "could not apply a client's session parameters: {}", fields.message);
                MessageBuilder::error(
                    &mut client.wbuf,
                    ErrorSeverity::Warning,
                    fields.code_or(crate::error::SqlState::WARNING.code()),
                    &format!(
                        "weir could not apply your session parameters on the server: {}",
                        fields.message
                    ),
                );
                // Stop asking for what the server refuses: the client now has the server's values.
                let current: Vec<(String, Option<String>)> = desired
                    .iter()
                    .map(|(n, _)| {
                        let v = server
                            .params
                            .reported()
                            .get(n)
                            .or_else(|| server.params.applied().get(n));
                        (n.to_owned(), v.map(str::to_owned))
                    })
                    .collect();
                for (name, value) in current {
                    match value {
                        Some(v) => desired.set(&name, &v),
                        None => desired.remove(&name),
                    }
                }
            }
        }
    }
}
