//! Entry points for the cargo-fuzz targets in `fuzz/` (see docs/security.md, "Fuzzing").
//! Not an API: each function feeds arbitrary bytes to one of weir's parsers the way the
//! running code does, and must return without panicking whatever the bytes are.
//!
//! Owns: the harness shape of each target. Does not: assert anything beyond "no panic";
//! the parsers' own tests check what they return.

use bytes::BytesMut;

use crate::auth::{ScramKeys, ScramServer};
use crate::protocol::{
    decode, decode_data_row, decode_startup, BackendEvent, BackendMessage, BackendScanner,
    FrontendEvent, FrontendScanner, Request, StartupPacket,
};

/// Largest message the frontend target decodes whole, as the admin console does.
const WHOLE: usize = 64 * 1024;

/// Client messages after login: framing, the console's decoder, and the relay's scanner
/// (with a small `limits.max_message_size`, so that path runs too).
pub fn frontend(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = decode(&mut buf, WHOLE) {
        let _ = Request::decode(frame.tag(), frame.body());
    }
    for mut scanner in [FrontendScanner::default(), FrontendScanner::with_max(1024)] {
        let mut at = 0;
        while let Some(rest) = data.get(at..) {
            match scanner.next(rest) {
                Ok(FrontendEvent::Pass(n)) => at += n,
                Ok(FrontendEvent::Start(_)) => {}
                Ok(FrontendEvent::NeedMore) | Err(_) => break,
            }
        }
    }
}

/// The startup phase: startup packets, SSLRequest, CancelRequest, and the parameters of a
/// StartupMessage as the client task reads them.
pub fn startup(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = decode_startup(&mut buf) {
        if let StartupPacket::Startup { params, .. } = packet {
            let _ = crate::client::StartupRequest::parse(params);
        }
    }
}

/// What a server sends: whole messages (logins, probes), DataRows, and the relay's scanner.
pub fn backend(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = BackendMessage::decode(&mut buf) {}
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = decode_data_row(&mut buf) {}
    let mut scanner = BackendScanner::default();
    let mut at = 0;
    while let Some(rest) = data.get(at..) {
        match scanner.next(rest) {
            Ok(BackendEvent::NeedMore) | Err(_) => break,
            Ok(event) => {
                if let BackendEvent::Error { len } = event {
                    // The relay decodes an ErrorResponse from its span, as here.
                    let _ = rest.get(..len).map(crate::protocol::error_fields);
                }
                // `Start` covers nothing; the `Pass` events after it do.
                at += event.len();
            }
        }
    }
}

/// The router's classifier on any text (the bytes as UTF-8, lossily).
pub fn classify(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::router::classify(&text, &crate::router::WriteFunctions::builtin());
}

/// A SCRAM exchange from the server's side: the bytes up to the first 0xff are the
/// client-first-message, the rest the client-final-message; with and without channel
/// binding offered.
pub fn scram(data: &[u8]) {
    let split = data.iter().position(|&b| b == 0xff).unwrap_or(data.len());
    let (first, last) = data.split_at(split);
    let last = last.get(1..).unwrap_or_default();
    let keys = std::sync::Arc::new(ScramKeys::mock("fuzz", &[7; 32]));
    for plus in [None, Some(false), Some(true)] {
        let mut server = ScramServer::new(keys.clone());
        if let Some(plus) = plus {
            server = server.with_binding(std::sync::Arc::from(&[1u8; 32][..]), plus);
        }
        if server.client_first(first).is_ok() {
            let _ = server.client_final(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each entry point, on inputs that reach deep into its parser, and on junk.
    #[test]
    fn entry_points_take_anything() {
        let mut login = vec![0, 0, 0, 0, 0, 3, 0, 0];
        login.extend_from_slice(b"user\0app\0database\0db\0options\0-c x=1\0\0");
        let len = u32::try_from(login.len()).unwrap_or_default().to_be_bytes();
        login[..4].copy_from_slice(&len);
        let inputs: [&[u8]; 6] = [
            b"",
            b"Q\0\0\0\x0dSELECT 1\0S\0\0\0\x04",
            &login,
            b"Z\0\0\0\x05ID\0\0\0\x06\0\x01\xff\xff\xff\xff",
            b"n,,n=,r=abc\xffc=biws,r=abcdef,p=AAAA",
            b"\xff\xff\xff\xff\0\0\0\0\x80\x80",
        ];
        for data in inputs {
            frontend(data);
            startup(data);
            backend(data);
            classify(data);
            scram(data);
        }
    }
}
