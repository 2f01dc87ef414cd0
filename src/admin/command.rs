//! Admin console commands: the text an operator types, parsed into what to do.
//!
//! Owns: the command grammar (PgBouncer's, case-insensitive, one trailing `;` allowed)
//! and each command's result columns, known before it runs (Describe needs them).
//! Does not: run anything.

use super::show::{Column, Show};

/// One admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Command {
    /// `SHOW ...`.
    Show(Show),
    /// `PAUSE [db]`: hold new transactions, wait for running ones.
    Pause(Option<String>),
    /// `RESUME [db]`.
    Resume(Option<String>),
    /// `RELOAD`: read the configuration file again.
    Reload,
    /// `KILL db`: disconnect its clients, close its servers, pause it.
    Kill(String),
    /// `KILL_CLIENT id`.
    KillClient(String),
    /// `RECONNECT [db]`: replace server connections as they come back.
    Reconnect(Option<String>),
    /// `DISABLE db`: refuse new logins.
    Disable(String),
    /// `ENABLE db`.
    Enable(String),
    /// `WAIT_CLOSE [db]`: wait until the connections RECONNECT retired are closed.
    WaitClose(Option<String>),
    /// `SHUTDOWN` (`wait_for_clients: false`) or `SHUTDOWN WAIT_FOR_CLIENTS`.
    Shutdown {
        /// Stop accepting and wait for clients to leave on their own.
        wait_for_clients: bool,
    },
    /// `SET key = value`.
    Set {
        /// The key as typed (a weir key path, or a PgBouncer name).
        key: String,
        /// The value without surrounding quotes.
        value: String,
    },
    /// `BEGIN`, `COMMIT`, `ROLLBACK`...: drivers that wrap everything in a transaction
    /// (psycopg by default) can use the console; nothing is transactional here.
    Transaction(&'static str),
}

/// Why a command text is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ParseError {
    /// Not a command weir knows.
    Unknown,
    /// A command that needs a database was given none.
    NeedsDatabase(&'static str),
}

impl Command {
    /// The columns its result has (none for commands without rows).
    pub(super) fn columns(&self) -> &'static [Column] {
        match self {
            Command::Show(show) => show.columns(),
            _ => &[],
        }
    }

    /// Parses one command (a trailing `;` and surrounding space are allowed).
    pub(super) fn parse(text: &str) -> Result<Command, ParseError> {
        let text = text.trim();
        let text = text.strip_suffix(';').unwrap_or(text).trim_end();
        let mut words = text.split_whitespace();
        let verb = words.next().unwrap_or_default().to_ascii_uppercase();
        let arg = words.next().map(|w| w.trim_matches('"').to_owned());
        let more = words.next().is_some();
        let no_more = |c: Command| {
            if more {
                Err(ParseError::Unknown)
            } else {
                Ok(c)
            }
        };
        let needs =
            |verb: &'static str, arg: Option<String>| arg.ok_or(ParseError::NeedsDatabase(verb));
        match verb.as_str() {
            "SHOW" => match arg.as_deref().and_then(Show::from_name) {
                Some(show) => no_more(Command::Show(show)),
                None => Err(ParseError::Unknown),
            },
            "PAUSE" => no_more(Command::Pause(arg)),
            "RESUME" => no_more(Command::Resume(arg)),
            "RELOAD" if arg.is_none() => Ok(Command::Reload),
            "KILL" => no_more(Command::Kill(needs("KILL", arg)?)),
            "KILL_CLIENT" => no_more(Command::KillClient(needs("KILL_CLIENT", arg)?)),
            "RECONNECT" => no_more(Command::Reconnect(arg)),
            "DISABLE" => no_more(Command::Disable(needs("DISABLE", arg)?)),
            "ENABLE" => no_more(Command::Enable(needs("ENABLE", arg)?)),
            "WAIT_CLOSE" => no_more(Command::WaitClose(arg)),
            "SHUTDOWN" => match arg.map(|a| a.to_ascii_uppercase()).as_deref() {
                None => Ok(Command::Shutdown {
                    wait_for_clients: false,
                }),
                Some("WAIT_FOR_CLIENTS") => no_more(Command::Shutdown {
                    wait_for_clients: true,
                }),
                Some(_) => Err(ParseError::Unknown),
            },
            "SET" => parse_set(text),
            "BEGIN" | "START" => Ok(Command::Transaction("BEGIN")),
            "COMMIT" | "END" => Ok(Command::Transaction("COMMIT")),
            "ROLLBACK" | "ABORT" => Ok(Command::Transaction("ROLLBACK")),
            _ => Err(ParseError::Unknown),
        }
    }
}

/// `SET key = value`, `SET key TO value`, `SET key=value`; quotes around the value go.
fn parse_set(text: &str) -> Result<Command, ParseError> {
    let rest = text.get(3..).unwrap_or_default().trim();
    let (key, value) = match rest.split_once('=') {
        Some((k, v)) => (k.trim(), v.trim()),
        None => {
            let mut parts = rest.splitn(3, char::is_whitespace);
            let key = parts.next().unwrap_or_default();
            match (parts.next(), parts.next()) {
                (Some(to), Some(v)) if to.eq_ignore_ascii_case("to") => (key, v.trim()),
                _ => return Err(ParseError::Unknown),
            }
        }
    };
    let value = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value);
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(ParseError::Unknown);
    }
    Ok(Command::Set {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_like_pgbouncer() {
        assert_eq!(
            Command::parse("show pools;"),
            Ok(Command::Show(Show::Pools))
        );
        assert_eq!(
            Command::parse("  SHOW   STATS_TOTALS "),
            Ok(Command::Show(Show::StatsTotals))
        );
        assert_eq!(Command::parse("PAUSE"), Ok(Command::Pause(None)));
        assert_eq!(
            Command::parse("pause appdb"),
            Ok(Command::Pause(Some("appdb".into())))
        );
        assert_eq!(
            Command::parse("KILL"),
            Err(ParseError::NeedsDatabase("KILL"))
        );
        assert_eq!(
            Command::parse("shutdown wait_for_clients"),
            Ok(Command::Shutdown {
                wait_for_clients: true
            })
        );
        assert_eq!(Command::parse("SHOW"), Err(ParseError::Unknown));
        assert_eq!(Command::parse("SHOW FOO"), Err(ParseError::Unknown));
        assert_eq!(Command::parse("SELECT 1"), Err(ParseError::Unknown));
        assert_eq!(Command::parse(""), Err(ParseError::Unknown));
        assert_eq!(Command::parse("PAUSE a b"), Err(ParseError::Unknown));
    }

    #[test]
    fn set_takes_every_spelling() {
        let set = |k: &str, v: &str| {
            Ok(Command::Set {
                key: k.into(),
                value: v.into(),
            })
        };
        assert_eq!(
            Command::parse("SET default_pool_size = 30"),
            set("default_pool_size", "30")
        );
        assert_eq!(Command::parse("set pool.size=31;"), set("pool.size", "31"));
        assert_eq!(
            Command::parse("SET pool.query_wait_timeout TO '5s'"),
            set("pool.query_wait_timeout", "5s")
        );
        assert_eq!(Command::parse("SET"), Err(ParseError::Unknown));
        assert_eq!(Command::parse("SET pool.size"), Err(ParseError::Unknown));
    }
}
