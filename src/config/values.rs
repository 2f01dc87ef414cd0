//! Value forms of the configuration: names, paths, durations, sizes, addresses, numbers
//! and choices, each checked with the key it came from, so an error names the key.
//!
//! Owns: turning one raw value into its typed form. Does not: know which key takes which
//! form, or rules between keys (`convert` does).

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use super::duration::{self, DurationError};
use super::error::{ConfigError, Problem};
use super::model::{HostAddr, MAX_MESSAGE_SIZE};
use super::raw::Scalar;

/// PostgreSQL truncates names longer than this (NAMEDATALEN - 1), so a longer user or
/// database name could never match what the server sees.
const NAME_MAX_BYTES: usize = 63;

/// Whether a duration key accepts zero (meaning "off") or not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Zero {
    /// Zero turns the timeout off (or, for `shutdown_timeout`, means "do not wait").
    Allowed,
    /// A zero deadline would make every attempt fail: refused.
    Refused,
}

/// A size: bytes, or a number with a unit as PostgreSQL writes them (`kB`, `MB`, `GB`,
/// powers of 1024), from 1kB to PostgreSQL's own limit of a message.
pub(super) fn size(key: &str, value: Scalar) -> Result<usize, ConfigError> {
    const RULE: &str =
        "a size in bytes, or with a unit (\"512kB\", \"64MB\", \"1GB\"), from 1kB to 1GB";
    let bytes = match value {
        Scalar::Int(n) => usize::try_from(n).ok(),
        Scalar::Str(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (number, unit) = s.split_at(split);
            let scale: usize = match unit.trim() {
                "" | "B" => 1,
                "kB" => 1 << 10,
                "MB" => 1 << 20,
                "GB" => 1 << 30,
                _ => 0,
            };
            number
                .parse::<usize>()
                .ok()
                .filter(|_| scale > 0)
                .and_then(|n| n.checked_mul(scale))
        }
        _ => None,
    };
    bytes
        .filter(|n| (1 << 10..=MAX_MESSAGE_SIZE + 1).contains(n))
        .map(|n| n.min(MAX_MESSAGE_SIZE))
        .ok_or_else(|| ConfigError::invalid(key, Problem::Rule(RULE)))
}

/// Parses an optional value, or returns `default` when the key is absent.
pub(super) fn or<T>(
    value: Option<Scalar>,
    default: T,
    parse: impl FnOnce(Scalar) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    Ok(match value {
        Some(v) => parse(v)?,
        None => default,
    })
}

/// A key that must be present.
pub(super) fn required(
    key: &str,
    value: Option<Scalar>,
    why: &'static str,
) -> Result<Scalar, ConfigError> {
    value.ok_or_else(|| ConfigError::invalid(key, Problem::Missing(why)))
}

/// A string; other TOML types are refused without echoing the value (it may be secret).
pub(super) fn string(key: &str, value: Scalar) -> Result<String, ConfigError> {
    match value {
        Scalar::Str(s) => Ok(s),
        other => Err(ConfigError::invalid(
            key,
            Problem::WrongType {
                expected: "a string in quotes",
                found: other.kind(),
            },
        )),
    }
}

/// A user or database name: non-empty, at most 63 bytes, no NUL.
pub(super) fn check_name(key: &str, name: String) -> Result<String, ConfigError> {
    if name.is_empty() {
        Err(ConfigError::invalid(key, Problem::Empty))
    } else if name.len() > NAME_MAX_BYTES {
        Err(ConfigError::invalid(key, Problem::NameTooLong(name)))
    } else if name.contains('\0') {
        Err(ConfigError::invalid(key, Problem::NulInName(name)))
    } else {
        Ok(name)
    }
}

/// Records `name` as defined at `key`, or reports where it was defined first.
pub(super) fn unique(
    seen: &mut HashMap<String, String>,
    name: &str,
    key: &str,
) -> Result<(), ConfigError> {
    if let Some(first) = seen.get(name) {
        return Err(ConfigError::invalid(
            key,
            Problem::Duplicate {
                name: name.to_owned(),
                first: first.clone(),
            },
        ));
    }
    seen.insert(name.to_owned(), key.to_owned());
    Ok(())
}

