//! A client that speaks the PostgreSQL protocol byte by byte, for tests that must send what
//! no well-behaved driver would: bad lengths, wrong message order, half messages.

use std::collections::HashMap;
use std::time::Duration;

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single read may wait before the test fails.
pub const READ_LIMIT: Duration = Duration::from_secs(10);

/// Protocol version 3.0 as written in a StartupMessage.
pub const PROTOCOL_3_0: u32 = 3 << 16;
/// The SSLRequest code.
pub const SSL_REQUEST: u32 = 80_877_103;
/// The GSSENCRequest code.
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// The CancelRequest code.
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// One backend message.
#[derive(Debug, Clone)]
pub struct Message {
    /// The type byte.
    pub tag: u8,
    /// The body after the length word.
    pub body: Vec<u8>,
}

impl Message {
    /// The fields of an ErrorResponse or NoticeResponse, keyed by field type ('C', 'M', ...).
    pub fn fields(&self) -> HashMap<char, String> {
        assert!(
            matches!(self.tag, b'E' | b'N'),
            "not an error or notice: {self:?}"
        );
        let mut out = HashMap::new();
        let mut rest = &self.body[..];
        while let Some((&kind, tail)) = rest.split_first() {
            if kind == 0 {
                break;
            }
            let end = tail
                .iter()
                .position(|&b| b == 0)
                .expect("NUL-terminated field");
            out.insert(
                char::from(kind),
                String::from_utf8_lossy(&tail[..end]).into_owned(),
            );
            rest = &tail[end + 1..];
        }
        out
    }

    /// The code of an Authentication ('R') message.
    pub fn auth_code(&self) -> i32 {
        assert_eq!(self.tag, b'R', "not an authentication request: {self:?}");
        i32::from_be_bytes(self.body[..4].try_into().expect("4 bytes"))
    }
}

