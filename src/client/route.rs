//! The session side of read/write splitting: what the request waiting in the client's
//! buffer is (`classify_request`), and the `weir.route` setting weir keeps for the client.
//!
//! Owns: walking a request's messages to the end of its implicit transaction, the
//! per-thread classification caches, and parsing `SET`/`RESET`/`SHOW weir.route`.
//! Does not: choose a host (`session`) or parse SQL (`router`).

use std::cell::RefCell;
use std::collections::HashMap;

use crate::config::PrimaryReads;
use crate::protocol::Extended;
use crate::router::{Class, ClassCache, Route, WriteFunctions};
use crate::server::ParamSet;

use super::prepared::ClientStatements;

/// The setting's name, as clients write it.
pub(crate) const SETTING: &str = "weir.route";

/// `weir.route`: where the client's statements go, whatever they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum RouteOverride {
    /// Classify each transaction (the default).
    #[default]
    Auto,
    /// Everything to the primary.
    Primary,
    /// Everything to a replica; a write fails there with PostgreSQL's 25006.
    Replica,
}

impl RouteOverride {
    /// The value as `SHOW weir.route` prints it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }

    /// A value as written in `SET` or `options` (quotes already removed), in any case.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" | "default" => Ok(Self::Auto),
            "primary" => Ok(Self::Primary),
            "replica" => Ok(Self::Replica),
            _ => Err(format!(
                "invalid value for parameter \"{SETTING}\": \"{value}\" (expected primary, replica or auto)"
            )),
        }
    }
}

/// Which kind of server a transaction was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leg {
    /// The primary, for a request that may write (its commit position is learned after).
    Write,
    /// The primary, for a read (no replica qualified, or reads may use the primary). If
    /// the client pipelines more behind it, those may write: see `Relay::requests_sent`.
    PrimaryRead,
    /// This replica: the relay passes one request at a time, so a write queued behind a
    /// read is routed on its own.
    Replica(usize),
}

impl Leg {
    /// The same server, kept for a pinned client: whatever it sends next is unclassified,
    /// so on the primary it counts as a write.
    pub(crate) fn pinned(self) -> Self {
        match self {
            Self::PrimaryRead => Self::Write,
            other => other,
        }
    }
}

/// The configured rules `decide` applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// The database splits reads from writes (`routing = "read_write"`, several hosts).
    pub(crate) splits: bool,
    /// `pool.mode = "session"`: a server serves a whole session.
    pub(crate) session_mode: bool,
    /// `routing.primary_reads`.
    pub(crate) primary_reads: PrimaryReads,
}

/// The server the cluster offers for a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// The primary (`primary_reads = "always"` and it was the least busy).
    Primary,
    /// This replica.
    Replica(usize),
}

/// Why a request went where it went, for `weir_routing_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The database does not split (`primary_only`, or a single host).
    NotSplit,
    /// Session mode: one server serves the whole session.
    Session,
    /// The request writes, or could not be shown to only read.
    Write,
    /// A hint or `weir.route = primary` asked for the primary.
    Forced,
    /// A read, given a replica (or the primary, with `primary_reads = "always"`).
    Read,
    /// A read no replica could serve (down, lagging, behind the client's writes).
    NoReplica,
    /// The replica chosen turned out unreachable at checkout.
    ReplicaDown,
}

impl Reason {
    /// Every reason, in the order of `index`.
    pub(crate) const ALL: [Reason; 7] = [
        Reason::NotSplit,
        Reason::Session,
        Reason::Write,
        Reason::Forced,
        Reason::Read,
        Reason::NoReplica,
        Reason::ReplicaDown,
    ];

    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::NotSplit => "not_split",
            Reason::Session => "session",
            Reason::Write => "write",
            Reason::Forced => "forced",
            Reason::Read => "read",
            Reason::NoReplica => "no_replica",
            Reason::ReplicaDown => "replica_down",
        }
    }

    /// Its position in `ALL`.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A read found no replica, and `primary_reads = "never"` keeps it off the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoReader;