/// A certificate file and its key file (`[tls]`, `[server_tls]`), given together or not
/// at all; `why` says so when one is missing, under the missing one's key.
pub(super) fn cert_and_key(
    (cert_key, cert): (&str, Option<Scalar>),
    (key_key, key): (&str, Option<Scalar>),
    why: &'static str,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some((path(cert_key, cert)?, path(key_key, key)?))),
        (None, Some(_)) => Err(ConfigError::invalid(cert_key, Problem::Missing(why))),
        (Some(_), None) => Err(ConfigError::invalid(key_key, Problem::Missing(why))),
    }
}

/// A file path: a non-empty string, kept as written.
pub(super) fn path(key: &str, value: Scalar) -> Result<PathBuf, ConfigError> {
    let text = string(key, value)?;
    if text.trim().is_empty() {
        return Err(ConfigError::invalid(key, Problem::Empty));
    }
    Ok(PathBuf::from(text))
}

/// One of a fixed set of words, spelled exactly.
pub(super) fn choice<T: Copy>(
    key: &str,
    value: Scalar,
    variants: &'static [(&'static str, T)],
) -> Result<T, ConfigError> {
    let text = string(key, value)?;
    variants
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            ConfigError::invalid(
                key,
                Problem::UnknownValue {
                    value: text,
                    expected: variants.iter().map(|(name, _)| *name).collect(),
                },
            )
        })
}

/// A boolean: TOML `true`/`false`, or (from the environment) `true`, `false`, `on`,
/// `off`, `yes`, `no`, `1`, `0`.
pub(super) fn boolean(key: &str, value: Scalar) -> Result<bool, ConfigError> {
    match value {
        Scalar::Bool(b) => Ok(b),
        Scalar::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" => Ok(false),
            _ => Err(ConfigError::invalid(
                key,
                Problem::UnknownValue {
                    value: s,
                    expected: vec!["true", "false"],
                },
            )),
        },
        other => Err(ConfigError::invalid(
            key,
            Problem::WrongType {
                expected: "true or false",
                found: other.kind(),
            },
        )),
    }
}

/// A whole number from `min` to `u32::MAX`, from a TOML integer or a string of digits.
pub(super) fn whole(key: &str, value: Scalar, min: u32) -> Result<u32, ConfigError> {
    let (n, written) = match value {
        Scalar::Int(n) => (n, n.to_string()),
        Scalar::Str(s) => match s.trim().parse::<i128>() {
            Ok(n) => (n, s),
            Err(_) => {
                return Err(ConfigError::invalid(
                    key,
                    Problem::NotANumber {
                        value: s,
                        min: min.into(),
                        max: u32::MAX.into(),
                    },
                ))
            }
        },
        other => {
            return Err(ConfigError::invalid(
                key,
                Problem::WrongType {
                    expected: "a whole number",
                    found: other.kind(),
                },
            ))
        }
    };
    u32::try_from(n).ok().filter(|n| *n >= min).ok_or_else(|| {
        ConfigError::invalid(
            key,
            Problem::OutOfRange {
                value: written,
                min: min.into(),
                max: u32::MAX.into(),
            },
        )
    })
}

/// A whole number of at least 1.
pub(super) fn non_zero(key: &str, value: Scalar) -> Result<NonZeroU32, ConfigError> {
    let n = whole(key, value, 1)?;
    NonZeroU32::new(n).ok_or_else(|| {
        ConfigError::invalid(
            key,
            Problem::OutOfRange {
                value: n.to_string(),
                min: 1,
                max: u32::MAX.into(),
            },
        )
    })
}

