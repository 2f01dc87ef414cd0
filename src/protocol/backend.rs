//! Messages weir builds itself (toward clients and servers) and the backend messages it
//! decodes during server login. Relayed traffic never passes through here: see `scan`.

use bytes::{BufMut, Bytes, BytesMut};
use postgres_protocol::message::{backend, frontend};

use super::startup::take_cstr;
use super::ProtocolError;

/// Transaction status reported by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InBlock,
    /// `E`: in a failed transaction block.
    Failed,
}

impl TxStatus {
    /// Decodes the status byte of a ReadyForQuery body.
    pub(crate) fn from_byte(b: u8) -> Result<Self, ProtocolError> {
        match b {
            b'I' => Ok(Self::Idle),
            b'T' => Ok(Self::InBlock),
            b'E' => Ok(Self::Failed),
            _ => Err(ProtocolError::Malformed {
                what: "ReadyForQuery",
            }),
        }
    }

    fn byte(self) -> u8 {
        match self {
            Self::Idle => b'I',
            Self::InBlock => b'T',
            Self::Failed => b'E',
        }
    }
}

/// Severity of an error or notice weir sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorSeverity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends after this message.
    Fatal,
    /// A notice: nothing failed.
    Warning,
}

impl ErrorSeverity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
            Self::Warning => "WARNING",
        }
    }
}

/// The fields of an ErrorResponse or NoticeResponse that weir looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ErrorFields {
    /// Non-localized severity (`V`, or `S` when `V` is absent).
    pub(crate) severity: String,
    /// SQLSTATE (`C`).
    pub(crate) code: String,
    /// Primary message (`M`).
    pub(crate) message: String,
}

impl ErrorFields {
    /// The SQLSTATE, or `fallback` when the server sent none that is well formed (five
    /// digits or capital letters): weir never passes an empty or odd code on.
    pub(crate) fn code_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        let valid = self.code.len() == 5
            && self
                .code
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
        if valid {
            &self.code
        } else {
            fallback
        }
    }

    /// Decodes the fields of an ErrorResponse/NoticeResponse body.
    pub(crate) fn parse(mut body: &[u8]) -> Result<Self, ProtocolError> {
        let mut out = Self::default();
        loop {
            let Some((&kind, rest)) = body.split_first() else {
                return Err(ProtocolError::Malformed {
                    what: "ErrorResponse",
                });
            };
            body = rest;
            if kind == 0 {
                break;
            }
            let value = take_cstr(&mut body).ok_or(ProtocolError::Malformed {
                what: "ErrorResponse",
            })?;
            match kind {
                b'V' => out.severity = value,
                b'S' if out.severity.is_empty() => out.severity = value,
                b'C' => out.code = value,
                b'M' => out.message = value,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Whether the server ends the session after this error.
    pub(crate) fn is_fatal(&self) -> bool {
        matches!(self.severity.as_str(), "FATAL" | "PANIC")
    }
}

/// What a server asks for during login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthRequest {
    /// Authentication succeeded.
    Ok,
    /// Send the password in clear.
    Cleartext,
    /// Send an md5 hash with this salt.
    Md5([u8; 4]),
    /// Start SASL with one of these mechanisms.
    Sasl(Vec<String>),
    /// SASL server-first (or later) data.
    SaslContinue(Bytes),
    /// SASL server-final data.
    SaslFinal(Bytes),
    /// A method weir cannot answer (Kerberos, GSS, SSPI).
    Unsupported(i32),
}

/// A backend message as weir sees it while logging in to a server.
#[derive(Debug)]
pub(crate) enum BackendMessage {
    /// An Authentication* message.
    Auth(AuthRequest),
    /// A run-time parameter the server reports.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Its value.
        value: String,
    },
    /// The server's cancel keys.
    BackendKeyData {
        /// Server process id.
        process_id: i32,
        /// Server secret key.
        secret_key: i32,
    },
    /// Login finished (or a query ended).
    ReadyForQuery(TxStatus),
    /// The server refused something.
    Error(ErrorFields),
    /// Anything else weir does not need during login.
    Other,
}

