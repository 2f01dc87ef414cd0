//! Logging in to a server: StartupMessage, the password exchange, parameters, keys.

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

use std::sync::Arc;

use bytes::{Buf, BufMut};
use rustls::pki_types::ServerName;

use super::{BackendError, ParamSet, ServerTarget};
use crate::auth::{self, KeyedClient, KeyedError, ServerPassword};
use crate::config::ServerTlsMode;
use crate::net::Conn;
use crate::protocol::{AuthRequest, BackendMessage, MessageBuilder, SSL_REQUEST};

/// Most PBKDF2 iterations weir runs for a server's SCRAM challenge. PostgreSQL uses 4096
/// unless `scram_iterations` is raised; a server asking for millions would tie up a thread
/// for seconds per connection.
const MAX_SCRAM_ITERATIONS: u64 = 100_000;

/// What a successful login leaves us with.
pub(super) struct LoginResult {
    /// BackendKeyData process id.
    pub(super) process_id: i32,
    /// BackendKeyData secret.
    pub(super) secret_key: i32,
    /// Every ParameterStatus the server sent.
    pub(super) params: ParamSet,
}

/// What asking a server for TLS left us with.
pub(super) enum Negotiated {
    /// Go on with this connection (TLS, or plaintext after `N` under `prefer`).
    Ready,
    /// Under `prefer`, the server did not understand the request (it closed, or answered
    /// something other than `S` or `N`, as an old or minimal server may): open a new
    /// connection and log in without asking.
    Reconnect,
}

/// Asks the server for TLS (SSLRequest) and, on `S`, runs the handshake; on `N`, goes on
/// in plaintext only with `server_tls.mode = "prefer"`.
pub(super) async fn start_tls(
    conn: &mut Conn,
    target: &ServerTarget,
    config: Arc<rustls::ClientConfig>,
    addr: &str,
) -> Result<Negotiated, BackendError> {
    let failed = |reason: String| BackendError::Tls {
        addr: addr.to_owned(),
        reason,
    };
    let mode = target.tls.settings.mode;
    conn.wbuf.put_slice(&SSL_REQUEST);
    conn.flush().await?;
    while conn.rbuf.is_empty() {
        if conn.read_some().await? == 0 {
            if mode == ServerTlsMode::Prefer {
                return Ok(Negotiated::Reconnect);
            }
            return Err(BackendError::Closed);
        }
    }
    let answer = conn.rbuf.get_u8();
    match answer {
        b'S' if !conn.rbuf.is_empty() => {
            // Bytes before the handshake would be taken as if encrypted (CVE-2021-23222).
            Err(failed(
                "the server sent data after agreeing to TLS, before the handshake".to_owned(),
            ))
        }
        b'S' => {
            let name = ServerName::try_from(target.host.clone()).map_err(|e| {
                failed(format!(
                    "{:?} is not a host name TLS can check: {e}",
                    target.host
                ))
            })?;
            conn.connect_tls(config, name)
                .await
                .map_err(|e| failed(e.to_string()))?;
            Ok(Negotiated::Ready)
        }
        b'N' if mode == ServerTlsMode::Prefer => Ok(Negotiated::Ready),
        // A server that cannot serve at all (too many connections, say) answers an error.
        b'E' => Err(failed(
            "the server answered the TLS request with an error (it is not accepting connections)"
                .to_owned(),
        )),
        _ if mode == ServerTlsMode::Prefer => {
            tracing::warn!(
                server = addr,
                "the server did not understand the TLS request: connecting again without TLS"
            );
            Ok(Negotiated::Reconnect)
        }
        b'N' => Err(failed(format!(
            "the server does not accept TLS, and server_tls.mode = \"{}\" requires it",
            mode.as_str()
        ))),
        other => Err(failed(format!(
            "the server answered the TLS request with {:?} instead of S or N",
            char::from(other)
        ))),
    }
}

/// Runs the login exchange on a fresh connection.
pub(super) async fn login(
    conn: &mut Conn,
    target: &ServerTarget,
) -> Result<LoginResult, BackendError> {
    MessageBuilder::startup(
        &mut conn.wbuf,
        &[
            ("user", target.user.as_str()),
            ("database", target.dbname.as_str()),
        ],
    )?;
    conn.flush().await?;
    let mut scram: Option<ScramLogin<'_>> = None;
    let mut keys = (0, 0);
    let mut params = ParamSet::default();
    loop {
        let msg = loop {
            if let Some(msg) = BackendMessage::decode(&mut conn.rbuf)? {
                break msg;
            }
            if conn.read_some().await? == 0 {
                return Err(BackendError::Closed);
            }
        };
        match msg {
            BackendMessage::Auth(AuthRequest::SaslContinue(data)) => {
                let login = match scram.take() {
                    Some(ScramLogin::Password(client)) => {
                        let client = scram_continue(client, data).await?;
                        MessageBuilder::sasl_response(&mut conn.wbuf, client.message())?;
                        ScramLogin::Password(client)
                    }
                    Some(ScramLogin::Keyed(mut client)) => {
                        let answer = client.server_first(&data).map_err(keyed_error)?;
                        MessageBuilder::sasl_response(&mut conn.wbuf, answer.as_bytes())?;
                        ScramLogin::Keyed(client)
                    }
                    None => return Err(BackendError::Scram("unexpected SASLContinue".into())),
                };
                scram = Some(login);
                conn.flush().await?;
            }
            BackendMessage::Auth(request) => {
                answer(conn, target, request, &mut scram)?;
                conn.flush().await?;
            }
            BackendMessage::ParameterStatus { name, value } => params.set(&name, &value),
            BackendMessage::BackendKeyData {
                process_id,
                secret_key,
            } => keys = (process_id, secret_key),
            BackendMessage::ReadyForQuery(_) => {
                return Ok(LoginResult {
                    process_id: keys.0,
                    secret_key: keys.1,
                    params,
                })
            }
            BackendMessage::Error(fields) => return Err(BackendError::Refused(fields)),
            BackendMessage::Other => {}
        }
    }
}