/// A duration: `"30s"`, `"500ms"`, `"5m"`, or whole seconds (`30`, `"30"`).
pub(super) fn duration(key: &str, value: Scalar, zero: Zero) -> Result<Duration, ConfigError> {
    let (parsed, written) = match value {
        Scalar::Int(n) => (duration::from_seconds(n), n.to_string()),
        Scalar::Str(s) => (duration::parse(&s), s),
        Scalar::Float(f) => (Err(DurationError::Syntax), f.to_string()),
        Scalar::Bool(b) => (Err(DurationError::Syntax), b.to_string()),
    };
    let d = parsed.map_err(|e| {
        ConfigError::invalid(
            key,
            match e {
                DurationError::Syntax => Problem::NotADuration(written),
                DurationError::TooLong => Problem::DurationTooLong(written),
            },
        )
    })?;
    if d.is_zero() && zero == Zero::Refused {
        return Err(ConfigError::invalid(key, Problem::ZeroDuration));
    }
    Ok(d)
}

/// An IP address and port to listen on.
pub(super) fn socket_addr(key: &str, value: Scalar) -> Result<SocketAddr, ConfigError> {
    let text = string(key, value)?;
    text.trim()
        .parse()
        .map_err(|_| ConfigError::invalid(key, Problem::NotASocketAddr(text)))
}

/// `host:port`, `[v6]:port`, `host` or a bare IPv6 literal; the port defaults to 5432.
/// The error is the reason, for `"x" is not a valid host:port (reason)`.
pub(super) fn parse_host_addr(text: &str) -> Result<HostAddr, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty");
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("missing closing ]")?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| "not an IPv6 address inside [ ]")?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("expected :port after ]")?),
        };
        (host, port)
    } else if text.matches(':').count() > 1 {
        // Several colons and no brackets: only a bare IPv6 address makes sense.
        text.parse::<Ipv6Addr>()
            .map_err(|_| "write IPv6 addresses with a port as [address]:port")?;
        (text, None)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err("empty host");
    }
    let is_ipv6 = host.contains(':');
    if !is_ipv6
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err("the host may contain only letters, digits, '.', '-' and '_'");
    }
    let port = match port {
        None => HostAddr::DEFAULT_PORT,
        Some(p) => parse_port(p)?,
    };
    Ok(HostAddr {
        host: host.to_owned(),
        port,
    })
}

/// A TCP port from 1 to 65535.
fn parse_port(text: &str) -> Result<u16, &'static str> {
    if text.is_empty() {
        return Err("missing port after ':'");
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("port is not a number");
    }
    match text.parse::<u16>() {
        Ok(0) => Err("port 0 is not a server port"),
        Ok(port) => Ok(port),
        Err(_) => Err("port out of range"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_addresses_parse_and_print_back() {
        for (text, host, port, shown) in [
            ("db1:5433", "db1", 5433, "db1:5433"),
            ("db1", "db1", 5432, "db1:5432"),
            ("10.0.0.5:6000", "10.0.0.5", 6000, "10.0.0.5:6000"),
            ("[::1]:5432", "::1", 5432, "[::1]:5432"),
            ("[fe80::1]", "fe80::1", 5432, "[fe80::1]:5432"),
            ("::1", "::1", 5432, "[::1]:5432"),
            (" pg_primary:5432 ", "pg_primary", 5432, "pg_primary:5432"),
        ] {
            let h = parse_host_addr(text).unwrap();
            assert_eq!((h.host.as_str(), h.port), (host, port), "{text}");
            assert_eq!(h.to_string(), shown);
            assert_eq!(parse_host_addr(shown).unwrap(), h);
        }
    }

    #[test]
    fn bad_host_addresses_say_why() {
        for (text, reason) in [
            ("localhost:99999", "port out of range"),
            ("localhost:", "missing port after ':'"),
            ("localhost:abc", "port is not a number"),
            ("localhost:0", "port 0 is not a server port"),
            (":5432", "empty host"),
            ("", "empty"),
            ("[::1:5432", "missing closing ]"),
            ("[db]:5432", "not an IPv6 address inside [ ]"),
            ("[::1]5432", "expected :port after ]"),
            (
                "fe80::1:zz:5432",
                "write IPv6 addresses with a port as [address]:port",
            ),
            (
                "db 1:5432",
                "the host may contain only letters, digits, '.', '-' and '_'",
            ),
        ] {
            assert_eq!(parse_host_addr(text), Err(reason), "{text}");
        }
    }
}
