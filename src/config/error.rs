//! Configuration errors: each names the key it is about and says what to do.
//!
//! Owns: `ConfigError` and `Problem`, and turning the `config` crate's errors into them.
//! Does not: decide what is valid; `convert.rs` and `env.rs` do.

use std::io;
use std::path::PathBuf;

/// Why the configuration could not be loaded. `Display` is the whole message for a person:
/// `weir --check` prints it as is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8, a directory...).
    #[error("cannot read configuration file {}: {}", path.display(), io_reason(cause))]
    Read {
        /// The path as given on the command line.
        path: PathBuf,
        /// What the operating system said. Deliberately not a `#[source]`: the message
        /// already includes it, and a report that walks the chain would print it twice.
        cause: io::Error,
    },

    /// The text is not valid TOML.
    #[error("{origin}: not valid TOML: {message}")]
    Syntax {
        /// The file path, or "configuration text" for `from_toml_str`.
        origin: String,
        /// The TOML parser's message, with line and column.
        message: String,
    },

    /// A key is unknown or its value is unacceptable.
    #[error("{key}: {problem}{}", env_note(env_var.as_deref()))]
    Invalid {
        /// Where, as a path: `pool.size`, `databases[1].hosts[0]`.
        key: String,
        /// What is wrong.
        problem: Problem,
        /// The environment variable that set this key, when one did.
        env_var: Option<String>,
    },

    /// A `WEIR_*` environment variable cannot be applied.
    #[error("environment variable {var}: {problem}")]
    Env {
        /// The variable's name as set.
        var: String,
        /// What is wrong with it.
        problem: EnvProblem,
    },

    /// An error from the `config` crate that none of the above describes (kept whole).
    #[error("{0}")]
    Backend(::config::ConfigError),
}

impl ConfigError {
    /// An `Invalid` error for `key`.
    pub(crate) fn invalid(key: impl Into<String>, problem: Problem) -> Self {
        Self::Invalid {
            key: key.into(),
            problem,
            env_var: None,
        }
    }

    /// The key path this error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Notes the environment variable responsible for an `Invalid` key, if one of
    /// `overrides` (pairs of key path and variable name) set it or something below it.
    pub(crate) fn blame_env(mut self, overrides: &[(String, String)]) -> Self {
        if let Self::Invalid { key, env_var, .. } = &mut self {
            let culprit = overrides
                .iter()
                .find(|(set, _)| path_contains(set, key) || path_contains(key, set));
            if let Some((_, var)) = culprit {
                *env_var = Some(var.clone());
            }
        }
        self
    }

    /// Translates an error from the `config` crate. `origin` names the text (a path).
    pub(crate) fn from_backend(error: ::config::ConfigError, origin: &str) -> Self {
        match error {
            ::config::ConfigError::FileParse { cause, .. } => Self::Syntax {
                origin: origin.to_owned(),
                message: cause.to_string().trim_end().to_owned(),
            },
            ::config::ConfigError::At {
                error,
                key: Some(key),
                ..
            } => match *error {
                ::config::ConfigError::Message(message) => from_message(&key, &message),
                other => Self::invalid(
                    normalize_key(&key),
                    Problem::Structure(strip_key(&other.to_string())),
                ),
            },
            ::config::ConfigError::Type {
                key: Some(key),
                unexpected,
                expected,
                ..
            } => Self::invalid(
                normalize_key(&key),
                Problem::Structure(format!("invalid type: {unexpected}, expected {expected}")),
            ),
            ::config::ConfigError::Message(message) => from_message("", &message),
            ::config::ConfigError::NotFound(key) => {
                Self::invalid(normalize_key(&key), Problem::Missing(""))
            }
            other => Self::Backend(other),
        }
    }
}