impl BackendMessage {
    /// Decodes one backend message from the front of `buf`; `Ok(None)` until complete.
    pub(crate) fn decode(buf: &mut BytesMut) -> Result<Option<Self>, ProtocolError> {
        if let Some(&[tag, a, b, c, d]) = buf.get(..5) {
            let len = u32::from_be_bytes([a, b, c, d]) as usize;
            if !(4..=super::MAX_INSPECTED_LEN).contains(&len) {
                return Err(ProtocolError::BadLength {
                    tag: char::from(tag),
                    len,
                });
            }
            if tag == b'E' {
                // postgres-protocol does not expose the raw fields; ErrorFields reads them.
                if buf.len() < len + 1 {
                    return Ok(None);
                }
                let msg = buf.split_to(len + 1);
                let body = msg.get(5..).unwrap_or_default();
                return Ok(Some(Self::Error(ErrorFields::parse(body)?)));
            }
        }
        let malformed = |_| ProtocolError::Malformed {
            what: "backend message",
        };
        let Some(msg) = backend::Message::parse(buf).map_err(malformed)? else {
            return Ok(None);
        };
        use backend::Message as M;
        Ok(Some(match msg {
            M::AuthenticationOk => Self::Auth(AuthRequest::Ok),
            M::AuthenticationCleartextPassword => Self::Auth(AuthRequest::Cleartext),
            M::AuthenticationMd5Password(b) => Self::Auth(AuthRequest::Md5(b.salt())),
            M::AuthenticationSasl(b) => {
                let mut mechs = Vec::new();
                let mut it = b.mechanisms();
                while let Some(m) =
                    fallible_iterator::FallibleIterator::next(&mut it).map_err(malformed)?
                {
                    mechs.push(m.to_owned());
                }
                Self::Auth(AuthRequest::Sasl(mechs))
            }
            M::AuthenticationSaslContinue(b) => {
                Self::Auth(AuthRequest::SaslContinue(Bytes::copy_from_slice(b.data())))
            }
            M::AuthenticationSaslFinal(b) => {
                Self::Auth(AuthRequest::SaslFinal(Bytes::copy_from_slice(b.data())))
            }
            M::AuthenticationKerberosV5 => Self::Auth(AuthRequest::Unsupported(2)),
            M::AuthenticationScmCredential => Self::Auth(AuthRequest::Unsupported(6)),
            M::AuthenticationGss => Self::Auth(AuthRequest::Unsupported(7)),
            M::AuthenticationSspi => Self::Auth(AuthRequest::Unsupported(9)),
            M::AuthenticationGssContinue(_) => Self::Auth(AuthRequest::Unsupported(8)),
            M::ParameterStatus(b) => Self::ParameterStatus {
                name: b.name().map_err(malformed)?.to_owned(),
                value: b.value().map_err(malformed)?.to_owned(),
            },
            M::BackendKeyData(b) => Self::BackendKeyData {
                process_id: b.process_id(),
                secret_key: b.secret_key(),
            },
            M::ReadyForQuery(b) => Self::ReadyForQuery(TxStatus::from_byte(b.status())?),
            _ => Self::Other,
        }))
    }
}

/// Whether column `i` is wanted in binary: Bind's result formats are none (all text),
/// one (for every column), or one per column.
fn wants_binary(binary: &[bool], i: usize) -> bool {
    match binary {
        [] => false,
        [all] => *all,
        each => each.get(i).copied().unwrap_or(false),
    }
}

/// Whether weir writes type `oid` in binary (`encode_binary`).
fn has_binary_form(oid: u32) -> bool {
    matches!(oid, 20 | 23 | 25 | 1700)
}

/// Writes `text` in the binary format of type `oid` (one `has_binary_form` accepts). A
/// number out of the type's range is clamped to it, and text that is no number becomes 0:
/// the column was announced binary, so a text fallback would corrupt the row.
fn encode_binary(out: &mut BytesMut, oid: u32, text: &str) {
    let n = text.trim().parse::<i128>().unwrap_or(0);
    match oid {
        23 => out.put_i32(i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX })),
        20 => out.put_i64(i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })),
        1700 => numeric_binary(out, n),
        _ => out.put_slice(text.as_bytes()),
    }
}

