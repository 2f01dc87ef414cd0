//! Property tests of the codec: whatever bytes arrive, in whatever pieces, the decoders
//! never panic, and the scanners see the same messages however the stream is split.

use bytes::BytesMut;
use proptest::prelude::*;

use super::{
    decode, decode_data_row, decode_startup, BackendEvent, BackendMessage, BackendScanner,
    ErrorSeverity, FrontendEvent, FrontendScanner, FrontendTag, MessageBuilder, Request,
    StartupPacket,
};

/// Text without NUL, as every C string in the protocol is.
fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,40}"
}

/// Client message type bytes weir accepts after login.
const FRONTEND_TAGS: &[u8] = b"QPBDESHCXdcfF";

/// One client message on the wire: tag, length, body.
fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(
        &u32::try_from(body.len() + 4)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(body);
    out
}

proptest! {
    #[test]
    fn the_frontend_scanner_sees_the_same_messages_however_the_stream_is_split(
        messages in prop::collection::vec(
            (0..FRONTEND_TAGS.len(), prop::collection::vec(any::<u8>(), 0..200)),
            1..20,
        ),
        cuts in prop::collection::vec(1usize..64, 1..50),
    ) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (t, body) in &messages {
            let tag = FRONTEND_TAGS[*t];
            wire.extend_from_slice(&frame(tag, body));
            expected.push((FrontendTag::try_from(tag).expect("valid tag"), body.len() + 5));
        }
        let mut scanner = FrontendScanner::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut seen: Vec<(FrontendTag, usize)> = Vec::new();
        let mut cut = cuts.iter().cycle();
        while fed < wire.len() || !buf.is_empty() {
            let n = (*cut.next().expect("cycle")).min(wire.len() - fed);
            buf.extend_from_slice(&wire[fed..fed + n]);
            fed += n;
            loop {
                match scanner.next(&buf).expect("valid stream") {
                    FrontendEvent::Start(tag) => seen.push((tag, 0)),
                    FrontendEvent::Pass(n) => {
                        if let Some(last) = seen.last_mut() {
                            last.1 += n;
                        }
                        buf.drain(..n);
                    }
                    FrontendEvent::NeedMore => break,
                }
            }
            if fed == wire.len() && scanner.at_boundary() {
                break;
            }
        }
        prop_assert_eq!(seen, expected);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_startup(&mut BytesMut::from(&bytes[..]));
        let _ = decode(&mut BytesMut::from(&bytes[..]), 1 << 20);
        let _ = BackendMessage::decode(&mut BytesMut::from(&bytes[..]));
        for &tag in FRONTEND_TAGS {
            let _ = Request::decode(tag, &bytes);
        }
        let mut scanner = BackendScanner::default();
        let mut at = 0;
        while let Ok(event) = scanner.next(&bytes[at..]) {
            if event == BackendEvent::NeedMore {
                break;
            }
            at += event.len();
        }
        let mut scanner = FrontendScanner::default();
        let mut at = 0;
        while let Ok(event) = scanner.next(&bytes[at..]) {
            match event {
                FrontendEvent::Pass(n) => at += n,
                FrontendEvent::Start(_) => {}
                FrontendEvent::NeedMore => break,
            }
        }
    }

    #[test]
    fn startup_packets_round_trip(
        params in prop::collection::vec(("[a-z_]{1,20}", text()), 0..20),
    ) {
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut buf = BytesMut::new();
        MessageBuilder::startup(&mut buf, &pairs).expect("builds");
        let decoded = decode_startup(&mut buf).expect("decodes").expect("whole");
        let StartupPacket::Startup { minor, params: got } = decoded else {
            panic!("not a StartupMessage: {decoded:?}");
        };
        prop_assert_eq!(minor, 0);
        prop_assert_eq!(got, params);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn data_rows_round_trip(values in prop::collection::vec(prop::option::of(text()), 0..30)) {
        let refs: Vec<Option<&str>> = values.iter().map(|v| v.as_deref()).collect();
        let mut buf = BytesMut::new();
        MessageBuilder::data_row(&mut buf, &refs);
        let row = decode_data_row(&mut buf).expect("decodes").expect("whole");
        prop_assert_eq!(row, values);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn errors_round_trip(code in "[0-9A-Z]{5}", message in text()) {
        let mut buf = BytesMut::new();
        MessageBuilder::error(&mut buf, ErrorSeverity::Fatal, &code, &message);
        let Some(BackendMessage::Error(fields)) = BackendMessage::decode(&mut buf).expect("decodes") else {
            panic!("not an ErrorResponse");
        };
        prop_assert_eq!(fields.code_or("XX000"), code.as_str());
        prop_assert_eq!(&fields.message, &message);
        prop_assert!(fields.is_fatal());
    }
}
