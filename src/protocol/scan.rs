//! Streaming scanners for relayed traffic: they walk message headers in a byte stream and
//! report which spans to forward untouched and which messages weir must look at.
//!
//! Nothing is copied or re-encoded: the caller forwards the bytes it was told to pass
//! straight from its read buffer. A message weir does not inspect may be larger than any
//! buffer; it is passed through piece by piece.

use super::{
    ErrorFields, FrontendTag, ProtocolError, TxStatus, MAX_INSPECTED_LEN, MAX_MESSAGE_LEN,
};

/// Reads a message header (tag, total length including the tag byte) if 5 bytes are there.
fn header(buf: &[u8]) -> Result<Option<(u8, usize)>, ProtocolError> {
    let Some(&[tag, a, b, c, d]) = buf.get(..5) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if !(4..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(ProtocolError::BadLength {
            tag: char::from(tag),
            len,
        });
    }
    Ok(Some((tag, len + 1)))
}

/// What the next bytes of a client stream are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrontendEvent {
    /// A new message of this type starts here; the following `Pass` events cover it.
    Start(FrontendTag),
    /// Forward this many bytes as they are.
    Pass(usize),
    /// Not enough bytes to say more.
    NeedMore,
}

/// Walks the client→server byte stream. At a message boundary the caller may `peek` at the
/// next header and then either `pass` the message through or edit it in its buffer.
#[derive(Debug)]
pub(crate) struct FrontendScanner {
    /// Bytes of the current message not yet passed.
    remaining: usize,
    /// Longest message body accepted (`limits.max_message_size`).
    max: usize,
}

/// PostgreSQL's limit.
impl Default for FrontendScanner {
    fn default() -> Self {
        Self {
            remaining: 0,
            max: MAX_MESSAGE_LEN,
        }
    }
}

impl FrontendScanner {
    /// A scanner that refuses messages whose body (length word included, as PostgreSQL
    /// counts) is longer than `max` bytes.
    pub(crate) fn with_max(max: usize) -> Self {
        Self {
            remaining: 0,
            max: max.min(MAX_MESSAGE_LEN),
        }
    }

    /// The next message's type and total length (tag byte included), if its header is
    /// in `buf` and the scanner is between messages.
    pub(crate) fn peek(&self, buf: &[u8]) -> Result<Option<(FrontendTag, usize)>, ProtocolError> {
        if self.remaining > 0 {
            return Ok(None);
        }
        let Some((tag, total)) = header(buf)? else {
            return Ok(None);
        };
        if total - 1 > self.max {
            return Err(ProtocolError::TooLarge {
                tag: char::from(tag),
                len: total - 1,
                max: self.max,
            });
        }
        Ok(Some((FrontendTag::try_from(tag)?, total)))
    }

    /// Starts passing a message of `total` bytes through untouched.
    pub(crate) fn pass(&mut self, total: usize) {
        self.remaining = total;
    }

    /// How many of the `available` bytes belong to the message being passed (and are
    /// now counted as passed).
    pub(crate) fn passable(&mut self, available: usize) -> usize {
        let n = self.remaining.min(available);
        self.remaining -= n;
        n
    }

    /// `peek` + `pass` in one step, for callers that forward everything.
    pub(crate) fn next(&mut self, buf: &[u8]) -> Result<FrontendEvent, ProtocolError> {
        if self.remaining > 0 {
            return Ok(match self.passable(buf.len()) {
                0 => FrontendEvent::NeedMore,
                n => FrontendEvent::Pass(n),
            });
        }
        let Some((tag, total)) = self.peek(buf)? else {
            return Ok(FrontendEvent::NeedMore);
        };
        self.pass(total);
        Ok(FrontendEvent::Start(tag))
    }

    /// Whether the scanner is between messages.
    pub(crate) fn at_boundary(&self) -> bool {
        self.remaining == 0
    }
}

/// Backend message types the relay tells apart (the rest are `Other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendTag {
    /// `1`
    ParseComplete,
    /// `2`
    BindComplete,
    /// `3`
    CloseComplete,
    /// `t`
    ParameterDescription,
    /// `T`
    RowDescription,
    /// `n`
    NoData,
    /// `C`
    CommandComplete,
    /// `I`
    EmptyQueryResponse,
    /// `s`
    PortalSuspended,
    /// `N`
    NoticeResponse,
    /// `A`
    NotificationResponse,
    /// `G`: the server now reads COPY data (and ignores Sync until CopyDone/CopyFail).
    CopyInResponse,
    /// Anything else (DataRow, COPY messages, FunctionCallResponse, ...).
    Other,
}

