//! The client's startup parameters: who, which database, and the session settings it asks for.

use crate::server::ParamSet;

use super::route::{self, RouteOverride};
use super::SessionError;

/// What a StartupMessage asked for, sorted into what weir uses itself and what it applies
/// to the servers on the client's behalf.
#[derive(Debug, Clone, Default)]
pub(crate) struct StartupRequest {
    /// `user`.
    pub(crate) user: String,
    /// `database` (defaults to the user name, as in PostgreSQL).
    pub(crate) database: String,
    /// Everything else: `application_name`, `client_encoding`, `search_path`, and the
    /// `-c name=value` settings from `options`.
    pub(crate) params: ParamSet,
    /// `_pq_.` protocol options, which weir does not support (reported back).
    pub(crate) protocol_options: Vec<String>,
    /// `weir.route`, as a parameter or in `options`: weir's, never sent to a server.
    pub(crate) route: RouteOverride,
}

impl StartupRequest {
    /// Sorts the raw parameters of a StartupMessage.
    pub(crate) fn parse(raw: Vec<(String, String)>) -> Result<Self, SessionError> {
        let mut req = Self::default();
        for (name, value) in raw {
            match name.as_str() {
                "user" => req.user = value,
                "database" => req.database = value,
                "options" => parse_options(&value, &mut req.params)?,
                "replication" => {
                    if !matches!(value.as_str(), "false" | "off" | "no" | "0") {
                        return Err(SessionError::Unsupported(
                            "replication connections are not supported through weir; connect to the server directly".into(),
                        ));
                    }
                }
                n if n.starts_with("_pq_.") => req.protocol_options.push(name),
                _ => req.params.set(&name, &value),
            }
        }
        if req.user.is_empty() {
            return Err(SessionError::NotAuthorized(
                "no PostgreSQL user name specified in startup packet".into(),
            ));
        }
        if req.database.is_empty() {
            req.database.clone_from(&req.user);
        }
        if let Some(value) = req.params.get(route::SETTING) {
            req.route = RouteOverride::parse(value).map_err(SessionError::InvalidValue)?;
            req.params.remove(route::SETTING);
        }
        Ok(req)
    }
}

/// Reads `-c name=value` / `--name=value` settings from the `options` parameter, with
/// PostgreSQL's backslash escaping of spaces.
fn parse_options(options: &str, params: &mut ParamSet) -> Result<(), SessionError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_ascii_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()
        } else if let Some(rest) = w.strip_prefix("--") {
            Some(rest.to_owned())
        } else {
            w.strip_prefix("-c").map(str::to_owned)
        };
        let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) else {
            return Err(SessionError::Unsupported(format!(
                "unsupported startup option {w:?}: weir accepts only \"-c name=value\" settings in options"
            )));
        };
        params.set(&name.replace('-', "_"), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn sorts_parameters_and_options() {
        let req = StartupRequest::parse(raw(&[
            ("user", "app"),
            ("application_name", "psql"),
            (
                "options",
                "-c search_path=a,b --statement-timeout=5s -c x=with\\ space",
            ),
        ]))
        .expect("ok");
        assert_eq!(req.database, "app");
        assert_eq!(req.params.get("application_name"), Some("psql"));
        assert_eq!(req.params.get("search_path"), Some("a,b"));
        assert_eq!(req.params.get("statement_timeout"), Some("5s"));
        assert_eq!(req.params.get("x"), Some("with space"));
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        assert!(StartupRequest::parse(raw(&[("database", "x")])).is_err());
        assert!(StartupRequest::parse(raw(&[("user", "a"), ("replication", "database")])).is_err());
        assert!(StartupRequest::parse(raw(&[("user", "a"), ("options", "-v")])).is_err());
        assert!(StartupRequest::parse(raw(&[("user", "a"), ("weir.route", "up")])).is_err());
    }

    #[test]
    fn weir_route_is_kept_from_the_servers() {
        let req = StartupRequest::parse(raw(&[
            ("user", "app"),
            ("options", "-c weir.route=replica"),
        ]))
        .expect("ok");
        assert_eq!(req.route, RouteOverride::Replica);
        assert_eq!(req.params.get("weir.route"), None);
    }
}