/// A StartupMessage (or SSLRequest etc. with no params) for protocol `version`.
pub fn startup(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    if !params.is_empty() {
        body.push(0);
    }
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A tagged message with a correct length.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// The start of a Query message that announces a body of `len` bytes (length field
/// included, as on the wire) but carries only `first`: the rest is sent later, or never.
pub fn query_head(len: u32, first: &[u8]) -> Vec<u8> {
    let mut out = vec![b'Q'];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(first);
    out
}

/// A simple Query message.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// A raw connection to weir.
pub struct Raw {
    /// The socket.
    pub stream: TcpStream,
}

impl Raw {
    /// Connects to weir on 127.0.0.1:`port`.
    pub async fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("TCP connect to weir");
        stream.set_nodelay(true).expect("nodelay");
        Raw { stream }
    }

    /// Writes `bytes` in one write.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to weir");
    }

    /// Like `send`, but a failure (weir already closed) is not an error.
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Reads exactly `n` bytes; `None` at end of stream or connection reset.
    pub async fn read_bytes(&mut self, n: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; n];
        let read = tokio::time::timeout(READ_LIMIT, self.stream.read_exact(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("weir sent nothing for {READ_LIMIT:?}"));
        read.ok().map(|_| buf)
    }

    /// Reads the next message; `None` when weir closed the connection.
    pub async fn read_message(&mut self) -> Option<Message> {
        let header = self.read_bytes(5).await?;
        let len = u32::from_be_bytes(header[1..5].try_into().expect("4 bytes")) as usize;
        assert!(
            (4..64 * 1024 * 1024).contains(&len),
            "implausible message length {len} for tag {:?}",
            char::from(header[0])
        );
        let body = self.read_bytes(len - 4).await?;
        Some(Message {
            tag: header[0],
            body,
        })
    }

    /// Reads the next message, which must exist.
    pub async fn expect_message(&mut self) -> Message {
        self.read_message()
            .await
            .expect("a message, but weir closed the connection")
    }

    /// Reads messages until ReadyForQuery; returns everything before it.
    pub async fn until_ready(&mut self) -> Vec<Message> {
        let mut seen = Vec::new();
        loop {
            let m = self.expect_message().await;
            if m.tag == b'Z' {
                return seen;
            }
            seen.push(m);
        }
    }

    /// Asserts weir closes the connection without sending anything more.
    pub async fn expect_closed(&mut self) {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(READ_LIMIT, self.stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("weir kept the connection open for {READ_LIMIT:?}"));
        match read {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!(
                "expected the connection to close, got {n} more bytes: {:?}",
                &buf[..n]
            ),
        }
    }

    /// Asserts the next message is a FATAL ErrorResponse with `code`, followed by the close.
    /// Returns the fields.
    pub async fn expect_fatal(&mut self, code: &str) -> HashMap<char, String> {
        let m = self.expect_message().await;
        assert_eq!(
            char::from(m.tag),
            'E',
            "expected an ErrorResponse, got {m:?}"
        );
        let fields = m.fields();
        assert_eq!(
            fields.get(&'C').map(String::as_str),
            Some(code),
            "{fields:?}"
        );
        assert_eq!(
            fields.get(&'S').map(String::as_str),
            Some("FATAL"),
            "{fields:?}"
        );
        assert!(
            fields.get(&'M').is_some_and(|m| !m.is_empty()),
            "{fields:?}"
        );
        self.expect_closed().await;
        fields
    }

    /// Runs the SCRAM-SHA-256 exchange after the server asked for SASL; ends after
    /// AuthenticationSASLFinal (the caller reads AuthenticationOk onward).
    pub async fn scram(&mut self, password: &str) {
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&(scram.message().len() as i32).to_be_bytes());
        body.extend_from_slice(scram.message());
        self.send(&message(b'p', &body)).await;
        let m = self.expect_message().await;
        assert_eq!(m.auth_code(), 11, "expected SASLContinue: {m:?}");
        scram.update(&m.body[4..]).expect("server-first-message");
        self.send(&message(b'p', scram.message())).await;
        let m = self.expect_message().await;
        assert_eq!(m.auth_code(), 12, "expected SASLFinal: {m:?}");
        scram.finish(&m.body[4..]).expect("server signature");
    }

    /// Connects to weir on 127.0.0.1:`port` with a receive buffer of about `rcvbuf` bytes
    /// (set before connecting, so the advertised window stays small): a client that stops
    /// reading pushes back on weir after a few KiB instead of the kernel's megabytes.
    pub async fn connect_small_window(port: u16, rcvbuf: u32) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().expect("TCP socket");
        socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
        let stream = socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("TCP connect to weir");
        stream.set_nodelay(true).expect("nodelay");
        Raw { stream }
    }

    /// Connects and logs in as `user` with SCRAM; returns once ReadyForQuery arrived.
    pub async fn login(port: u16, user: &str, password: &str, db: &str) -> Raw {
        Raw::connect(port).await.log_in(user, password, db).await
    }

    /// Logs in as `user` with SCRAM on this fresh connection; returns once ReadyForQuery
    /// arrived.
    pub async fn log_in(mut self, user: &str, password: &str, db: &str) -> Raw {
        self.send(&startup(PROTOCOL_3_0, &[("user", user), ("database", db)]))
            .await;
        let m = self.expect_message().await;
        assert_eq!(m.auth_code(), 10, "expected AuthenticationSASL: {m:?}");
        self.scram(password).await;
        self.finish_login().await;
        self
    }

    /// Reads AuthenticationOk, the parameters and BackendKeyData, up to ReadyForQuery.
    pub async fn finish_login(&mut self) {
        let m = self.expect_message().await;
        assert_eq!(m.auth_code(), 0, "expected AuthenticationOk: {m:?}");
        let rest = self.until_ready().await;
        assert!(
            rest.iter().any(|m| m.tag == b'K'),
            "no BackendKeyData: {rest:?}"
        );
        assert!(
            rest.iter().all(|m| matches!(m.tag, b'S' | b'K' | b'N')),
            "unexpected messages during login: {rest:?}"
        );
    }

    /// Sends a simple query and returns the messages up to ReadyForQuery.
    pub async fn simple_query(&mut self, sql: &str) -> Vec<Message> {
        self.send(&query(sql)).await;
        self.until_ready().await
    }
}

/// The text of the first column of the DataRows among `messages`.
pub fn first_column(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.tag == b'D')
        .map(|m| {
            let len = i32::from_be_bytes(m.body[2..6].try_into().expect("4 bytes"));
            assert!(len >= 0, "NULL in first column");
            String::from_utf8_lossy(&m.body[6..6 + len as usize]).into_owned()
        })
        .collect()
}