impl BackendTag {
    fn from_byte(b: u8) -> Self {
        match b {
            b'1' => Self::ParseComplete,
            b'2' => Self::BindComplete,
            b'3' => Self::CloseComplete,
            b't' => Self::ParameterDescription,
            b'T' => Self::RowDescription,
            b'n' => Self::NoData,
            b'C' => Self::CommandComplete,
            b'I' => Self::EmptyQueryResponse,
            b's' => Self::PortalSuspended,
            b'N' => Self::NoticeResponse,
            b'A' => Self::NotificationResponse,
            b'G' => Self::CopyInResponse,
            _ => Self::Other,
        }
    }
}

/// What the next bytes of a server stream are. Events are small and copied: a decoded
/// message is only a span of the buffer, decoded by whoever needs its fields
/// (`parameter_status`, `error_fields`). A ParameterStatus is checked here to be well
/// formed (without copying anything); an ErrorResponse is checked by its one decoding,
/// in the relay, which copies its fields (decoding it here too did that twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendEvent {
    /// A message weir does not decode starts here and is not all in the buffer yet; `Pass`
    /// events follow for its bytes.
    Start {
        /// Its type.
        tag: BackendTag,
        /// Its total length.
        len: usize,
    },
    /// A whole message weir does not decode (no `Pass` events follow).
    Whole {
        /// Its type.
        tag: BackendTag,
        /// Bytes the message takes.
        len: usize,
    },
    /// Bytes of the message started last (forward or drop them as decided at `Start`).
    Pass(usize),
    /// A whole ReadyForQuery of `len` bytes.
    ReadyForQuery {
        /// Transaction status after the command.
        status: TxStatus,
        /// Bytes the message takes.
        len: usize,
    },
    /// A whole ParameterStatus (`parameter_status` reads it).
    ParameterStatus {
        /// Bytes the message takes.
        len: usize,
    },
    /// A whole CommandComplete; its tag is at bytes `5..len - 1` of the event's span.
    CommandComplete {
        /// Bytes the message takes.
        len: usize,
    },
    /// A whole ErrorResponse (`error_fields` reads it).
    Error {
        /// Bytes the message takes.
        len: usize,
    },
    /// Not enough bytes to say more.
    NeedMore,
}

impl BackendEvent {
    /// How many bytes at the front this event covers.
    pub(crate) fn len(&self) -> usize {
        match *self {
            Self::Pass(n) => n,
            Self::Whole { len, .. }
            | Self::ReadyForQuery { len, .. }
            | Self::ParameterStatus { len }
            | Self::CommandComplete { len }
            | Self::Error { len } => len,
            Self::Start { .. } | Self::NeedMore => 0,
        }
    }
}

/// The name and value of a whole ParameterStatus message (tag and length included), as
/// the scanner reported it.
pub(crate) fn parameter_status(msg: &[u8]) -> Result<(&str, &str), ProtocolError> {
    let mut rest = msg.get(5..).unwrap_or_default();
    let mut field = || {
        super::startup::take_str(&mut rest).ok_or(ProtocolError::Malformed {
            what: "ParameterStatus",
        })
    };
    Ok((field()?, field()?))
}

/// The fields of a whole ErrorResponse message (tag and length included), as the scanner
/// reported it.
pub(crate) fn error_fields(msg: &[u8]) -> Result<ErrorFields, ProtocolError> {
    ErrorFields::parse(msg.get(5..).unwrap_or_default())
}

/// Walks the server→client byte stream.
#[derive(Debug, Default)]
pub(crate) struct BackendScanner {
    /// Bytes of the current (uninspected) message not yet passed.
    remaining: usize,
}

impl BackendScanner {
    /// Whether the scanner is between messages: no message has been started and not
    /// finished (an uninspected message is passed on piece by piece).
    pub(crate) fn at_boundary(&self) -> bool {
        self.remaining == 0
    }