/// Where a request goes: a pure function of the configured `policy`, the client's
/// `weir.route`, whether the request only reads (`reads_only`, asked only when that
/// matters: parsing is the expensive part), and the reader the cluster offers (`reader`,
/// asked only for reads; it applies lag limits and read-your-writes). Says why, too.
pub(crate) fn decide(
    policy: Policy,
    route: RouteOverride,
    reads_only: impl FnOnce() -> bool,
    reader: impl FnOnce() -> Option<Reader>,
) -> Result<(Leg, Reason), NoReader> {
    if !policy.splits {
        return Ok((Leg::Write, Reason::NotSplit));
    }
    // A session-mode server serves the whole session: only an explicit
    // `weir.route = replica` sends it to a replica.
    if policy.session_mode && route != RouteOverride::Replica {
        return Ok((Leg::Write, Reason::Session));
    }
    let reads = route == RouteOverride::Replica || reads_only();
    match (route, reads) {
        (RouteOverride::Replica, _) | (RouteOverride::Auto, true) => {}
        (RouteOverride::Auto, false) => return Ok((Leg::Write, Reason::Write)),
        (RouteOverride::Primary, false) => return Ok((Leg::Write, Reason::Forced)),
        // Its reads are not writes: they leave read-your-writes as it was.
        (RouteOverride::Primary, true) => return Ok((Leg::PrimaryRead, Reason::Forced)),
    }
    let why = if route == RouteOverride::Replica {
        Reason::Forced
    } else {
        Reason::Read
    };
    match reader() {
        Some(Reader::Replica(host)) => Ok((Leg::Replica(host), why)),
        Some(Reader::Primary) => Ok((Leg::PrimaryRead, why)),
        None if policy.primary_reads == PrimaryReads::Never => Err(NoReader),
        None => Ok((Leg::PrimaryRead, Reason::NoReplica)),
    }
}

/// A statement about `weir.route` that weir answers without a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteCommand {
    /// `SET weir.route = ...` / `RESET weir.route`.
    Set(RouteOverride),
    /// `SHOW weir.route`.
    Show,
}

/// Whether a Query text may be a `weir.route` command, from how it starts (SET, SHOW or
/// RESET, in any case): every short Query of every client is asked this, and nearly all
/// are ruled out in a few byte comparisons. It never rules out what `route_command`
/// accepts: that trims Unicode space, so a text opening with any other byte than ASCII
/// letters after ASCII space is not ruled out.
pub(crate) fn may_be_route_command(text: &[u8]) -> bool {
    let Some(start) = text.iter().position(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    let word = text.get(start..).unwrap_or_default();
    let starts = |v: &[u8]| {
        word.get(..v.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(v))
    };
    word.first().is_some_and(|b| !b.is_ascii_alphabetic())
        || starts(b"set")
        || starts(b"show")
        || starts(b"reset")
}

/// Reads a simple-protocol Query text as a `weir.route` command: `SET [SESSION]
/// weir.route {=|TO} value`, `RESET weir.route`, `SHOW weir.route`, with an optional
/// trailing semicolon. `None` for anything else (it goes to a server); `Err` for a bad value.
pub(crate) fn route_command(text: &str) -> Option<Result<RouteCommand, String>> {
    let named = with_words(text, |words| match words {
        ["show", name] if *name == SETTING => Some(RouteCommand::Show),
        ["reset", name] if *name == SETTING => Some(RouteCommand::Set(RouteOverride::Auto)),
        _ => None,
    });
    if let Some(command) = named {
        return Some(Ok(command));
    }
    let lower = text
        .trim()
        .trim_end_matches(';')
        .trim_end()
        .to_ascii_lowercase();
    let rest = lower.strip_prefix("set")?;
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("session")
        .filter(|r| r.starts_with(|c: char| c.is_ascii_whitespace()))
        .unwrap_or(rest);
    let rest = rest.trim_start().strip_prefix(SETTING)?.trim_start();
    let value = match rest.strip_prefix('=') {
        Some(v) => v,
        None => rest
            .strip_prefix("to")
            .filter(|v| v.starts_with(|c: char| c.is_ascii_whitespace()))?,
    };
    let value = value.trim();
    let unquoted = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value);
    Some(RouteOverride::parse(unquoted).map(RouteCommand::Set))
}

