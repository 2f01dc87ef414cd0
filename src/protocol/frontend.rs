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
}
