//! The admin console: a client of database `weir` (or `pgbouncer`) listed in
//! `admin.users` talks to weir itself, never to a server, over the simple or the extended
//! protocol, with PgBouncer's commands and result columns.
//!
//! Owns: the console's session loop and protocol handling, and dispatching commands.
//! Does not: authenticate (the client task did), or hold any state of its own besides the
//! session's prepared statements and portals.

mod actions;
mod columns;
mod command;
mod gauges;
mod settings;
mod show;
mod status;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;

use crate::app::Shared;
use crate::cancel::{CancelHandle, ClientInfo};
use crate::client::SessionError;
use crate::error::SqlState;
use crate::net::Conn;
use crate::protocol::{ErrorSeverity, MessageBuilder, Request, Target, TxStatus};
pub(crate) use gauges::{health, refresh_gauges};
pub(crate) use show::{resident_bytes, version};
pub(crate) use status::{json as status_json, PAGE as STATUS_PAGE};

use command::{Command, ParseError};
use show::{Column, Show};

/// Largest message the console reads (commands are short).
const MAX_MESSAGE: usize = 64 * 1024;
/// Most prepared statements or portals one console session keeps (their texts are at
/// most `MAX_MESSAGE` each, so a session holds at most a few MiB of them).
const MAX_NAMED: usize = 32;
/// Answers are written out once this much is buffered, so a query repeating `SHOW
/// CLIENTS` cannot make weir buffer without bound.
const FLUSH_AT: usize = 256 * 1024;
/// A console client must take its answers within this.
const WRITE_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// An admin command failed: SQLSTATE and message for the ErrorResponse.
#[derive(Debug)]
pub(crate) struct AdminError {
    code: SqlState,
    message: String,
}

impl AdminError {
    fn new(code: SqlState, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn from_parse(e: ParseError, text: &str) -> Self {
        match e {
            ParseError::Unknown => Self::new(
                SqlState::SYNTAX_ERROR,
                format!("invalid command '{}', use SHOW HELP;", text.trim()),
            ),
            ParseError::NeedsDatabase(verb) => Self::new(
                SqlState::SYNTAX_ERROR,
                format!("{verb} needs an argument: {verb} <name>"),
            ),
        }
    }
}

/// What a command produced, written in the protocol by `write_result`.
struct Outcome {
    /// Notices to send first: (message, detail).
    notices: Vec<(String, String)>,
    /// Rows (the columns come from the command).
    rows: show::Rows,
    /// The CommandComplete tag.
    tag: String,
}

impl Outcome {
    fn tag(tag: impl Into<String>) -> Self {
        Self {
            notices: Vec::new(),
            rows: Vec::new(),
            tag: tag.into(),
        }
    }
}

/// Writes what a client sees after logging in to the console.
pub(crate) fn greet(buf: &mut BytesMut, process_id: i32, secret_key: i32) {
    MessageBuilder::auth_ok(buf);
    let version = format!("15.0 ({})", show::version());
    for (name, value) in [
        ("server_version", version.as_str()),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "GMT"),
        ("standard_conforming_strings", "on"),
        ("integer_datetimes", "on"),
        ("is_superuser", "on"),
    ] {
        MessageBuilder::parameter_status(buf, name, value);
    }
    MessageBuilder::backend_key_data(buf, process_id, secret_key);
    MessageBuilder::ready_for_query(buf, TxStatus::Idle);
}

/// A console session's prepared statements and portals (extended protocol).
#[derive(Default)]
struct Extended {
    /// Statement name → its command, parsed once at Parse (`None`: an empty query).
    statements: HashMap<String, Option<Command>>,
    /// Portal name → (its command, which columns the client wants in binary).
    portals: HashMap<String, (Option<Command>, Vec<bool>)>,
    /// An error happened since the last Sync: messages are skipped until the next one.
    failed: bool,
}

