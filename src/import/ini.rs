//! Reads PgBouncer's ini dialect into (section, key, value, file, line) entries.
//!
//! Owns: comments, sections, `key = value` lines, quoted keys and `%include`.
//! Does not: know what any key means (`general.rs` and `databases.rs` do).
//!
//! Written by hand rather than with an ini crate because PgBouncer's dialect differs from
//! every common one: `;` and `#` start a comment only at the start of a line (later on the
//! line they are part of the value, as in `password=a;b`), a value is the rest of the line
//! with no quoting of its own, keys may be double-quoted with `""` for a quote (database
//! names), and `%include FILE` splices in another file. A general ini parser would strip
//! "inline comments" out of passwords and connection strings.

use std::path::{Path, PathBuf};

use super::error::{ImportError, Origin};
use super::values::unquote;

/// PgBouncer stops at this depth too; deeper is almost surely a file including itself.
const MAX_INCLUDE_DEPTH: usize = 10;

/// One `key = value` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The section it is in, lower case (`pgbouncer`, `databases`, `users`, `peers`...).
    pub(crate) section: String,
    /// The key, unquoted; case kept (database and user names are case-sensitive).
    pub(crate) key: String,
    /// The rest of the line after `=`, without surrounding whitespace.
    pub(crate) value: String,
    /// Where it was written.
    pub(crate) at: Origin,
}

/// A key outside any section, which PgBouncer refuses too.
const NO_SECTION: &str = "";

/// Reads `path` and every file it includes, in order. Relative `%include` paths are tried
/// against the working directory first (PgBouncer's rule), then against the including
/// file's directory (where a copied set of files usually sits).
pub(crate) fn read(path: &Path) -> Result<Vec<Entry>, ImportError> {
    let mut entries = Vec::new();
    let mut section = NO_SECTION.to_owned();
    read_into(path, 0, &mut section, &mut entries)?;
    Ok(entries)
}

/// Reads one file. `section` carries over into and out of included files, as in PgBouncer,
/// where the current section is the loader's state rather than the file's.
fn read_into(
    path: &Path,
    depth: usize,
    section: &mut String,
    out: &mut Vec<Entry>,
) -> Result<(), ImportError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ImportError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    for (i, raw) in text.lines().enumerate() {
        let at = Origin::new(path, i + 1);
        match parse_line(raw).map_err(|problem| ImportError::Syntax {
            at: at.clone(),
            problem,
        })? {
            Line::Blank => {}
            Line::Section(name) => *section = name.to_ascii_lowercase(),
            Line::Include(file) => {
                if depth + 1 >= MAX_INCLUDE_DEPTH {
                    return Err(ImportError::Syntax {
                        at,
                        problem: format!(
                            "%include nests more than {MAX_INCLUDE_DEPTH} files deep (does a file include itself?)"
                        ),
                    });
                }
                read_into(&include_path(path, &file), depth + 1, section, out)?;
            }
            Line::Setting { key, value } => {
                if section.as_str() == NO_SECTION {
                    return Err(ImportError::Syntax {
                        at,
                        problem: format!(
                            "{key} is outside any section; put it under [pgbouncer] or [databases]"
                        ),
                    });
                }
                out.push(Entry {
                    section: section.clone(),
                    key,
                    value,
                    at,
                });
            }
        }
    }
    Ok(())
}

/// Where `%include FILE` in `from` points: absolute as is; relative against the working
/// directory if that exists, else against `from`'s directory.
fn include_path(from: &Path, file: &str) -> PathBuf {
    let named = PathBuf::from(file);
    if named.is_absolute() || named.exists() {
        return named;
    }
    match from.parent() {
        Some(dir) if dir.join(&named).exists() => dir.join(named),
        _ => named,
    }
}

/// What one line holds.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Empty, or a comment.
    Blank,
    /// `[name]`.
    Section(String),
    /// `%include FILE`.
    Include(String),
    /// `key = value`.
    Setting {
        /// Unquoted key.
        key: String,
        /// Trimmed value (may be empty).
        value: String,
    },
}

/// Parses one line. The error says what was expected; it never repeats the line, which
/// may hold a password.
fn parse_line(raw: &str) -> Result<Line, String> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
        return Ok(Line::Blank);
    }
    if let Some(rest) = line.strip_prefix('[') {
        let (name, after) = rest
            .split_once(']')
            .ok_or("a section header needs its closing ]")?;
        let after = after.trim_start();
        if !(after.is_empty() || after.starts_with(';') || after.starts_with('#')) {
            return Err("unexpected text after the section header".to_owned());
        }
        return Ok(Line::Section(name.trim().to_owned()));
    }
    if let Some(rest) = line.strip_prefix('%') {
        let (directive, arg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if directive != "include" {
            return Err(format!(
                "unknown directive %{directive} (PgBouncer knows only %include)"
            ));
        }
        let file = arg.trim();
        if file.is_empty() {
            return Err("%include needs a file name".to_owned());
        }
        return Ok(Line::Include(file.to_owned()));
    }
    let (key, rest) = parse_key(line)?;
    let value = rest
        .trim_start_matches([' ', '\t'])
        .strip_prefix('=')
        .ok_or_else(|| format!("expected `=` after {key}"))?;
    Ok(Line::Setting {
        key,
        value: value.trim().to_owned(),
    })
}