/// A whole number in PostgreSQL's binary numeric format: digit count, weight, sign,
/// display scale, then base-10000 digits, most significant first, trailing zeros dropped.
fn numeric_binary(out: &mut BytesMut, v: i128) {
    let mut digits = Vec::new();
    let mut n = v.unsigned_abs();
    while n > 0 {
        digits.push((n % 10_000) as i16);
        n /= 10_000;
    }
    digits.reverse();
    let weight = digits.len().saturating_sub(1) as i16;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    out.put_i16(digits.len() as i16);
    out.put_i16(weight);
    out.put_u16(if v < 0 { 0x4000 } else { 0 });
    out.put_i16(0);
    for d in digits {
        out.put_i16(d);
    }
}

/// Takes a DataRow off the front of `buf` (text columns, NULL as `None`) if one is there whole.
pub(crate) fn decode_data_row(
    buf: &mut BytesMut,
) -> Result<Option<Vec<Option<String>>>, ProtocolError> {
    let Some(&[b'D', a, b, c, d]) = buf.get(..5) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if !(6..=super::MAX_INSPECTED_LEN).contains(&len) {
        return Err(ProtocolError::BadLength { tag: 'D', len });
    }
    if buf.len() < len + 1 {
        return Ok(None);
    }
    let msg = buf.split_to(len + 1);
    let malformed = || ProtocolError::Malformed { what: "DataRow" };
    let mut body = msg.get(5..).ok_or_else(malformed)?;
    let (count, rest) = body.split_first_chunk::<2>().ok_or_else(malformed)?;
    body = rest;
    let mut row = Vec::with_capacity(usize::from(u16::from_be_bytes(*count)));
    for _ in 0..u16::from_be_bytes(*count) {
        let (n, rest) = body.split_first_chunk::<4>().ok_or_else(malformed)?;
        body = rest;
        let n = i32::from_be_bytes(*n);
        if n < 0 {
            row.push(None);
            continue;
        }
        let (value, rest) = body.split_at_checked(n as usize).ok_or_else(malformed)?;
        body = rest;
        row.push(Some(String::from_utf8_lossy(value).into_owned()));
    }
    Ok(Some(row))
}

/// Builders for every message weir writes itself, appended to a caller-owned buffer.
pub(crate) struct MessageBuilder;

impl MessageBuilder {
    fn tagged(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
        buf.put_u8(tag);
        let at = buf.len();
        buf.put_u32(0);
        body(buf);
        let len = (buf.len() - at) as u32;
        if let Some(slot) = buf.get_mut(at..at + 4) {
            slot.copy_from_slice(&len.to_be_bytes());
        }
    }

    fn cstr(buf: &mut BytesMut, s: &str) {
        // A NUL inside would end the field early: each becomes a space. Written piece by
        // piece, as this runs for every name a Bind or Parse carries and every
        // ParameterStatus of a login (a `replace` allocated a copy each time). The strings
        // are short: a plain search is as quick as a vectorised one here.
        let mut rest = s.as_bytes();
        while let Some(nul) = rest.iter().position(|&b| b == 0) {
            let (piece, after) = rest.split_at(nul);
            buf.put_slice(piece);
            buf.put_u8(b' ');
            rest = after.get(1..).unwrap_or_default();
        }
        buf.put_slice(rest);
        buf.put_u8(0);
    }

    /// ErrorResponse (or NoticeResponse for `Warning`) with severity, SQLSTATE and message.
    pub(crate) fn error(buf: &mut BytesMut, severity: ErrorSeverity, code: &str, message: &str) {
        let tag = if severity == ErrorSeverity::Warning {
            b'N'
        } else {
            b'E'
        };
        let severity = severity.as_str();
        let fields = [
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', message),
        ];
        Self::fields(buf, tag, &fields);
    }

    /// NoticeResponse (severity NOTICE, SQLSTATE 00000) with a message and a detail.
    pub(crate) fn notice(buf: &mut BytesMut, message: &str, detail: &str) {
        let fields = [
            (b'S', "NOTICE"),
            (b'V', "NOTICE"),
            (b'C', "00000"),
            (b'M', message),
            (b'D', detail),
        ];
        Self::fields(buf, b'N', &fields);
    }

    /// An ErrorResponse or NoticeResponse body: typed fields, then the terminator.
    fn fields(buf: &mut BytesMut, tag: u8, fields: &[(u8, &str)]) {
        Self::tagged(buf, tag, |b| {
            for (kind, value) in fields {
                b.put_u8(*kind);
                Self::cstr(b, value);
            }
            b.put_u8(0);
        });
    }