/// What is wrong with one key's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The key is not one weir knows.
    #[error("unknown key{}", suggest(suggestion.as_deref(), known))]
    UnknownKey {
        /// The closest known key, when one is close.
        suggestion: Option<String>,
        /// The keys allowed at that level.
        known: Vec<String>,
    },
    /// A value outside a fixed set of words.
    #[error("unknown value {value:?} (expected one of: {})", expected.join(", "))]
    UnknownValue {
        /// The value as written.
        value: String,
        /// The accepted values.
        expected: Vec<&'static str>,
    },
    /// The value has the wrong TOML type. The value itself is not echoed: it may be secret.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the key takes.
        expected: &'static str,
        /// What kind of value was written.
        found: &'static str,
    },
    /// A duration that does not parse.
    #[error("{0:?} is not a duration (examples: \"30s\", \"500ms\", \"5m\")")]
    NotADuration(String),
    /// A duration above the ten-year cap.
    #[error("{0:?} is too long (at most 10 years)")]
    DurationTooLong(String),
    /// Zero for a timeout that cannot be turned off.
    #[error("must be greater than zero (this timeout cannot be turned off)")]
    ZeroDuration,
    /// Not a whole number.
    #[error("{value:?} is not a whole number (expected {min} to {max})")]
    NotANumber {
        /// The value as written.
        value: String,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A whole number outside its range.
    #[error("{value} is out of range (expected {min} to {max})")]
    OutOfRange {
        /// The value as written.
        value: String,
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// `pool.min_size` above `pool.size`.
    #[error("{min_size} is larger than pool.size ({size})")]
    MinAboveSize {
        /// `pool.min_size`.
        min_size: u32,
        /// `pool.size`.
        size: u32,
    },
    /// Not an IP address with a port.
    #[error(
        "{0:?} is not an IP address and port (examples: \"127.0.0.1:6432\", \"0.0.0.0:6432\", \"[::]:6432\")"
    )]
    NotASocketAddr(String),
    /// A backend host entry that does not parse.
    #[error("{value:?} is not a valid host:port ({reason})")]
    NotAHostPort {
        /// The entry as written.
        value: String,
        /// What exactly is wrong.
        reason: &'static str,
    },
    /// Two addresses that must differ are the same.
    #[error("{addr} is also {other}; use another address or port")]
    AddressClash {
        /// The address.
        addr: String,
        /// The key that already uses it.
        other: &'static str,
    },
    /// An empty string or list where something is required.
    #[error("must not be empty")]
    Empty,
    /// A name PostgreSQL would truncate.
    #[error("{0:?} is longer than 63 bytes, PostgreSQL's limit for names")]
    NameTooLong(String),
    /// A name containing a character the wire protocol cannot carry.
    #[error("{0:?} contains a NUL character")]
    NulInName(String),
    /// A name used twice.
    #[error("{name:?} is already defined at {first}")]
    Duplicate {
        /// The repeated name.
        name: String,
        /// The key path of the first definition.
        first: String,
    },
    /// A database name reserved for the admin console.
    #[error("{0:?} is reserved for the admin console; choose another database name")]
    Reserved(String),
    /// A value that breaks a rule the text states.
    #[error("{0}")]
    Rule(&'static str),
    /// A required key is absent. The text says what it is needed for.
    #[error("missing{}", parenthesized(.0))]
    Missing(&'static str),
    /// An authentication method that needs `[tls]`, without it.
    #[error("{0:?} authentication needs [tls] with client_ca (the CA that signs client certificates) and a tls.mode other than \"disable\": clients present certificates over TLS")]
    CertWithoutTls(&'static str),
    /// A user whose method needs a password has none.
    #[error("user {user:?} logs in with {method} and needs a password (or set auth_method = \"trust\" or \"cert\")")]
    PasswordRequired {
        /// The user name.
        user: String,
        /// The effective method.
        method: &'static str,
    },
    /// A key names a user that is not among the `[[users]]`.
    #[error("no [[users]] entry is named {0:?}; name one of the users")]
    UnknownUser(String),
    /// A stored SCRAM verifier cannot answer an MD5 challenge.
    #[error("user {0:?} logs in with md5 but its password is a SCRAM-SHA-256 verifier; give the plaintext or an md5 verifier, or use scram-sha-256")]
    ScramVerifierWithMd5(String),
    /// A structural mismatch reported by the deserializer (e.g. a table where a value was
    /// expected); the text is serde's.
    #[error("{0}")]
    Structure(String),
}

/// What is wrong with a `WEIR_*` environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvProblem {
    /// The name does not have the `WEIR_<TABLE>__<KEY>` shape.
    #[error(
        "not a configuration key; overrides are written WEIR_<TABLE>__<KEY> with a double underscore, e.g. WEIR_POOL__SIZE=50 (a WEIR_* name that starts with a table's name is read as configuration)"
    )]
    BadName,
    /// An array of tables addressed without an entry number.
    #[error("[[{table}]] is a list of entries; name one by its position, e.g. WEIR_{}__0__NAME", table.to_uppercase())]
    MissingIndex {
        /// `users` or `databases`.
        table: &'static str,
    },
    /// An entry number that would leave a hole in the list.
    #[error("there is no {table}[{missing}]: the file defines {in_file} [[{table}]] entries and the environment may only add entries after them, numbered without gaps")]
    IndexGap {
        /// `users` or `databases`.
        table: &'static str,
        /// The first entry number that would be left undefined.
        missing: usize,
        /// How many entries the file has.
        in_file: usize,
    },
    /// The value is not valid Unicode.
    #[error("the value is not valid UTF-8")]
    NotUnicode,
}

/// `" (set by environment variable X)"`, or nothing.
fn env_note(var: Option<&str>) -> String {
    var.map(|v| format!(" (set by environment variable {v})"))
        .unwrap_or_default()
}

