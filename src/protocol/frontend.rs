//! Messages a client sends (weir is their server): typed tags and the login-phase bodies.

use super::startup::{take_cstr, take_str};
use super::ProtocolError;

/// Message types a client may send after startup. Tags collide with backend ones
/// (`'D'` is Describe here and DataRow there), so never match on bare bytes elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrontendTag {
    /// `Q`: a simple-protocol query string.
    Query,
    /// `P`: extended protocol Parse.
    Parse,
    /// `B`: Bind.
    Bind,
    /// `D`: Describe.
    Describe,
    /// `E`: Execute.
    Execute,
    /// `S`: Sync, ends an extended-protocol batch.
    Sync,
    /// `H`: Flush.
    Flush,
    /// `C`: Close a statement or portal.
    Close,
    /// `X`: Terminate.
    Terminate,
    /// `d`: CopyData.
    CopyData,
    /// `c`: CopyDone.
    CopyDone,
    /// `f`: CopyFail.
    CopyFail,
    /// `F`: FunctionCall (answered with ReadyForQuery like a Query).
    FunctionCall,
    /// `p`: PasswordMessage / SASLInitialResponse / SASLResponse.
    Password,
}

impl TryFrom<u8> for FrontendTag {
    type Error = ProtocolError;
    fn try_from(b: u8) -> Result<Self, ProtocolError> {
        Ok(match b {
            b'Q' => Self::Query,
            b'P' => Self::Parse,
            b'B' => Self::Bind,
            b'D' => Self::Describe,
            b'E' => Self::Execute,
            b'S' => Self::Sync,
            b'H' => Self::Flush,
            b'C' => Self::Close,
            b'X' => Self::Terminate,
            b'd' => Self::CopyData,
            b'c' => Self::CopyDone,
            b'f' => Self::CopyFail,
            b'F' => Self::FunctionCall,
            b'p' => Self::Password,
            other => return Err(ProtocolError::UnexpectedTag(char::from(other))),
        })
    }
}

/// Decoders for the `p` message during login, whose meaning depends on what weir asked for.
pub(crate) struct LoginMessage;

impl LoginMessage {
    /// A PasswordMessage: one NUL-terminated string (md5 hash or cleartext).
    pub(crate) fn password(body: &[u8]) -> Result<&[u8], ProtocolError> {
        match body.split_last() {
            Some((0, pw)) if !pw.contains(&0) => Ok(pw),
            _ => Err(ProtocolError::Malformed {
                what: "PasswordMessage",
            }),
        }
    }

    /// A SASLInitialResponse: mechanism name, then the client-first-message.
    pub(crate) fn sasl_initial(body: &[u8]) -> Result<(String, &[u8]), ProtocolError> {
        let malformed = || ProtocolError::Malformed {
            what: "SASLInitialResponse",
        };
        let mut rest = body;
        let mechanism = take_cstr(&mut rest).ok_or_else(malformed)?;
        let Some((&[a, b, c, d], data)) = rest.split_first_chunk::<4>() else {
            return Err(malformed());
        };
        let len = i32::from_be_bytes([a, b, c, d]);
        if usize::try_from(len).ok() != Some(data.len()) {
            return Err(malformed());
        }
        Ok((mechanism, data))
    }
}

/// A Bind's portal name, statement name, and where its parameters start in the body.
pub(crate) type BindNames<'a> = (&'a [u8], &'a str, usize);

/// Views into the extended-protocol messages that name prepared statements.
pub(crate) struct Extended;

impl Extended {
    /// The statement name of a Parse body and everything after it (query text and
    /// parameter types), or `None` while the name is not complete in `body`.
    pub(crate) fn parse_name(body: &[u8]) -> Result<Option<(&str, &[u8])>, ProtocolError> {
        let Some(nul) = body.iter().position(|&b| b == 0) else {
            return Ok(None);
        };
        let (name, rest) = body.split_at(nul);
        let name =
            std::str::from_utf8(name).map_err(|_| ProtocolError::Malformed { what: "Parse" })?;
        Ok(Some((name, rest.get(1..).unwrap_or_default())))
    }

