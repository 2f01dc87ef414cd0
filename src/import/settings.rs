//! The `[pgbouncer]` section as a map each mapping step takes its keys out of; what is
//! left at the end is what weir does not carry over, and gets a warning.
//!
//! Owns: "last one wins" for repeated keys, typed reads with errors that name file, line
//! and key, and the warning for every key nobody took. Does not: decide what a key means.

use std::collections::BTreeMap;

use super::error::{ImportError, Origin};
use super::ini::Entry;
use super::reasons;
use super::Warnings;

/// One `[pgbouncer]` setting as written.
#[derive(Clone, Debug)]
pub(crate) struct Setting {
    /// The value, trimmed.
    pub(crate) value: String,
    /// Where it was written (the last line, if repeated).
    pub(crate) at: Origin,
}

/// The `[pgbouncer]` settings not yet taken by a mapping step, by lower-case key.
pub(crate) struct Settings {
    /// Key to its last value, as PgBouncer reads a key given twice.
    map: BTreeMap<String, Setting>,
}

impl Settings {
    /// The settings of `entries` (all from the `[pgbouncer]` section).
    pub(crate) fn new(entries: impl IntoIterator<Item = Entry>) -> Self {
        let map = entries
            .into_iter()
            .map(|e| {
                (
                    e.key.to_ascii_lowercase(),
                    Setting {
                        value: e.value,
                        at: e.at,
                    },
                )
            })
            .collect();
        Self { map }
    }

    /// Takes `key` out; `None` when it was not written.
    pub(crate) fn take(&mut self, key: &str) -> Option<Setting> {
        self.map.remove(key)
    }

    /// Takes `key` out; `None` when it was not written or is empty, which PgBouncer reads
    /// as not set (file names, `auth_user`, `auth_query`).
    pub(crate) fn take_given(&mut self, key: &str) -> Option<Setting> {
        self.take(key).filter(|s| !s.value.is_empty())
    }

    /// Looks at `key` without taking it (for a step that depends on another's key).
    pub(crate) fn peek(&self, key: &str) -> Option<&Setting> {
        self.map.get(key)
    }

    /// Takes `key` and parses it; a value PgBouncer would refuse too is an error naming
    /// the file, the line and the key.
    pub(crate) fn take_parsed<T>(
        &mut self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<(T, Origin)>, ImportError> {
        let Some(setting) = self.take(key) else {
            return Ok(None);
        };
        match parse(&setting.value) {
            Ok(v) => Ok(Some((v, setting.at))),
            Err(problem) => Err(ImportError::Value {
                at: setting.at,
                key: key.to_owned(),
                problem,
            }),
        }
    }

    /// One warning for each setting no step took, in file order, with the reason weir
    /// does without it. A setting left at a value that changes nothing gets none.
    pub(crate) fn warn_rest(self, warnings: &mut Warnings) {
        let mut rest: Vec<(String, Setting)> = self.map.into_iter().collect();
        rest.sort_by(|a, b| (&a.1.at.file, a.1.at.line).cmp(&(&b.1.at.file, b.1.at.line)));
        for (key, setting) in rest {
            match reasons::general(&key, &setting.value) {
                reasons::Verdict::Harmless => {}
                reasons::Verdict::Lost(reason) => warnings.at(
                    &setting.at,
                    format!(
                        "{key} = {} is not carried over: {reason}",
                        shown(&key, &setting.value)
                    ),
                ),
            }
        }
    }
}

/// A value as it may appear in a warning: keys that can hold a secret are masked.
pub(crate) fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if key.contains("password") || key == "auth_ldap_options" {
        "(hidden)"
    } else {
        value
    }
}
