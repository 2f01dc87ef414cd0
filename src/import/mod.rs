//! `weir import-pgbouncer`: turns a `pgbouncer.ini` (and its `userlist.txt`) into an
//! equivalent `weir.toml`, with a warning for every setting weir cannot carry over.
//!
//! Owns: reading PgBouncer's files (`ini`, `connstr`, `userlist`), mapping each setting
//! onto weir's typed configuration (`general`, `pools`, `accounts`, `databases`, with the
//! reasons for what is left behind in `reasons`), and writing that configuration as TOML
//! (`emit`). Does not: run anything or read weir's own configuration files.
//!
//! The mapping builds a [`crate::config::Config`] rather than text, so the emitter can
//! leave out every key at weir's default, and the result is checked by loading the
//! emitted text back with weir's own loader: what is printed is what weir will run.

mod accounts;
mod connstr;
mod databases;
mod emit;
mod error;
mod general;
mod ini;
mod pools;
mod reasons;
mod settings;
mod userlist;
mod values;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::Config;
pub use error::{ImportError, Origin};

/// What an import produced: the configuration text and what could not be carried over.
#[derive(Debug)]
pub struct Imported {
    /// The `weir.toml` text: a comment naming the source, then only the keys that differ
    /// from weir's defaults, plus `listen.addr`, the users and the databases.
    pub toml: String,
    /// One per PgBouncer setting weir does without (or carries over only approximately),
    /// in the order of the files.
    pub warnings: Vec<Warning>,
}

/// A setting weir cannot carry over, or carries over differently, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The line it is about, or the file when it is about something left out.
    pub place: Place,
    /// The setting and the reason, e.g. `server_reset_query = RESET ALL is not carried
    /// over: weir always resets session-mode servers with DISCARD ALL`.
    pub message: String,
}

/// Where a warning points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// A line of a file.
    Line(Origin),
    /// A whole file (a setting that is missing from it).
    File(PathBuf),
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Place::Line(at) => write!(f, "{at}: {}", self.message),
            Place::File(file) => write!(f, "{}: {}", file.display(), self.message),
        }
    }
}

/// The warnings of one import, in the order they were found.
pub(crate) struct Warnings {
    /// The ini file, for warnings about something it does not say.
    file: PathBuf,
    /// Found so far.
    list: Vec<Warning>,
}

impl Warnings {
    /// Warns about the line `at`.
    pub(crate) fn at(&mut self, at: &Origin, message: String) {
        self.list.push(Warning {
            place: Place::Line(at.clone()),
            message,
        });
    }

    /// Warns about the ini file as a whole.
    pub(crate) fn file(&mut self, message: String) {
        self.list.push(Warning {
            place: Place::File(self.file.clone()),
            message,
        });
    }

    /// Warns about `at` when known, else about the file.
    pub(crate) fn maybe_at(&mut self, at: Option<&Origin>, message: String) {
        match at {
            Some(at) => self.at(at, message),
            None => self.file(message),
        }
    }
}

/// Entries by name where one listed again replaces the earlier, as PgBouncer reads a
/// database or user given twice; in the order of the entries that are kept.
pub(crate) struct LastWins<T> {
    /// Each entry added, `None` where a later one of the same name replaced it.
    slots: Vec<Option<T>>,
    /// Name to its entry's slot, so a replacement costs no search.
    index: HashMap<String, usize>,
}

impl<T> LastWins<T> {
    /// None yet.
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Adds `entry` as `name`; true when it replaced one of that name.
    pub(crate) fn insert(&mut self, name: &str, entry: T) -> bool {
        let earlier = self.index.insert(name.to_owned(), self.slots.len());
        self.slots.push(Some(entry));
        earlier
            .and_then(|i| self.slots.get_mut(i))
            .and_then(Option::take)
            .is_some()
    }

    /// The entries kept.
    pub(crate) fn into_vec(self) -> Vec<T> {
        self.slots.into_iter().flatten().collect()
    }
}

/// The configuration being built, with a comment for the keys a reader may wonder about.
pub(crate) struct Plan {
    /// weir's configuration, starting from its defaults.
    pub(crate) config: Config,
    /// Comments for emitted keys, by path (`pool.mode` -> `pool_mode, PgBouncer's default`).
    pub(crate) notes: HashMap<&'static str, String>,
    /// Comment lines printed at the end of the file (templates for what needs a hand).
    pub(crate) trailer: Vec<String>,
}

impl Plan {
    /// Records where the value of `key` came from.
    pub(crate) fn note(&mut self, key: &'static str, note: impl Into<String>) {
        self.notes.insert(key, note.into());
    }
}

/// Imports `ini` and its users: `userlist` when given, else the ini's `auth_file` if it
/// can be read. An error means a file could not be read or parsed; everything weir cannot
/// carry over is a warning instead.
pub fn pgbouncer(ini: &Path, userlist: Option<&Path>) -> Result<Imported, ImportError> {
    let entries = ini::read(ini)?;
    let mut warnings = Warnings {
        file: ini.to_path_buf(),
        list: Vec::new(),
    };
    let mut plan = Plan {
        config: Config::default(),
        notes: HashMap::new(),
        trailer: Vec::new(),
    };

    let sections = databases::Sections::split(entries, &mut warnings);
    let mut settings = settings::Settings::new(sections.pgbouncer);
    let globals = general::apply(&mut settings, &mut plan, &mut warnings)?;
    let dbs = databases::parse(sections.databases)?;
    let user_sections = databases::parse(sections.users)?;
    pools::apply(&globals, &dbs, &user_sections, &mut plan, &mut warnings)?;

    let (listed, userlist_path) = match userlist {
        Some(path) => (userlist::read(path)?, Some(path.to_path_buf())),
        None => accounts::auth_file(&settings, ini, &mut warnings)?,
    };
    accounts::apply(
        &mut settings,
        accounts::Inputs {
            listed,
            dbs: &dbs,
            user_sections: &user_sections,
            globals: &globals,
        },
        &mut plan,
        &mut warnings,
    )?;
    databases::apply(&dbs, &globals, &mut plan, &mut warnings)?;
    databases::warn_user_params(&user_sections, &plan, &mut warnings);
    settings.warn_rest(&mut warnings);

    let toml = emit::document(&plan, ini, userlist_path.as_deref());
    let reloaded =
        crate::config::from_toml_str(&toml).map_err(|e| ImportError::RoundTrip(e.to_string()))?;
    if reloaded != plan.config {
        return Err(ImportError::RoundTrip(
            "a value differs after loading".to_owned(),
        ));
    }
    let mut list = warnings.list;
    // In the order of the files: the ini's own lines (and what it lacks) first.
    list.sort_by_key(|w| match &w.place {
        Place::File(_) => (0, PathBuf::new(), 0),
        Place::Line(at) => (u8::from(at.file != ini) + 1, at.file.clone(), at.line),
    });
    Ok(Imported {
        toml,
        warnings: list,
    })
}

/// The `import-pgbouncer` command: the configuration on stdout, one `warning: ...` line
/// per setting not carried over on stderr.
pub fn run(ini: &Path, userlist: Option<&Path>) -> Result<(), String> {
    let imported = pgbouncer(ini, userlist).map_err(|e| e.to_string())?;
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    // Written, not printed: `print!` panics when stdout is a closed pipe (`| head`).
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(imported.toml.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write the configuration to stdout: {e}"))
}

#[cfg(test)]
mod tests;