    /// The portal and statement names at the start of a Bind body, and where the rest of the
    /// body (parameters) starts; `None` while both names are not in `body` yet.
    pub(crate) fn bind_names(body: &[u8]) -> Result<Option<BindNames<'_>>, ProtocolError> {
        let Some(p) = body.iter().position(|&b| b == 0) else {
            return Ok(None);
        };
        let after_portal = body.get(p + 1..).unwrap_or_default();
        let Some(s) = after_portal.iter().position(|&b| b == 0) else {
            return Ok(None);
        };
        let portal = body.get(..p).unwrap_or_default();
        let stmt = after_portal.get(..s).unwrap_or_default();
        let stmt =
            std::str::from_utf8(stmt).map_err(|_| ProtocolError::Malformed { what: "Bind" })?;
        Ok(Some((portal, stmt, p + 1 + s + 1)))
    }

    /// The target of a Describe or Close body: `b'S'` (statement) or `b'P'` (portal), and its name.
    pub(crate) fn target<'a>(
        body: &'a [u8],
        what: &'static str,
    ) -> Result<(u8, &'a str), ProtocolError> {
        let malformed = ProtocolError::Malformed { what };
        let Some((&kind, rest)) = body.split_first() else {
            return Err(malformed);
        };
        let Some((0, name)) = rest.split_last() else {
            return Err(malformed);
        };
        if !matches!(kind, b'S' | b'P') || name.contains(&0) {
            return Err(malformed);
        }
        let name = std::str::from_utf8(name).map_err(|_| ProtocolError::Malformed { what })?;
        Ok((kind, name))
    }
}

/// What a Describe or Close names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A prepared statement (`S`).
    Statement,
    /// A portal (`P`).
    Portal,
}

impl Target {
    fn of(kind: u8) -> Self {
        if kind == b'S' {
            Target::Statement
        } else {
            Target::Portal
        }
    }
}

