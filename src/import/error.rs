//! Why an import failed: a file that cannot be read or parsed, named with its line.
//!
//! Owns: `ImportError` and `Origin` (file and line of a setting). Settings weir cannot
//! carry over are not errors: they become warnings (`Warning` in `mod.rs`).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Where a setting (or a syntax error) was written: a file as the user named it, and a
/// line counted from 1. Shown as `pgbouncer.ini line 23`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file, as given on the command line or in `%include` / `auth_file`.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: usize,
}

impl Origin {
    /// Line `line` of `file`.
    pub(crate) fn new(file: &Path, line: usize) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.file.display(), self.line)
    }
}

/// Why no configuration was produced. `Display` is the whole message for a person; none
/// of them repeats a password.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        /// The file as named.
        path: PathBuf,
        /// What the operating system said; part of the message, so not a `#[source]`.
        cause: io::Error,
    },

    /// A line is not in PgBouncer's syntax (ini file or userlist).
    #[error("{at}: {problem}")]
    Syntax {
        /// The line.
        at: Origin,
        /// What was expected there.
        problem: String,
    },

    /// A setting's value is not one PgBouncer would accept either.
    #[error("{at}: {key}: {problem}")]
    Value {
        /// The line.
        at: Origin,
        /// The setting, as written.
        key: String,
        /// What is wrong with the value (the value itself only when it is not secret).
        problem: String,
    },

    /// The generated TOML did not load back into the configuration it was generated from.
    /// A bug in the importer: nothing is printed rather than a wrong configuration.
    #[error("internal error: the generated configuration does not load back as generated ({0}); please report this")]
    RoundTrip(String),
}
