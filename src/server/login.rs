//! Logging in to a server: StartupMessage, the password exchange, parameters, keys.

use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

use super::{BackendError, ParamSet, ServerTarget};
use crate::auth::{self, ServerPassword};
use crate::net::Conn;
use crate::protocol::{AuthRequest, BackendMessage, MessageBuilder};

/// What a successful login leaves us with.
pub(super) struct LoginResult {
    /// BackendKeyData process id.
    pub(super) process_id: i32,
    /// BackendKeyData secret.
    pub(super) secret_key: i32,
    /// Every ParameterStatus the server sent.
    pub(super) params: ParamSet,
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
    let mut scram: Option<ScramSha256> = None;
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

/// Writes the answer to one authentication request into `conn.wbuf`.
fn answer(
    conn: &mut Conn,
    target: &ServerTarget,
    request: AuthRequest,
    scram: &mut Option<ScramSha256>,
) -> Result<(), BackendError> {
    let no_password = |reason| BackendError::NoUsablePassword {
        user: target.user.clone(),
        reason,
    };
    match request {
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
            let ServerPassword::Plain(pw) = &target.password else {
                return Err(no_password(
                    "the server asks for SCRAM-SHA-256, which needs the plaintext password (a stored verifier is not enough)",
                ));
            };
            let client = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
            MessageBuilder::sasl_initial(&mut conn.wbuf, "SCRAM-SHA-256", client.message())?;
            *scram = Some(client);
            Ok(())
        }
        AuthRequest::SaslContinue(data) => {
            let client = scram
                .as_mut()
                .ok_or_else(|| BackendError::Scram("unexpected SASLContinue".into()))?;
            client
                .update(&data)
                .map_err(|e| BackendError::Scram(e.to_string()))?;
            MessageBuilder::sasl_response(&mut conn.wbuf, client.message())?;
            Ok(())
        }
        AuthRequest::SaslFinal(data) => {
            let mut client = scram
                .take()
                .ok_or_else(|| BackendError::Scram("unexpected SASLFinal".into()))?;
            client
                .finish(&data)
                .map_err(|e| BackendError::Scram(format!("the server's signature is wrong: {e}")))
        }
        AuthRequest::Unsupported(code) => Err(BackendError::UnsupportedAuth(code)),
    }
}
