//! Messages a client sends (weir is their server): typed tags and the login-phase bodies.

use super::startup::take_cstr;
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
}