/// What routing makes of the request at the front of a client's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Every statement of the request may run on a replica.
    pub(crate) replica: bool,
    /// A statement could not be parsed (and so goes to the primary).
    pub(crate) unparsed: bool,
}

impl Verdict {
    const PRIMARY: Self = Self {
        replica: false,
        unparsed: false,
    };

    fn add(&mut self, class: Class) {
        self.replica &= class.route() == Route::Replica;
        self.unparsed |= class == Class::Unparsed;
    }
}

thread_local! {
    /// Classification caches of this worker thread, one per database (their function
    /// lists differ). No lock on the hot path; each thread parses a statement once.
    static CACHES: RefCell<HashMap<String, ClassCache>> = RefCell::new(HashMap::new());
}

/// Classifies the request at the front of `buf`: the messages up to and including the
/// first Query or Sync, which a replica relay will not go past (see `Relay::one_request`).
/// When that end is not in the buffer yet, the request goes to the primary: what has not
/// arrived cannot be shown to only read.
///
/// One exception: a pure prepare, named Parses and Describes ending the buffer with a
/// Flush (asyncpg prepares every statement so, then binds and executes it with a Sync).
/// Its statements are classified as usual. What the client adds before its Sync follows
/// on the same server, so a driver that then ran a write in that implicit transaction
/// would get PostgreSQL's 25006 from a replica; none is known to.
///
/// A Bind of a statement named earlier is classified by that statement's text; a Bind
/// of a statement weir does not know goes to the primary. Under
/// `default_transaction_read_only`, a plain BEGIN opens a read-only transaction.
pub(crate) fn classify_request(
    buf: &[u8],
    statements: &ClientStatements,
    functions: &WriteFunctions,
    database: &str,
    desired: &ParamSet,
) -> Verdict {
    let read_only = desired
        .get("default_transaction_read_only")
        .is_some_and(is_on);
    CACHES.with(|caches| {
        let mut caches = caches.borrow_mut();
        if !caches.contains_key(database) {
            caches.insert(database.to_owned(), ClassCache::default());
        }
        let Some(cache) = caches.get_mut(database) else {
            return Verdict::PRIMARY;
        };
        let mut classify = |text: &str| {
            if read_only && is_plain_begin(text) {
                Class::ReadOnlyBegin
            } else {
                cache.classify(text, functions)
            }
        };
        let verdict = walk(buf, statements, &mut classify);
        report_cache(cache, database);
        verdict
    })
}

/// Lookups a cache counts before they go to the shared metrics counters: the hot path
/// touches only this thread's cache, and the shared counters once per batch.
const CACHE_REPORT_BATCH: u64 = 256;

/// Moves `cache`'s hit and miss counts to the metrics once a batch has gathered.
fn report_cache(cache: &mut ClassCache, database: &str) {
    if let Some((hits, misses)) = cache.take_counts(CACHE_REPORT_BATCH) {
        let name = crate::metrics::names::ROUTER_CACHE_TOTAL;
        metrics::counter!(name, "database" => database.to_owned(), "result" => "hit")
            .increment(hits);
        metrics::counter!(name, "database" => database.to_owned(), "result" => "miss")
            .increment(misses);
    }
}