/// Answers the server-first-message: checks the iteration count it asks for, then derives
/// the keys on a blocking thread, so PBKDF2 never holds up the async workers.
async fn scram_continue(
    mut client: ScramSha256,
    data: bytes::Bytes,
) -> Result<ScramSha256, BackendError> {
    match auth::server_iterations(&data) {
        Some(n) if n > MAX_SCRAM_ITERATIONS => {
            return Err(BackendError::Scram(format!(
                "the server asks for {n} SCRAM iterations; weir runs at most {MAX_SCRAM_ITERATIONS}"
            )))
        }
        Some(_) => {}
        None => {
            return Err(BackendError::Scram(
                "the server's SCRAM challenge has no iteration count".into(),
            ))
        }
    }
    let derived = tokio::task::spawn_blocking(move || client.update(&data).map(|()| client))
        .await
        .map_err(|e| BackendError::Scram(format!("SCRAM key derivation failed: {e}")))?;
    derived.map_err(|e| BackendError::Scram(e.to_string()))
}

/// A SCRAM login to a server in progress.
enum ScramLogin<'a> {
    /// From the plaintext password: PBKDF2 with the server's salt.
    Password(ScramSha256),
    /// From the key a client's login revealed (pass-through).
    Keyed(KeyedClient<'a>),
}

/// A pass-through failure, in the words `08001` carries to the client.
fn keyed_error(e: KeyedError) -> BackendError {
    BackendError::Scram(format!("SCRAM pass-through: {e}"))
}

/// Writes the answer to one authentication request into `conn.wbuf`.
fn answer<'a>(
    conn: &mut Conn,
    target: &'a ServerTarget,
    request: AuthRequest,
    scram: &mut Option<ScramLogin<'a>>,
) -> Result<(), BackendError> {
    let no_password = |reason| BackendError::NoUsablePassword {
        user: target.user.clone(),
        reason,
    };
    match request {
        // A server that ends a SCRAM exchange before proving it holds the verifier (its
        // signature, in SASLFinal) could be anyone.
        AuthRequest::Ok if scram.is_some() => Err(BackendError::Scram(
            "the server accepted the login without proving it knows the password (AuthenticationOk before SASLFinal)".into(),
        )),
        AuthRequest::Ok => Ok(()),
        AuthRequest::Cleartext => match &target.password {
            ServerPassword::Plain(pw) => {
                Ok(MessageBuilder::password(&mut conn.wbuf, pw.as_bytes())?)
            }
            _ => Err(no_password(
                "the server asks for a cleartext password and weir has none",
            )),
        },
        AuthRequest::Md5(salt) => {
            let digest = match &target.password {
                ServerPassword::Plain(pw) => auth::md5_digest(&target.user, pw),
                ServerPassword::Md5(digest) => *digest,
                _ => {
                    return Err(no_password(
                        "the server asks for md5 and weir has no password or md5 verifier",
                    ))
                }
            };
            let response = auth::md5_client_response(&digest, salt);
            Ok(MessageBuilder::password(
                &mut conn.wbuf,
                response.as_bytes(),
            )?)
        }
        AuthRequest::Sasl(mechanisms) => {
            if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
                return Err(BackendError::Scram(format!(
                    "server offers only {mechanisms:?}"
                )));
            }
            let login = match &target.password {
                ServerPassword::Plain(pw) => {
                    let client = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                    MessageBuilder::sasl_initial(&mut conn.wbuf, "SCRAM-SHA-256", client.message())?;
                    ScramLogin::Password(client)
                }
                ServerPassword::Scram(pass) => {
                    let client = pass.client().ok_or_else(|| {
                        no_password(
                            "weir holds only a SCRAM verifier for this user and learns the key to log in to \
                             servers from the user's first SCRAM login to weir, which has not happened yet",
                        )
                    })?;
                    let first = client.client_first();
                    MessageBuilder::sasl_initial(&mut conn.wbuf, "SCRAM-SHA-256", first.as_bytes())?;
                    ScramLogin::Keyed(client)
                }
                _ => {
                    return Err(no_password(
                        "the server asks for SCRAM-SHA-256, which needs the plaintext password or a SCRAM verifier",
                    ))
                }
            };
            *scram = Some(login);
            Ok(())
        }
        AuthRequest::SaslContinue(_) => Err(BackendError::Scram(
            "SASLContinue must be answered by scram_continue".into(),
        )),
        AuthRequest::SaslFinal(data) => match scram.take() {
            Some(ScramLogin::Password(mut client)) => client
                .finish(&data)
                .map_err(|e| BackendError::Scram(format!("the server's signature is wrong: {e}"))),
            Some(ScramLogin::Keyed(client)) => client.server_final(&data).map_err(keyed_error),
            None => Err(BackendError::Scram("unexpected SASLFinal".into())),
        },
        AuthRequest::Unsupported(code) => Err(BackendError::UnsupportedAuth(code)),
    }
}