    /// ParseComplete.
    pub(crate) fn parse_complete(buf: &mut BytesMut) {
        Self::tagged(buf, b'1', |_| {});
    }

    /// BindComplete.
    pub(crate) fn bind_complete(buf: &mut BytesMut) {
        Self::tagged(buf, b'2', |_| {});
    }

    /// CloseComplete.
    pub(crate) fn close_complete(buf: &mut BytesMut) {
        buf.extend_from_slice(&Self::CLOSE_COMPLETE);
    }

    /// NoData: the statement or portal returns no rows.
    pub(crate) fn no_data(buf: &mut BytesMut) {
        Self::tagged(buf, b'n', |_| {});
    }

    /// ParameterDescription of a statement that takes no parameters.
    pub(crate) fn no_parameters(buf: &mut BytesMut) {
        Self::tagged(buf, b't', |b| b.put_i16(0));
    }

    /// EmptyQueryResponse.
    pub(crate) fn empty_query(buf: &mut BytesMut) {
        Self::tagged(buf, b'I', |_| {});
    }

    /// AuthenticationOk.
    pub(crate) fn auth_ok(buf: &mut BytesMut) {
        Self::tagged(buf, b'R', |b| b.put_i32(0));
    }

    /// AuthenticationMD5Password with the salt to hash with.
    pub(crate) fn auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
        Self::tagged(buf, b'R', |b| {
            b.put_i32(5);
            b.put_slice(&salt);
        });
    }

    /// AuthenticationSASL offering SCRAM-SHA-256, and with `plus` first
    /// SCRAM-SHA-256-PLUS (channel binding), as PostgreSQL orders them over TLS.
    pub(crate) fn auth_sasl_scram(buf: &mut BytesMut, plus: bool) {
        Self::tagged(buf, b'R', |b| {
            b.put_i32(10);
            if plus {
                Self::cstr(b, "SCRAM-SHA-256-PLUS");
            }
            Self::cstr(b, "SCRAM-SHA-256");
            b.put_u8(0);
        });
    }

    /// AuthenticationSASLContinue (code 11) or AuthenticationSASLFinal (code 12).
    pub(crate) fn auth_sasl_data(buf: &mut BytesMut, final_message: bool, data: &[u8]) {
        Self::tagged(buf, b'R', |b| {
            b.put_i32(if final_message { 12 } else { 11 });
            b.put_slice(data);
        });
    }

    /// ParameterStatus.
    pub(crate) fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
        Self::tagged(buf, b'S', |b| {
            Self::cstr(b, name);
            Self::cstr(b, value);
        });
    }

    /// BackendKeyData with weir's own keys for this client.
    pub(crate) fn backend_key_data(buf: &mut BytesMut, process_id: i32, secret_key: i32) {
        Self::tagged(buf, b'K', |b| {
            b.put_i32(process_id);
            b.put_i32(secret_key);
        });
    }

    /// RowDescription of text-format columns, each `(name, type oid)`.
    pub(crate) fn row_description(buf: &mut BytesMut, columns: &[(&str, u32)]) {
        Self::row_description_formats(buf, columns, &[]);
    }

    /// RowDescription of a portal whose Bind asked for `binary` results (see
    /// `typed_data_row` for what it means and which types have a binary form).
    pub(crate) fn row_description_formats(
        buf: &mut BytesMut,
        columns: &[(&str, u32)],
        binary: &[bool],
    ) {
        Self::tagged(buf, b'T', |b| {
            b.put_i16(i16::try_from(columns.len()).unwrap_or(i16::MAX));
            for (i, (name, oid)) in columns.iter().enumerate() {
                Self::cstr(b, name);
                b.put_i32(0); // no table
                b.put_i16(0); // no column number
                b.put_u32(*oid);
                b.put_i16(match oid {
                    23 => 4, // int4
                    20 => 8, // int8
                    _ => -1, // variable length
                });
                b.put_i32(-1); // no type modifier
                b.put_i16(i16::from(wants_binary(binary, i) && has_binary_form(*oid)));
            }
        });
    }

    /// DataRow of text values; `None` is NULL.
    pub(crate) fn data_row(buf: &mut BytesMut, values: &[Option<&str>]) {
        Self::typed_data_row(buf, values, &[], &[]);
    }

    /// DataRow of values given as text, each sent in binary where `binary` asks (one flag
    /// for all columns, or one per column) and its type (`oids`) has a binary form weir
    /// writes: int4, int8, numeric (whole numbers) and text.
    pub(crate) fn typed_data_row<S: AsRef<str>>(
        buf: &mut BytesMut,
        values: &[Option<S>],
        oids: &[u32],
        binary: &[bool],
    ) {
        Self::tagged(buf, b'D', |b| {
            b.put_i16(i16::try_from(values.len()).unwrap_or(i16::MAX));
            for (i, v) in values.iter().enumerate() {
                let Some(text) = v.as_ref().map(AsRef::as_ref) else {
                    b.put_i32(-1);
                    continue;
                };
                // The length goes first: written as a placeholder, filled in after.
                let at = b.len();
                b.put_i32(0);
                let oid = oids.get(i).copied().unwrap_or(25);
                if wants_binary(binary, i) && has_binary_form(oid) {
                    encode_binary(b, oid, text);
                } else {
                    b.put_slice(text.as_bytes());
                }
                let len = i32::try_from(b.len() - at - 4).unwrap_or(i32::MAX);
                if let Some(slot) = b.get_mut(at..at + 4) {
                    slot.copy_from_slice(&len.to_be_bytes());
                }
            }
        });
    }

    /// CommandComplete with its tag (`SET`, `SHOW`, `SELECT 3`).
    pub(crate) fn command_complete(buf: &mut BytesMut, tag: &str) {
        Self::tagged(buf, b'C', |b| Self::cstr(b, tag));
    }

    /// ReadyForQuery.
    pub(crate) fn ready_for_query(buf: &mut BytesMut, status: TxStatus) {
        Self::tagged(buf, b'Z', |b| b.put_u8(status.byte()));
    }

    /// NegotiateProtocolVersion: weir speaks 3.0 and none of the given `_pq_.` options.
    pub(crate) fn negotiate_protocol_version(buf: &mut BytesMut, unsupported: &[String]) {
        Self::tagged(buf, b'v', |b| {
            b.put_i32(0);
            b.put_i32(unsupported.len() as i32);
            for option in unsupported {
                Self::cstr(b, option);
            }
        });
    }

    /// StartupMessage toward a server.
    pub(crate) fn startup(
        buf: &mut BytesMut,
        params: &[(&str, &str)],
    ) -> Result<(), ProtocolError> {
        frontend::startup_message(params.iter().copied(), buf).map_err(|_| {
            ProtocolError::Malformed {
                what: "StartupMessage",
            }
        })
    }

    /// A simple-protocol Query toward a server.
    pub(crate) fn query(buf: &mut BytesMut, sql: &str) {
        Self::tagged(buf, b'Q', |b| Self::cstr(b, sql));
    }

    /// PasswordMessage (cleartext or md5 answer) toward a server.
    pub(crate) fn password(buf: &mut BytesMut, password: &[u8]) -> Result<(), ProtocolError> {
        frontend::password_message(password, buf).map_err(|_| ProtocolError::Malformed {
            what: "PasswordMessage",
        })
    }

    /// SASLInitialResponse toward a server.
    pub(crate) fn sasl_initial(
        buf: &mut BytesMut,
        mechanism: &str,
        data: &[u8],
    ) -> Result<(), ProtocolError> {
        frontend::sasl_initial_response(mechanism, data, buf).map_err(|_| {
            ProtocolError::Malformed {
                what: "SASLInitialResponse",
            }
        })
    }

    /// Parse, Bind, Execute and Sync of the unnamed statement `sql` with one text
    /// parameter, toward a server: the parameter is bound, never spliced into the text.
    pub(crate) fn query_with_param(
        buf: &mut BytesMut,
        sql: &str,
        param: &str,
    ) -> Result<(), ProtocolError> {
        let malformed = |what| ProtocolError::Malformed { what };
        frontend::parse("", sql, std::iter::empty(), buf).map_err(|_| malformed("Parse"))?;
        frontend::bind(
            "",
            "",
            std::iter::once(0),
            std::iter::once(param),
            |p, out| {
                out.extend_from_slice(p.as_bytes());
                Ok(postgres_protocol::IsNull::No)
            },
            std::iter::once(0),
            buf,
        )
        .map_err(|_| malformed("Bind"))?;
        frontend::execute("", 0, buf).map_err(|_| malformed("Execute"))?;
        frontend::sync(buf);
        Ok(())
    }

    /// SASLResponse toward a server.
    pub(crate) fn sasl_response(buf: &mut BytesMut, data: &[u8]) -> Result<(), ProtocolError> {
        frontend::sasl_response(data, buf).map_err(|_| ProtocolError::Malformed {
            what: "SASLResponse",
        })
    }

    /// Parse toward a server: statement `name`, then the original body after the name
    /// (query text and parameter types).
    pub(crate) fn parse(buf: &mut BytesMut, name: &str, tail: &[u8]) {
        Self::tagged(buf, b'P', |b| {
            Self::cstr(b, name);
            b.put_slice(tail);
        });
    }

    /// The start of a Bind toward a server, up to and including the statement name; the
    /// caller forwards the original rest (`rest_len` bytes) right after it.
    pub(crate) fn bind_prefix(buf: &mut BytesMut, portal: &[u8], stmt: &str, rest_len: usize) {
        let len = 4 + portal.len() + 1 + stmt.len() + 1 + rest_len;
        buf.put_u8(b'B');
        buf.put_u32(len as u32);
        buf.put_slice(portal);
        buf.put_u8(0);
        Self::cstr(buf, stmt);
    }

    /// Describe (`b'D'`) or Close (`b'C'`) of statement or portal `name` toward a server.
    pub(crate) fn target(buf: &mut BytesMut, tag: u8, kind: u8, name: &str) {
        Self::tagged(buf, tag, |b| {
            b.put_u8(kind);
            Self::cstr(b, name);
        });
    }

    /// CloseComplete, for a Close weir answered itself: a fixed message, spliced into a
    /// reply stream without building it.
    pub(crate) const CLOSE_COMPLETE: [u8; 5] = [b'3', 0, 0, 0, 4];

    /// Terminate toward a server.
    pub(crate) fn terminate(buf: &mut BytesMut) {
        frontend::terminate(buf);
    }

    /// CancelRequest toward a server, with that server's keys.
    pub(crate) fn cancel_request(buf: &mut BytesMut, process_id: i32, secret_key: i32) {
        frontend::cancel_request(process_id, secret_key, buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nuls_inside_strings_become_spaces() {
        let mut buf = BytesMut::new();
        MessageBuilder::parameter_status(&mut buf, "\0a\0\0b\0", "plain");
        assert_eq!(&buf[5..], b" a  b \0plain\0");
        assert_eq!(usize::from(buf[4]) + 1, buf.len());
    }

    #[test]
    fn error_round_trips() {
        let mut buf = BytesMut::new();
        MessageBuilder::error(
            &mut buf,
            ErrorSeverity::Fatal,
            "28P01",
            "password authentication failed for user \"x\"",
        );
        let Some(BackendMessage::Error(fields)) = BackendMessage::decode(&mut buf).expect("ok")
        else {
            panic!("not an error");
        };
        assert_eq!(fields.code, "28P01");
        assert!(fields.is_fatal());
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed_error_fields_are_errors() {
        assert!(ErrorFields::parse(b"").is_err());
        assert!(ErrorFields::parse(b"Mno terminator").is_err());
        assert_eq!(
            ErrorFields::parse(b"\0").expect("ok"),
            ErrorFields::default()
        );
    }

    #[test]
    fn a_missing_or_odd_sqlstate_is_replaced() {
        let code = |body: &[u8]| {
            ErrorFields::parse(body)
                .expect("parses")
                .code_or("08001")
                .to_owned()
        };
        assert_eq!(code(b"C28P01\0\0"), "28P01");
        assert_eq!(code(b"Mno code\0\0"), "08001");
        for odd in [
            &b"C\0\0"[..],
            b"C28P0\0\0",
            b"C28p01\0\0",
            b"C28P01X\0\0",
            b"C'; --\0\0",
        ] {
            assert_eq!(code(odd), "08001", "{odd:?}");
        }
    }
}
