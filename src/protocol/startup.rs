//! The untagged first packets a client may send: StartupMessage, SSLRequest,
//! GSSENCRequest and CancelRequest.

use bytes::{Buf, BytesMut};

use super::ProtocolError;

const CANCEL_REQUEST_CODE: u32 = 80_877_102;
const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// The SSLRequest packet weir sends to servers: its length (8) and code.
pub(crate) const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// PostgreSQL's own limit on a startup packet.
const MAX_STARTUP_LEN: usize = 10_000;

/// One decoded startup-phase packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartupPacket {
    /// The client asks for TLS; answered with one byte.
    SslRequest,
    /// The client asks for GSSAPI encryption; answered with one byte.
    GssEncRequest,
    /// A cancel request on a fresh connection, with the keys weir handed out.
    Cancel {
        /// The process id from BackendKeyData.
        process_id: i32,
        /// The secret key from BackendKeyData.
        secret_key: i32,
    },
    /// The real start of a session.
    Startup {
        /// Requested minor version of protocol 3 (weir speaks 3.0).
        minor: u16,
        /// Parameters in the order sent; `user` and `database` among them.
        params: Vec<(String, String)>,
    },
}

/// Decodes one startup-phase packet from the front of `buf`; `Ok(None)` until complete.
pub(crate) fn decode_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>, ProtocolError> {
    let Some(&[a, b, c, d]) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(ProtocolError::BadStartupLength(len));
    }
    if buf.len() < len {
        buf.reserve(len - buf.len());
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    let code = packet.get_u32();
    let body = &packet[..];
    let malformed = |what| ProtocolError::Malformed { what };
    match code {
        SSL_REQUEST_CODE if body.is_empty() => Ok(Some(StartupPacket::SslRequest)),
        GSSENC_REQUEST_CODE if body.is_empty() => Ok(Some(StartupPacket::GssEncRequest)),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => Err(malformed("SSLRequest")),
        CANCEL_REQUEST_CODE => match body {
            &[a, b, c, d, e, f, g, h] => Ok(Some(StartupPacket::Cancel {
                process_id: i32::from_be_bytes([a, b, c, d]),
                secret_key: i32::from_be_bytes([e, f, g, h]),
            })),
            _ => Err(malformed("CancelRequest")),
        },
        version => {
            let major = (version >> 16) as u16;
            let minor = (version & 0xffff) as u16;
            if major != 3 {
                return Err(ProtocolError::UnsupportedVersion { major, minor });
            }
            Ok(Some(StartupPacket::Startup {
                minor,
                params: parse_params(body)?,
            }))
        }
    }
}

/// Parses the NUL-terminated name/value pairs of a StartupMessage, ending with an empty name.
fn parse_params(mut body: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    let malformed = ProtocolError::Malformed {
        what: "StartupMessage",
    };
    let mut params = Vec::new();
    loop {
        let name = take_cstr(&mut body).ok_or(ProtocolError::Malformed {
            what: "StartupMessage",
        })?;
        if name.is_empty() {
            break;
        }
        let value = take_cstr(&mut body).ok_or(ProtocolError::Malformed {
            what: "StartupMessage",
        })?;
        params.push((name, value));
    }
    if !body.is_empty() {
        return Err(malformed);
    }
    Ok(params)
}

/// Splits one NUL-terminated UTF-8 string off the front of `body`.
pub(super) fn take_cstr(body: &mut &[u8]) -> Option<String> {
    take_str(body).map(str::to_owned)
}

/// `take_cstr` without the copy: the string borrowed from `body`.
pub(super) fn take_str<'a>(body: &mut &'a [u8]) -> Option<&'a str> {
    let nul = body.iter().position(|&b| b == 0)?;
    let (s, rest) = body.split_at(nul);
    let s = std::str::from_utf8(s).ok()?;
    *body = rest.get(1..)?;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Protocol version 3.0 as it appears in a StartupMessage.
    const PROTOCOL_3_0: u32 = 3 << 16;

    fn packet(code: u32, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn decodes_each_packet_kind() {
        let mut b = packet(SSL_REQUEST_CODE, b"");
        assert_eq!(
            decode_startup(&mut b).expect("ok"),
            Some(StartupPacket::SslRequest)
        );
        let mut b = packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 7, 0, 0, 0, 9]);
        assert_eq!(
            decode_startup(&mut b).expect("ok"),
            Some(StartupPacket::Cancel {
                process_id: 7,
                secret_key: 9
            })
        );
        let mut b = packet(PROTOCOL_3_0, b"user\0bob\0database\0db\0\0");
        let Some(StartupPacket::Startup { minor, params }) = decode_startup(&mut b).expect("ok")
        else {
            panic!("not a startup")
        };
        assert_eq!(minor, 0);
        assert_eq!(params[0], ("user".into(), "bob".into()));
    }

    #[test]
    fn rejects_malformed_packets() {
        for bad in [
            packet(PROTOCOL_3_0, b"user\0bob"),
            packet(PROTOCOL_3_0, b"user\0bob\0\0trailing"),
            packet(2 << 16, b"\0"),
            packet(CANCEL_REQUEST_CODE, &[1, 2, 3]),
            packet(SSL_REQUEST_CODE, b"x"),
        ] {
            let mut b = bad;
            assert!(decode_startup(&mut b).is_err());
        }
        let mut huge = BytesMut::from(&[0u8, 1, 0, 0][..]);
        assert!(decode_startup(&mut huge).is_err());
        let mut partial = packet(PROTOCOL_3_0, b"user\0bob\0\0");
        partial.truncate(10);
        assert_eq!(decode_startup(&mut partial).expect("ok"), None);
    }
}