/// A whole client message decoded, for the admin console, which answers everything itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    /// A simple query.
    Query(&'a str),
    /// Parse: statement name and text (parameter types are ignored: the console takes none).
    Parse {
        /// The statement name ("" for the unnamed one).
        name: &'a str,
        /// The text.
        text: &'a str,
    },
    /// Bind: portal and statement names, and the result formats asked for.
    Bind {
        /// The portal name.
        portal: &'a str,
        /// The statement name.
        statement: &'a str,
        /// Result columns wanted in binary: none (all text), one (applies to all), or
        /// one per column.
        binary: Vec<bool>,
    },
    /// Describe of a statement or portal, by name.
    Describe(Target, &'a str),
    /// Execute of a portal (the row limit is ignored: answers are small).
    Execute(&'a str),
    /// Close of a statement or portal, by name.
    Close(Target, &'a str),
    /// Sync.
    Sync,
    /// Flush.
    Flush,
    /// Terminate.
    Terminate,
    /// Anything else (COPY data, a function call): not for the console.
    Other(FrontendTag),
}

impl<'a> Request<'a> {
    /// Decodes one message from its tag byte and body.
    pub(crate) fn decode(tag: u8, body: &'a [u8]) -> Result<Self, ProtocolError> {
        let cstr = |mut b: &'a [u8], what: &'static str| {
            let s = take_str(&mut b).ok_or(ProtocolError::Malformed { what })?;
            Ok::<_, ProtocolError>((s, b))
        };
        Ok(match FrontendTag::try_from(tag)? {
            FrontendTag::Query => Self::Query(cstr(body, "Query")?.0),
            FrontendTag::Parse => {
                let (name, rest) = cstr(body, "Parse")?;
                Self::Parse {
                    name,
                    text: cstr(rest, "Parse")?.0,
                }
            }
            FrontendTag::Bind => {
                let (portal, rest) = cstr(body, "Bind")?;
                let (statement, rest) = cstr(rest, "Bind")?;
                Self::Bind {
                    portal,
                    statement,
                    binary: result_formats(rest)?,
                }
            }
            FrontendTag::Describe => {
                let (kind, name) = Extended::target(body, "Describe")?;
                Self::Describe(Target::of(kind), name)
            }
            FrontendTag::Close => {
                let (kind, name) = Extended::target(body, "Close")?;
                Self::Close(Target::of(kind), name)
            }
            FrontendTag::Execute => Self::Execute(cstr(body, "Execute")?.0),
            FrontendTag::Sync => Self::Sync,
            FrontendTag::Flush => Self::Flush,
            FrontendTag::Terminate => Self::Terminate,
            other => Self::Other(other),
        })
    }
}

/// The result-format codes at the end of a Bind body that starts at its parameter formats.
fn result_formats(rest: &[u8]) -> Result<Vec<bool>, ProtocolError> {
    let mut r = Reader(rest);
    let formats = r.count()?;
    r.take(formats * 2)?;
    for _ in 0..r.count()? {
        let len = r.int32()?;
        // -1 is NULL; any other negative length is malformed and caught by `try_from`.
        if len != -1 {
            let len = usize::try_from(len).map_err(|_| Reader::malformed())?;
            r.take(len)?;
        }
    }
    let results = r.count()?;
    let codes = r.take(results * 2)?;
    if !r.0.is_empty() {
        return Err(Reader::malformed());
    }
    Ok(codes.chunks_exact(2).map(|c| c != [0, 0]).collect())
}

/// Reads a Bind body front to back, failing on a short body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn malformed() -> ProtocolError {
        ProtocolError::Malformed { what: "Bind" }
    }

    /// The next `n` bytes.
    #[allow(clippy::indexing_slicing)] // callers index within the `n` bytes they asked for
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.0.len() < n {
            return Err(Self::malformed());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    /// An Int32.
    fn int32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes(
            b.try_into().map_err(|_| Self::malformed())?,
        ))
    }

    /// An Int16 count, which must not be negative.
    #[allow(clippy::indexing_slicing)] // `take(2)` returned two bytes
    fn count(&mut self) -> Result<usize, ProtocolError> {
        let b = self.take(2)?;
        usize::try_from(i16::from_be_bytes([b[0], b[1]])).map_err(|_| Self::malformed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_bodies() {
        assert_eq!(LoginMessage::password(b"secret\0").expect("ok"), b"secret");
        assert!(LoginMessage::password(b"secret").is_err());
        assert!(LoginMessage::password(b"se\0cret\0").is_err());
        let (mech, data) = LoginMessage::sasl_initial(b"SCRAM-SHA-256\0\0\0\0\x03abc").expect("ok");
        assert_eq!(mech, "SCRAM-SHA-256");
        assert_eq!(data, b"abc");
        assert!(LoginMessage::sasl_initial(b"SCRAM-SHA-256\0\0\0\0\x09abc").is_err());
        assert!(LoginMessage::sasl_initial(b"SCRAM").is_err());
        assert!(FrontendTag::try_from(b'Z').is_err());
    }

    #[test]
    fn extended_message_names() {
        assert_eq!(
            Extended::parse_name(b"s1\0SELECT 1\0\0\0").expect("ok"),
            Some(("s1", &b"SELECT 1\0\0\0"[..]))
        );
        assert_eq!(Extended::parse_name(b"s1").expect("ok"), None);
        assert_eq!(
            Extended::bind_names(b"\0stmt\0\0\0").expect("ok"),
            Some((&b""[..], "stmt", 6))
        );
        assert_eq!(Extended::bind_names(b"portal\0st").expect("ok"), None);
        assert_eq!(
            Extended::target(b"Sname\0", "Describe").expect("ok"),
            (b'S', "name")
        );
        assert!(Extended::target(b"Xname\0", "Describe").is_err());
        assert!(Extended::target(b"S", "Close").is_err());
    }

    #[test]
    fn whole_requests() {
        assert_eq!(
            Request::decode(b'Q', b"SHOW POOLS\0").expect("ok"),
            Request::Query("SHOW POOLS")
        );
        assert_eq!(
            Request::decode(b'P', b"s\0SHOW HELP\0\0\0").expect("ok"),
            Request::Parse {
                name: "s",
                text: "SHOW HELP"
            }
        );
        assert_eq!(
            Request::decode(b'B', b"p\0s\0\0\0\0\0\0\0").expect("ok"),
            Request::Bind {
                portal: "p",
                statement: "s",
                binary: vec![]
            }
        );
        assert_eq!(
            Request::decode(b'B', b"\0\0\0\0\0\x01\0\0\0\x01x\0\x02\0\x01\0\0").expect("ok"),
            Request::Bind {
                portal: "",
                statement: "",
                binary: vec![true, false]
            }
        );
        assert!(Request::decode(b'B', b"\0\0\0\0\0\x01\0\0\0\x09x\0\0").is_err());
        assert_eq!(
            Request::decode(b'E', b"p\0\0\0\0\0").expect("ok"),
            Request::Execute("p")
        );
        assert_eq!(Request::decode(b'S', b"").expect("ok"), Request::Sync);
        assert!(Request::decode(b'Q', b"no terminator").is_err());
        assert!(Request::decode(b'Q', b"\xff\0").is_err());
        assert!(Request::decode(b'Z', b"").is_err());
    }
}