/// The key at the start of `line` and what follows it. A bare key is letters, digits and
/// `_.-*`; anything else must be double-quoted, with `""` for a quote inside.
fn parse_key(line: &str) -> Result<(String, &str), String> {
    if line.starts_with('"') {
        let (key, rest) =
            unquote(line, '"').ok_or_else(|| "a quoted name needs its closing \"".to_owned())?;
        if key.is_empty() {
            return Err("empty quoted name".to_owned());
        }
        return Ok((key, rest));
    }
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-*".contains(c)))
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(end);
    if key.is_empty() {
        return Err(
            "expected `key = value`, a [section] or a comment (names with other characters must be double-quoted)"
                .to_owned(),
        );
    }
    Ok((key.to_owned(), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(key: &str, value: &str) -> Line {
        Line::Setting {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn comments_only_at_the_start_of_a_line() {
        assert_eq!(parse_line("; a comment").unwrap(), Line::Blank);
        assert_eq!(parse_line("   # indented comment").unwrap(), Line::Blank);
        assert_eq!(parse_line("").unwrap(), Line::Blank);
        // Later on the line, ; and # belong to the value, as in PgBouncer.
        assert_eq!(
            parse_line("db = host=x password=a;b#c").unwrap(),
            setting("db", "host=x password=a;b#c")
        );
    }

    #[test]
    fn sections_and_settings() {
        assert_eq!(
            parse_line("[PgBouncer]").unwrap(),
            Line::Section("PgBouncer".into())
        );
        assert_eq!(
            parse_line("[databases] ; the pools").unwrap(),
            Line::Section("databases".into())
        );
        assert_eq!(
            parse_line("listen_port=6432").unwrap(),
            setting("listen_port", "6432")
        );
        assert_eq!(
            parse_line("  pool_mode \t=  transaction \r").unwrap(),
            setting("pool_mode", "transaction")
        );
        assert_eq!(parse_line("foodb =").unwrap(), setting("foodb", ""));
        assert_eq!(
            parse_line("* = host=fallback").unwrap(),
            setting("*", "host=fallback")
        );
        assert_eq!(
            parse_line("my-db.v2 = host=x").unwrap(),
            setting("my-db.v2", "host=x")
        );
    }

    #[test]
    fn quoted_keys_double_their_quotes() {
        assert_eq!(
            parse_line(r#""my db" = host=x"#).unwrap(),
            setting("my db", "host=x")
        );
        assert_eq!(
            parse_line(r#""say ""hi""" = dbname=x"#).unwrap(),
            setting(r#"say "hi""#, "dbname=x")
        );
        assert!(parse_line(r#""open = x"#).is_err());
        assert!(parse_line(r#""" = x"#).is_err());
    }

    #[test]
    fn includes_and_bad_lines() {
        assert_eq!(
            parse_line("%include /etc/pgbouncer/dbs.ini").unwrap(),
            Line::Include("/etc/pgbouncer/dbs.ini".into())
        );
        assert!(parse_line("%include").is_err());
        assert!(parse_line("%define x").is_err());
        assert!(parse_line("[databases").is_err());
        assert!(parse_line("[x] junk").is_err());
        assert!(parse_line("listen port = 1").is_err());
        assert!(parse_line("= value").is_err());
        assert!(parse_line("key value").is_err());
    }

    #[test]
    fn errors_do_not_repeat_the_line() {
        let err = parse_line("secretdb host=x password=hunter2").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn files_include_files_and_keep_the_section() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("main.ini"),
            "[databases]\n%include dbs.ini\nlast = host=z\n[pgbouncer]\nlisten_port = 1\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("dbs.ini"), "; more\nfirst = host=a\n").unwrap();
        let entries = read(&dir.path().join("main.ini")).unwrap();
        let got: Vec<_> = entries
            .iter()
            .map(|e| (e.section.as_str(), e.key.as_str(), e.at.line))
            .collect();
        assert_eq!(
            got,
            [
                ("databases", "first", 2),
                ("databases", "last", 3),
                ("pgbouncer", "listen_port", 5)
            ]
        );
        assert!(entries[0].at.file.ends_with("dbs.ini"));
    }

    #[test]
    fn include_loops_and_stray_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let me = dir.path().join("loop.ini");
        std::fs::write(&me, format!("%include {}\n", me.display())).unwrap();
        let err = read(&me).unwrap_err().to_string();
        assert!(err.contains("nests more than"), "{err}");

        let stray = dir.path().join("stray.ini");
        std::fs::write(&stray, "listen_port = 1\n").unwrap();
        let err = read(&stray).unwrap_err().to_string();
        assert!(err.contains("stray.ini line 1"), "{err}");
        assert!(err.contains("outside any section"), "{err}");

        let err = read(&dir.path().join("missing.ini")).unwrap_err();
        assert!(matches!(err, ImportError::Read { .. }), "{err}");
    }
}