/// `" (text)"`, or nothing for empty text.
fn parenthesized(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

/// `" (did you mean `x`?)"`, else the list of known keys, else nothing.
fn suggest(suggestion: Option<&str>, known: &[String]) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None if !known.is_empty() => format!(" (known keys: {})", known.join(", ")),
        None => String::new(),
    }
}

/// The OS reason without Rust's ` (os error N)` suffix: "No such file or directory".
fn io_reason(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(at) => text.get(..at).unwrap_or(&text).to_owned(),
        None => text,
    }
}

/// Whether `inner` is `outer` or lies below it (`pool.size` below `pool`; `databases[0]` below
/// `databases`), comparing whole path segments.
fn path_contains(outer: &str, inner: &str) -> bool {
    match inner.strip_prefix(outer) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

/// Turns a deserializer message found at `parent` into an error. serde's wording for unknown
/// fields (`unknown field `x`, expected one of `a`, `b``) is parsed so the message can be
/// `pool.szie: unknown key (did you mean `size`?)`; anything else is passed through.
fn from_message(parent: &str, message: &str) -> ConfigError {
    let parent = normalize_key(parent);
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let mut names = backticked(rest);
        if !names.is_empty() {
            let field = names.remove(0);
            let key = join_key(&parent, &field);
            return ConfigError::invalid(
                key,
                Problem::UnknownKey {
                    suggestion: closest(&field, &names),
                    known: names,
                },
            );
        }
    }
    let key = if parent.is_empty() {
        "(top level)".to_owned()
    } else {
        parent
    };
    ConfigError::invalid(key, Problem::Structure(strip_key(message)))
}

/// `parent.child`, or `child` at the top level.
fn join_key(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// The `config` crate writes `databases[0]hosts[1]`; weir writes `databases[0].hosts[1]`.
fn normalize_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut after_bracket = false;
    for c in key.chars() {
        if after_bracket && c != '[' && c != '.' {
            out.push('.');
        }
        after_bracket = c == ']';
        out.push(c);
    }
    out
}

/// Drops the `config` crate's own " for key `...`" suffix; our message leads with the key.
fn strip_key(message: &str) -> String {
    match message.find(" for key `") {
        Some(at) => message.get(..at).unwrap_or(message).to_owned(),
        None => message.to_owned(),
    }
}

/// The names between backticks, in order: `` `a` or `b` `` -> `["a", "b"]`.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The known name closest to `word`, if it is close enough to be a typo: one edit for
/// short names, one per three characters for longer ones.
pub(crate) fn closest(word: &str, known: &[String]) -> Option<String> {
    let word = word.to_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&word, k), k))
        .filter(|(d, k)| *d <= 1.max(k.chars().count() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

/// Edit distance counting an insertion, deletion, substitution or swap of two neighbours
/// as one edit (optimal string alignment); the inputs are key names, a few dozen chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    // d[i * width + j] = distance between a[..i] and b[..j]
    let mut d: Vec<usize> = vec![0; (a.len() + 1) * width];
    let get = |d: &[usize], i: usize, j: usize| d.get(i * width + j).copied().unwrap_or(usize::MAX);
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            let value = if i == 0 || j == 0 {
                i.max(j)
            } else {
                let same = a.get(i - 1) == b.get(j - 1);
                let mut best = get(&d, i - 1, j - 1)
                    .saturating_add(usize::from(!same))
                    .min(get(&d, i - 1, j).saturating_add(1))
                    .min(get(&d, i, j - 1).saturating_add(1));
                let swapped =
                    i > 1 && j > 1 && a.get(i - 1) == b.get(j - 2) && a.get(i - 2) == b.get(j - 1);
                if swapped {
                    best = best.min(get(&d, i - 2, j - 2).saturating_add(1));
                }
                best
            };
            if let Some(cell) = d.get_mut(i * width + j) {
                *cell = value;
            }
        }
    }
    get(&d, a.len(), b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_normalized_and_matched_by_segment() {
        assert_eq!(
            normalize_key("databases[0]hosts[1]"),
            "databases[0].hosts[1]"
        );
        assert_eq!(normalize_key("databases[1].name"), "databases[1].name");
        assert!(path_contains("pool", "pool.size"));
        assert!(path_contains("databases", "databases[0].hosts"));
        assert!(!path_contains("pool.size", "pool.size_x"));
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let known: Vec<String> = ["mode", "size", "min_size"].map(String::from).into();
        assert_eq!(closest("szie", &known).as_deref(), Some("size"));
        assert_eq!(closest("sise", &known).as_deref(), Some("size"));
        assert_eq!(closest("minsize", &known).as_deref(), Some("min_size"));
        assert_eq!(closest("banana", &known), None);
        assert_eq!(closest("foo", &["pool".to_owned()]), None);
        assert_eq!(edit_distance("szie", "size"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn io_reason_drops_the_os_error_suffix() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&e), "No such file or directory");
    }
}