/// Serves an admin console session until the client leaves.
pub(crate) async fn serve(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    me: &CancelHandle,
) -> Result<(), SessionError> {
    let mut shutdown = shared.shutdown.subscribe();
    let mut ext = Extended::default();
    loop {
        if *shutdown.borrow() {
            return Err(SessionError::ShuttingDown);
        }
        if me.slot.info.killed() {
            return Err(SessionError::Killed);
        }
        let frame = match crate::protocol::decode(&mut conn.rbuf, MAX_MESSAGE)? {
            Some(frame) => frame,
            None => {
                write_out(conn, 1).await?;
                tokio::select! {
                    n = conn.read_some() => {
                        if n? == 0 {
                            return Ok(());
                        }
                    }
                    _ = me.slot.wake.notified() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        let request = Request::decode(frame.tag(), frame.body())?;
        match request {
            Request::Terminate => return Ok(()),
            Request::Query(text) => {
                simple_query(conn, shared, &me.slot.info, text).await?;
                MessageBuilder::ready_for_query(&mut conn.wbuf, TxStatus::Idle);
            }
            Request::Sync => {
                ext.failed = false;
                MessageBuilder::ready_for_query(&mut conn.wbuf, TxStatus::Idle);
            }
            Request::Flush => write_out(conn, 1).await?,
            _ if ext.failed => {}
            other => {
                if let Err(e) = extended(conn, shared, &me.slot.info, &mut ext, other).await {
                    write_error(&mut conn.wbuf, &e);
                    ext.failed = true;
                }
            }
        }
        write_out(conn, FLUSH_AT).await?;
    }
}

/// Writes the buffered answers once at least `at` bytes wait, within `WRITE_LIMIT`.
async fn write_out(conn: &mut Conn, at: usize) -> Result<(), SessionError> {
    if conn.wbuf.len() < at.max(1) {
        return Ok(());
    }
    match tokio::time::timeout(WRITE_LIMIT, conn.flush()).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
    }
}

/// A simple Query: each `;`-separated command answered in turn; an error ends the rest.
async fn simple_query(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    me: &ClientInfo,
    text: &str,
) -> Result<(), SessionError> {
    let commands: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if commands.is_empty() {
        MessageBuilder::empty_query(&mut conn.wbuf);
        return Ok(());
    }
    for text in commands {
        let result = match Command::parse(text) {
            Ok(command) => {
                let columns = command.columns();
                run_watched(conn, shared, me, command)
                    .await
                    .map(|out| (columns, out))
            }
            Err(e) => Err(AdminError::from_parse(e, text)),
        };
        match result {
            Ok((columns, out)) => {
                if !columns.is_empty() {
                    MessageBuilder::row_description(&mut conn.wbuf, columns);
                }
                write_result(&mut conn.wbuf, columns, &[], out);
            }
            Err(e) => {
                write_error(&mut conn.wbuf, &e);
                return Ok(());
            }
        }
        write_out(conn, FLUSH_AT).await?;
    }
    Ok(())
}

/// One extended-protocol message other than Sync, Flush and Terminate.
async fn extended(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    me: &ClientInfo,
    ext: &mut Extended,
    request: Request<'_>,
) -> Result<(), AdminError> {
    let buf = &mut conn.wbuf;
    match request {
        Request::Parse { name, text } => {
            let command = if text.trim().is_empty() {
                None
            } else {
                Some(Command::parse(text).map_err(|e| AdminError::from_parse(e, text))?)
            };
            if ext.statements.len() >= MAX_NAMED && !ext.statements.contains_key(name) {
                return Err(too_many());
            }
            ext.statements.insert(name.to_owned(), command);
            MessageBuilder::parse_complete(buf);
        }
        Request::Bind {
            portal,
            statement,
            binary,
        } => {
            let command = ext
                .statements
                .get(statement)
                .ok_or_else(|| missing("prepared statement", statement))?
                .clone();
            if ext.portals.len() >= MAX_NAMED && !ext.portals.contains_key(portal) {
                return Err(too_many());
            }
            ext.portals.insert(portal.to_owned(), (command, binary));
            MessageBuilder::bind_complete(buf);
        }
        Request::Describe(kind, name) => {
            let (command, binary): (&Option<Command>, &[bool]) = if kind == Target::Statement {
                let command = ext
                    .statements
                    .get(name)
                    .ok_or_else(|| missing("prepared statement", name))?;
                MessageBuilder::no_parameters(buf);
                (command, &[])
            } else {
                let (command, binary) = ext
                    .portals
                    .get(name)
                    .ok_or_else(|| missing("portal", name))?;
                (command, binary)
            };
            match command.as_ref().map_or(&[][..], Command::columns) {
                [] => MessageBuilder::no_data(buf),
                columns => MessageBuilder::row_description_formats(buf, columns, binary),
            }
        }
        Request::Execute(portal) => {
            let (command, binary) = ext
                .portals
                .get(portal)
                .ok_or_else(|| missing("portal", portal))?
                .clone();
            let Some(command) = command else {
                MessageBuilder::empty_query(&mut conn.wbuf);
                return Ok(());
            };
            let columns = command.columns();
            let out = run_watched(conn, shared, me, command).await?;
            write_result(&mut conn.wbuf, columns, &binary, out);
        }
        Request::Close(kind, name) => {
            if kind == Target::Statement {
                ext.statements.remove(name);
            } else {
                ext.portals.remove(name);
            }
            MessageBuilder::close_complete(buf);
        }
        Request::Other(tag) => {
            return Err(AdminError::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!("the admin console does not take {tag:?} messages"),
            ))
        }
        Request::Query(_) | Request::Sync | Request::Flush | Request::Terminate => {}
    }
    Ok(())
}

fn missing(what: &str, name: &str) -> AdminError {
    AdminError::new(
        SqlState::UNDEFINED_OBJECT,
        format!("{what} \"{name}\" does not exist"),
    )
}

fn too_many() -> AdminError {
    AdminError::new(
        SqlState::PROGRAM_LIMIT_EXCEEDED,
        format!(
            "too many prepared statements or portals on the admin console (at most {MAX_NAMED})"
        ),
    )
}

/// Writes notices, DataRows and CommandComplete (the RowDescription, if any, is the
/// caller's: the extended protocol sends it on Describe).
fn write_result(buf: &mut BytesMut, columns: &[Column], binary: &[bool], out: Outcome) {
    for (message, detail) in &out.notices {
        MessageBuilder::notice(buf, message, detail);
    }
    let oids: Vec<u32> = columns.iter().map(|(_, oid)| *oid).collect();
    for row in &out.rows {
        MessageBuilder::typed_data_row(buf, row, &oids, binary);
    }
    MessageBuilder::command_complete(buf, &out.tag);
}

fn write_error(buf: &mut BytesMut, e: &AdminError) {
    MessageBuilder::error(buf, ErrorSeverity::Error, e.code.code(), &e.message);
}

/// Runs a command while watching the console's socket: a PAUSE or WAIT_CLOSE whose client
/// left stops waiting. What the client sends meanwhile is kept for afterwards (up to one
/// message's worth; then it is simply not read until the command is done).
async fn run_watched(
    conn: &mut Conn,
    shared: &Arc<Shared>,
    me: &ClientInfo,
    command: Command,
) -> Result<Outcome, AdminError> {
    // Only the commands that wait on others are worth stopping; a RELOAD runs to its end.
    if !matches!(command, Command::Pause(_) | Command::WaitClose(_)) {
        return run(shared, me, command).await;
    }
    let left = async {
        loop {
            if conn.rbuf.len() >= MAX_MESSAGE {
                return std::future::pending::<()>().await;
            }
            match conn.read_some().await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        biased;
        out = run(shared, me, command) => out,
        () = left => Err(AdminError::new(
            SqlState::QUERY_CANCELED,
            "canceling the command: the console client left",
        )),
    }
}

/// Runs one command for the console client `me`.
async fn run(
    shared: &Arc<Shared>,
    me: &ClientInfo,
    command: Command,
) -> Result<Outcome, AdminError> {
    Ok(match command {
        Command::Show(Show::Help) => Outcome {
            notices: vec![("Console usage".to_owned(), columns::HELP.to_owned())],
            ..Outcome::tag("SHOW")
        },
        Command::Show(show) => Outcome {
            rows: show.rows(shared),
            ..Outcome::tag("SHOW")
        },
        Command::Pause(db) => {
            actions::pause(shared, me, db.as_deref()).await?;
            Outcome::tag("PAUSE")
        }
        Command::Resume(db) => {
            actions::resume(shared, db.as_deref())?;
            Outcome::tag("RESUME")
        }
        Command::Reload => {
            let ignored = actions::reload(shared).await?;
            Outcome {
                notices: ignored
                    .into_iter()
                    .map(|key| {
                        (
                            format!("{key} changed but was not applied"),
                            "it takes effect at the next restart".to_owned(),
                        )
                    })
                    .collect(),
                ..Outcome::tag("RELOAD")
            }
        }
        Command::Kill(db) => {
            actions::kill(shared, &db)?;
            Outcome::tag("KILL")
        }
        Command::KillClient(id) => {
            actions::kill_client(shared, &id)?;
            Outcome::tag("KILL_CLIENT")
        }
        Command::Reconnect(db) => {
            actions::reconnect(shared, db.as_deref())?;
            Outcome::tag("RECONNECT")
        }
        Command::Disable(db) => {
            actions::set_disabled(shared, &db, true)?;
            Outcome::tag("DISABLE")
        }
        Command::Enable(db) => {
            actions::set_disabled(shared, &db, false)?;
            Outcome::tag("ENABLE")
        }
        Command::WaitClose(db) => {
            actions::wait_close(shared, me, db.as_deref()).await?;
            Outcome::tag("WAIT_CLOSE")
        }
        Command::Shutdown { wait_for_clients } => {
            actions::shutdown(shared, wait_for_clients);
            Outcome::tag("SHUTDOWN")
        }
        Command::Set { key, value } => {
            actions::set(shared, &key, &value).await?;
            Outcome::tag(format!("SET {key}={value}"))
        }
        Command::Transaction(tag) => Outcome::tag(tag),
    })
}
