//! Whole-message framing: read the header, keep the body as `Bytes`.

use bytes::{Bytes, BytesMut};

use super::ProtocolError;

/// One protocol message exactly as it crossed the wire (tag + length + body).
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// Invariant: at least 5 bytes, and `raw[1..5]` is the big-endian length of `raw[1..]`.
    raw: Bytes,
}

#[allow(clippy::indexing_slicing)] // `decode` guarantees raw.len() >= 5
impl Frame {
    /// The message type byte.
    pub(crate) fn tag(&self) -> u8 {
        self.raw[0]
    }

    /// The body after the length word.
    pub(crate) fn body(&self) -> &[u8] {
        &self.raw[5..]
    }
}

/// Takes one complete message off the front of `buf`, or `Ok(None)` until one is complete.
/// Never consumes a partial message; checks the length before reserving memory.
pub(crate) fn decode(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, ProtocolError> {
    let Some(&[tag, a, b, c, d]) = buf.get(..5) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if !(4..=max_len).contains(&len) {
        return Err(ProtocolError::BadLength {
            tag: char::from(tag),
            len,
        });
    }
    let total = 1 + len;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    Ok(Some(Frame {
        raw: buf.split_to(total).freeze(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_whole_message_and_rejects_bad_lengths() {
        let mut buf = BytesMut::from(&b"Q\0\0\0\x09SEL"[..]);
        assert!(decode(&mut buf, 100).expect("ok").is_none());
        buf.extend_from_slice(b"1\0");
        let f = decode(&mut buf, 100).expect("ok").expect("frame");
        assert_eq!(f.tag(), b'Q');
        assert_eq!(f.body(), b"SEL1\0");
        assert!(buf.is_empty());
        let mut bad = BytesMut::from(&b"Q\0\0\0\x02"[..]);
        assert!(decode(&mut bad, 100).is_err());
        let mut huge = BytesMut::from(&b"Q\x7f\0\0\0"[..]);
        assert!(decode(&mut huge, 100).is_err());
    }
}