/// The walk of [`classify_request`], with the classifier given.
fn walk(
    buf: &[u8],
    statements: &ClientStatements,
    classify: &mut impl FnMut(&str) -> Class,
) -> Verdict {
    let mut verdict = Verdict {
        replica: true,
        unparsed: false,
    };
    let mut parsed_here: Vec<&str> = Vec::new();
    // Only named Parses and Describes so far: a prepare, which may end with a Flush.
    let mut preparing = true;
    let mut at = 0;
    loop {
        let Some(&[tag, a, b, c, d]) = buf.get(at..at + 5) else {
            return Verdict::PRIMARY;
        };
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        if len < 4 {
            // Malformed: the relay refuses it; no reading on from here.
            return Verdict::PRIMARY;
        }
        let Some(body) = buf.get(at + 5..at + 1 + len) else {
            return Verdict::PRIMARY;
        };
        match tag {
            b'Q' => {
                let Some(text) = c_str(body) else {
                    return Verdict::PRIMARY;
                };
                verdict.add(classify(text));
                return verdict;
            }
            b'P' => {
                let Ok(Some((name, tail))) = Extended::parse_name(body) else {
                    return Verdict::PRIMARY;
                };
                let Some(text) = c_str(tail) else {
                    return Verdict::PRIMARY;
                };
                verdict.add(classify(text));
                parsed_here.push(name);
                preparing &= !name.is_empty();
            }
            b'B' => {
                let Ok(Some((_, name, _))) = Extended::bind_names(body) else {
                    return Verdict::PRIMARY;
                };
                if !parsed_here.contains(&name) {
                    // The unnamed statement lives on one server only: it was parsed here
                    // or the Bind fails wherever it goes, so the primary it is.
                    let Some(statement) = statements.get(name).filter(|_| !name.is_empty()) else {
                        return Verdict::PRIMARY;
                    };
                    let Some(text) = c_str(&statement.def.tail) else {
                        return Verdict::PRIMARY;
                    };
                    verdict.add(classify(text));
                }
            }
            b'S' => return verdict,
            b'H' if preparing && !parsed_here.is_empty() && buf.len() == at + 1 + len => {
                return verdict;
            }
            b'D' | b'H' => {}
            b'E' | b'C' => preparing = false,
            _ => return Verdict::PRIMARY,
        }
        if tag == b'B' {
            preparing = false;
        }
        if !verdict.replica {
            return verdict;
        }
        at += 1 + len;
    }
}

/// The text before the first NUL, if it is UTF-8.
fn c_str(bytes: &[u8]) -> Option<&str> {
    let end = bytes.iter().position(|&b| b == 0)?;
    std::str::from_utf8(bytes.get(..end)?).ok()
}

/// PostgreSQL's spellings of a true boolean setting.
fn is_on(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "on" | "true" | "yes" | "1" | "t" | "y"
    )
}

/// Calls `f` with the words of a short statement text: lower case, split at white space
/// and commas, without a trailing semicolon.
fn with_words<R>(text: &str, f: impl FnOnce(&[&str]) -> R) -> R {
    let lower = text.trim().trim_end_matches(';').to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| c.is_ascii_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    f(&words)
}

/// The words after `BEGIN [WORK | TRANSACTION]` or `START TRANSACTION`, if `words` opens
/// a transaction.
fn begin_modes<'a>(words: &'a [&'a str]) -> Option<&'a [&'a str]> {
    match words {
        ["begin", "work" | "transaction", rest @ ..]
        | ["start", "transaction", rest @ ..]
        | ["begin", rest @ ..] => Some(rest),
        _ => None,
    }
}

/// A BEGIN whose routing may wait for the transaction's first statement
/// (`routing.transactions = "first_statement"`): no access mode, and no isolation level a
/// hot standby refuses (SERIALIZABLE). `BEGIN READ ONLY` needs no waiting: it is routed
/// to a replica as it is.
pub(crate) fn is_deferrable_begin(text: &str) -> bool {
    with_words(text, |words| {
        matches!(
            begin_modes(words),
            Some(
                [] | ["isolation", "level", "read", "committed" | "uncommitted"]
                    | ["isolation", "level", "repeatable", "read"]
            )
        )
    })
}

/// For a statement that ends a transaction without options (`COMMIT`, `END`,
/// `ROLLBACK`, `ABORT`, with `WORK`/`TRANSACTION`), the tag of its CommandComplete.
pub(crate) fn transaction_end(text: &str) -> Option<&'static str> {
    with_words(text, |words| match words {
        [first] | [first, "work" | "transaction"] => match *first {
            "commit" | "end" => Some("COMMIT"),
            "rollback" | "abort" => Some("ROLLBACK"),
            _ => None,
        },
        _ => None,
    })
}