    /// Looks at the unscanned bytes `buf`. Inspected messages are returned only when whole.
    pub(crate) fn next(&mut self, buf: &[u8]) -> Result<BackendEvent, ProtocolError> {
        if self.remaining > 0 {
            if buf.is_empty() {
                return Ok(BackendEvent::NeedMore);
            }
            let n = self.remaining.min(buf.len());
            self.remaining -= n;
            return Ok(BackendEvent::Pass(n));
        }
        let Some((tag, total)) = header(buf)? else {
            return Ok(BackendEvent::NeedMore);
        };
        if !matches!(tag, b'Z' | b'S' | b'E' | b'C') {
            let tag = BackendTag::from_byte(tag);
            if total <= buf.len() {
                return Ok(BackendEvent::Whole { tag, len: total });
            }
            self.remaining = total;
            return Ok(BackendEvent::Start { tag, len: total });
        }
        if total > MAX_INSPECTED_LEN {
            return Err(ProtocolError::BadLength {
                tag: char::from(tag),
                len: total - 1,
            });
        }
        let Some(msg) = buf.get(..total) else {
            return Ok(BackendEvent::NeedMore);
        };
        Ok(match tag {
            b'Z' => match msg {
                &[_, _, _, _, _, status] => BackendEvent::ReadyForQuery {
                    status: TxStatus::from_byte(status)?,
                    len: total,
                },
                _ => {
                    return Err(ProtocolError::Malformed {
                        what: "ReadyForQuery",
                    })
                }
            },
            b'C' => BackendEvent::CommandComplete { len: total },
            b'S' => {
                parameter_status(msg)?;
                BackendEvent::ParameterStatus { len: total }
            }
            _ => BackendEvent::Error { len: total },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontend_stream_in_pieces() {
        let stream = b"Q\0\0\0\x0dSELECT 1\0S\0\0\0\x04";
        let mut sc = FrontendScanner::default();
        assert_eq!(sc.next(&stream[..3]).expect("ok"), FrontendEvent::NeedMore);
        assert_eq!(
            sc.next(&stream[..]).expect("ok"),
            FrontendEvent::Start(FrontendTag::Query)
        );
        assert_eq!(sc.next(&stream[..6]).expect("ok"), FrontendEvent::Pass(6));
        assert_eq!(sc.next(&stream[6..]).expect("ok"), FrontendEvent::Pass(8));
        assert!(sc.at_boundary());
        assert_eq!(
            sc.next(&stream[14..]).expect("ok"),
            FrontendEvent::Start(FrontendTag::Sync)
        );
        assert_eq!(sc.next(&stream[14..]).expect("ok"), FrontendEvent::Pass(5));
        assert!(sc.next(b"Z\0\0\0\x04").is_err());
        assert!(FrontendScanner::default().next(b"Q\0\0\0\x01").is_err());
    }

    #[test]
    fn backend_stream_inspects_only_what_matters() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"D\0\0\0\x0a\0\x01\0\0\0\0"); // DataRow, 11 bytes
        stream.extend_from_slice(b"S\0\0\0\x0eTimeZone\0\0"); // 15 bytes, empty value
        stream.extend_from_slice(b"C\0\0\0\x08SET\0"); // 9 bytes
        stream.extend_from_slice(b"Z\0\0\0\x05I");
        let mut sc = BackendScanner::default();
        assert_eq!(
            sc.next(&stream[..7]).expect("ok"),
            BackendEvent::Start {
                tag: BackendTag::Other,
                len: 11
            }
        );
        assert_eq!(sc.next(&stream[..7]).expect("ok"), BackendEvent::Pass(7));
        assert_eq!(sc.next(&stream[7..]).expect("ok"), BackendEvent::Pass(4));
        assert_eq!(
            BackendScanner::default().next(&stream).expect("ok"),
            BackendEvent::Whole {
                tag: BackendTag::Other,
                len: 11
            }
        );
        assert_eq!(
            sc.next(&stream[11..]).expect("ok"),
            BackendEvent::ParameterStatus { len: 15 }
        );
        assert_eq!(
            parameter_status(&stream[11..26]).expect("ok"),
            ("TimeZone", "")
        );
        assert_eq!(
            sc.next(&stream[26..30]).expect("ok"),
            BackendEvent::NeedMore
        );
        assert_eq!(
            sc.next(&stream[26..]).expect("ok"),
            BackendEvent::CommandComplete { len: 9 }
        );
        assert_eq!(
            sc.next(&stream[35..]).expect("ok"),
            BackendEvent::ReadyForQuery {
                status: TxStatus::Idle,
                len: 6
            }
        );
        assert!(BackendScanner::default().next(b"S\0\0\0\x08abc\0").is_err());
        assert!(BackendScanner::default().next(b"Z\0\0\0\x06II").is_err());
    }
}