/// `BEGIN` / `START TRANSACTION` with no mode (so the session default applies).
fn is_plain_begin(text: &str) -> bool {
    with_words(text, |words| matches!(begin_modes(words), Some([])))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `decide`'s leg alone, for the table.
    fn decide_leg(
        policy: Policy,
        route: RouteOverride,
        reads_only: impl FnOnce() -> bool,
        reader: impl FnOnce() -> Option<Reader>,
    ) -> Result<Leg, NoReader> {
        decide(policy, route, reads_only, reader).map(|(leg, _)| leg)
    }
    use bytes::BufMut;

    fn msg(buf: &mut Vec<u8>, tag: u8, body: &[u8]) {
        buf.put_u8(tag);
        buf.put_u32(4 + body.len() as u32);
        buf.extend_from_slice(body);
    }

    fn verdict(buf: &[u8]) -> Verdict {
        let statements = ClientStatements::default();
        classify_request(
            buf,
            &statements,
            &WriteFunctions::builtin(),
            "db",
            &ParamSet::default(),
        )
    }

    #[test]
    fn simple_queries() {
        let mut b = Vec::new();
        msg(&mut b, b'Q', b"SELECT * FROM t\0");
        assert!(verdict(&b).replica);
        let mut b = Vec::new();
        msg(&mut b, b'Q', b"INSERT INTO t VALUES (1)\0");
        assert!(!verdict(&b).replica);
        let mut b = Vec::new();
        msg(&mut b, b'Q', b"SELEC garbage(\0");
        assert_eq!(
            verdict(&b),
            Verdict {
                replica: false,
                unparsed: true
            }
        );
    }

    #[test]
    fn extended_batches_need_their_sync() {
        let mut b = Vec::new();
        msg(&mut b, b'P', b"\0SELECT $1\0\0\0");
        msg(&mut b, b'B', b"\0\0\0\0\0\0\0\0");
        msg(&mut b, b'E', b"\0\0\0\0\0");
        let unfinished = b.clone();
        msg(&mut b, b'S', b"");
        assert!(verdict(&b).replica);
        assert!(!verdict(&unfinished).replica, "no Sync yet: primary");
        let mut w = b.clone();
        msg(&mut w, b'P', b"\0DELETE FROM t\0\0\0");
        msg(&mut w, b'S', b"");
        assert!(verdict(&w).replica, "only the first request counts");
        let mut w = Vec::new();
        msg(&mut w, b'P', b"\0SELECT 1\0\0\0");
        msg(&mut w, b'P', b"\0SELECT nextval('s')\0\0\0");
        msg(&mut w, b'S', b"");
        assert!(!verdict(&w).replica);
    }

    #[test]
    fn a_prepare_ending_in_flush_is_a_request() {
        let mut b = Vec::new();
        msg(&mut b, b'P', b"__asyncpg_stmt_1__\0SELECT 1\0\0\0");
        msg(&mut b, b'D', b"S__asyncpg_stmt_1__\0");
        msg(&mut b, b'H', b"");
        assert!(verdict(&b).replica);
        let mut w = Vec::new();
        msg(&mut w, b'P', b"s\0DELETE FROM t\0\0\0");
        msg(&mut w, b'D', b"Ss\0");
        msg(&mut w, b'H', b"");
        assert!(!verdict(&w).replica);
        // Unnamed, or already executing (a psycopg pipeline that fetches midway): the rest
        // of the implicit transaction may write, so the primary.
        let mut u = Vec::new();
        msg(&mut u, b'P', b"\0SELECT 1\0\0\0");
        msg(&mut u, b'D', b"S\0");
        msg(&mut u, b'H', b"");
        assert!(!verdict(&u).replica);
        let mut e = Vec::new();
        msg(&mut e, b'P', b"s\0SELECT 1\0\0\0");
        msg(&mut e, b'B', b"\0s\0\0\0\0\0\0\0");
        msg(&mut e, b'E', b"\0\0\0\0\0");
        msg(&mut e, b'H', b"");
        assert!(!verdict(&e).replica);
        // More after the Flush: not the end of what arrived, so still waiting for a Sync.
        let mut more = b.clone();
        msg(&mut more, b'B', b"\0__asyncpg_stmt_1__\0\0\0\0\0\0\0");
        assert!(!verdict(&more).replica);
    }

    #[test]
    fn unknown_statements_go_to_the_primary() {
        let mut b = Vec::new();
        msg(&mut b, b'B', b"\0stmt\0\0\0\0\0\0\0");
        msg(&mut b, b'E', b"\0\0\0\0\0");
        msg(&mut b, b'S', b"");
        assert!(!verdict(&b).replica);
        let mut b = Vec::new();
        msg(&mut b, b'F', b"\0\0\0\0");
        msg(&mut b, b'S', b"");
        assert!(!verdict(&b).replica);
    }

    #[test]
    fn read_only_sessions_begin_read_only() {
        let mut b = Vec::new();
        msg(&mut b, b'Q', b"BEGIN\0");
        assert!(!verdict(&b).replica);
        let mut params = ParamSet::default();
        params.set("default_transaction_read_only", "on");
        let v = classify_request(
            &b,
            &ClientStatements::default(),
            &WriteFunctions::builtin(),
            "db",
            &params,
        );
        assert!(v.replica);
    }

    #[test]
    fn deferrable_begins_and_ends() {
        for yes in [
            "BEGIN",
            "begin;",
            "BEGIN WORK",
            "START TRANSACTION",
            "BEGIN ISOLATION LEVEL REPEATABLE READ",
            "start transaction isolation level read committed;",
            "BEGIN TRANSACTION ISOLATION LEVEL READ UNCOMMITTED",
        ] {
            assert!(is_deferrable_begin(yes), "{yes}");
        }
        for no in [
            "BEGIN READ WRITE",
            "BEGIN READ ONLY",
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "BEGIN; INSERT INTO t VALUES (1)",
            "BEGIN READ",
            "BEGIN ISOLATION",
            "BEGIN READ COMMITTED",
            "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE",
            "SELECT 1",
        ] {
            assert!(!is_deferrable_begin(no), "{no}");
        }
        assert_eq!(transaction_end("COMMIT"), Some("COMMIT"));
        assert_eq!(transaction_end("end transaction;"), Some("COMMIT"));
        assert_eq!(transaction_end("ROLLBACK WORK"), Some("ROLLBACK"));
        assert_eq!(transaction_end("ROLLBACK TO SAVEPOINT a"), None);
        assert_eq!(transaction_end("COMMIT AND CHAIN"), None);
    }

    #[test]
    fn decisions() {
        use RouteOverride::{Auto, Primary, Replica};
        let routed = Policy {
            splits: true,
            session_mode: false,
            primary_reads: PrimaryReads::Fallback,
        };
        let never = Policy {
            primary_reads: PrimaryReads::Never,
            ..routed
        };
        let single = Policy {
            splits: false,
            ..routed
        };
        let session = Policy {
            session_mode: true,
            ..routed
        };
        let replica = || Some(Reader::Replica(1));
        let none = || None;
        let unasked = || -> bool { panic!("classified although it cannot matter") };
        // (policy, weir.route, reads only, reader offered) -> leg
        type Case = (
            Policy,
            RouteOverride,
            bool,
            Option<Reader>,
            Result<Leg, NoReader>,
        );
        let cases: [Case; 12] = [
            (
                routed,
                Auto,
                true,
                Some(Reader::Replica(1)),
                Ok(Leg::Replica(1)),
            ),
            (
                routed,
                Auto,
                false,
                Some(Reader::Replica(1)),
                Ok(Leg::Write),
            ),
            (routed, Auto, true, None, Ok(Leg::PrimaryRead)),
            (
                routed,
                Auto,
                true,
                Some(Reader::Primary),
                Ok(Leg::PrimaryRead),
            ),
            (never, Auto, true, None, Err(NoReader)),
            (never, Auto, false, None, Ok(Leg::Write)),
            (
                routed,
                Primary,
                true,
                Some(Reader::Replica(1)),
                Ok(Leg::PrimaryRead),
            ),
            (
                routed,
                Primary,
                false,
                Some(Reader::Replica(1)),
                Ok(Leg::Write),
            ),
            (
                routed,
                Replica,
                false,
                Some(Reader::Replica(2)),
                Ok(Leg::Replica(2)),
            ),
            (routed, Replica, false, None, Ok(Leg::PrimaryRead)),
            (
                session,
                Replica,
                false,
                Some(Reader::Replica(1)),
                Ok(Leg::Replica(1)),
            ),
            (
                session,
                Auto,
                true,
                Some(Reader::Replica(1)),
                Ok(Leg::Write),
            ),
        ];
        for (i, (policy, route, reads, offered, want)) in cases.into_iter().enumerate() {
            let got = decide_leg(policy, route, || reads, || offered);
            assert_eq!(got, want, "case {i}");
        }
        // What cannot change the answer is not computed.
        assert_eq!(decide_leg(single, Auto, unasked, replica), Ok(Leg::Write));
        assert_eq!(decide_leg(session, Auto, unasked, replica), Ok(Leg::Write));
        assert_eq!(
            decide_leg(routed, Replica, unasked, replica),
            Ok(Leg::Replica(1))
        );
        assert_eq!(decide_leg(routed, Auto, || false, none), Ok(Leg::Write));
    }

    #[test]
    fn decisions_say_why() {
        use RouteOverride::{Auto, Primary, Replica};
        let routed = Policy {
            splits: true,
            session_mode: false,
            primary_reads: PrimaryReads::Fallback,
        };
        let single = Policy {
            splits: false,
            ..routed
        };
        let why = |p, r, reads, offered: Option<Reader>| {
            decide(p, r, || reads, || offered).map(|(_, why)| why)
        };
        let replica = Some(Reader::Replica(1));
        assert_eq!(why(single, Auto, true, replica), Ok(Reason::NotSplit));
        assert_eq!(why(routed, Auto, false, replica), Ok(Reason::Write));
        assert_eq!(why(routed, Auto, true, replica), Ok(Reason::Read));
        assert_eq!(why(routed, Auto, true, None), Ok(Reason::NoReplica));
        assert_eq!(why(routed, Primary, true, replica), Ok(Reason::Forced));
        assert_eq!(why(routed, Replica, false, replica), Ok(Reason::Forced));
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn route_commands() {
        use RouteCommand::{Set, Show};
        use RouteOverride::{Auto, Primary, Replica};
        assert_eq!(
            route_command("SET weir.route = replica"),
            Some(Ok(Set(Replica)))
        );
        assert_eq!(
            route_command("set weir.route to 'PRIMARY';"),
            Some(Ok(Set(Primary)))
        );
        assert_eq!(
            route_command("SET SESSION weir.route = auto"),
            Some(Ok(Set(Auto)))
        );
        assert_eq!(route_command("RESET weir.route"), Some(Ok(Set(Auto))));
        assert_eq!(route_command(" show weir.route ; "), Some(Ok(Show)));
        assert!(matches!(
            route_command("SET weir.route = sideways"),
            Some(Err(_))
        ));
        assert_eq!(route_command("SET weir.router = replica"), None);
        assert_eq!(route_command("SET search_path = a"), None);
        assert_eq!(route_command("SELECT 1"), None);
        assert_eq!(route_command("SET LOCAL weir.route = replica"), None);
    }

    #[test]
    fn route_commands_are_not_ruled_out_by_their_first_word() {
        for text in [
            "SET weir.route = replica",
            "set\tweir.route to 'PRIMARY';",
            "SET SESSION weir.route = auto",
            "RESET weir.route",
            " show weir.route ; ",
            "show,weir.route",
            "\u{a0}SET weir.route = replica",
            "\u{b}SET weir.route = replica",
            "SET\u{a0}weir.route = replica",
            "SETweir.route=replica",
            "SET weir.route = sideways",
        ] {
            assert!(route_command(text).is_some(), "{text:?}");
            assert!(may_be_route_command(text.as_bytes()), "{text:?}");
        }
        for text in [
            "SELECT 1",
            "  ",
            "",
            "sho weir.route",
            "INSERT INTO t VALUES (1)",
        ] {
            assert!(!may_be_route_command(text.as_bytes()), "{text:?}");
        }
    }
}
