//! The client-facing login exchange: md5, SCRAM-SHA-256 (with channel binding over TLS),
//! or a client certificate, against the user's entry.
//!
//! Owns: the order of the authentication messages and what a failure is reported as.
//! Teaches SCRAM pass-through the ClientKey a successful proof reveals.
//! Does not: find the entry (the caller does, listed or from `auth_query`), or derive keys.

use std::sync::Arc;

use crate::auth::{
    md5_verify, Challenge, ScramError, ScramServer, ServerPassword, UserEntry, UserTable,
};
use crate::net::Conn;
use crate::protocol::{FrontendTag, LoginMessage, MessageBuilder, ProtocolError};

use super::SessionError;

/// Largest password/SASL message accepted during login.
const MAX_LOGIN_MESSAGE: usize = 8 * 1024;

/// Challenges the client as `user` requires. Returns the entry on success; an unknown
/// user goes through the same exchange (with fake keys) and fails like a wrong password.
pub(super) async fn authenticate(
    conn: &mut Conn,
    name: &str,
    entry: Option<Arc<UserEntry>>,
    users: &UserTable,
    binding: Option<Arc<[u8]>>,
) -> Result<Arc<UserEntry>, SessionError> {
    let challenge = match &entry {
        Some(e) => e.challenge.clone(),
        None => Challenge::Scram(users.mock_keys(name)),
    };
    let ok = match challenge {
        Challenge::Trust => true,
        // As PostgreSQL's `cert` method: a verified certificate whose CN is the user name.
        Challenge::Cert => match conn.io.peer_common_name() {
            Some(cn) if cn == name => true,
            Some(cn) => {
                tracing::info!(user = name, certificate = %cn, "the client certificate's common name is not the user name");
                return Err(SessionError::NotAuthorized(format!(
                    "certificate authentication failed for user \"{name}\": the certificate is for \"{}\"",
                    cn.escape_debug()
                )));
            }
            None => {
                return Err(SessionError::NotAuthorized(format!(
                    "user \"{name}\" logs in with a client certificate: connect with TLS and a certificate signed by tls.client_ca (sslcert and sslkey)"
                )))
            }
        },
        Challenge::Md5(digests) => {
            let salt: [u8; 4] = rand::random();
            MessageBuilder::auth_md5(&mut conn.wbuf, salt);
            conn.flush().await?;
            let body = read_password_message(conn).await?;
            let response = LoginMessage::password(&body)?;
            // Every digest is tried, so the time taken does not say which matched.
            digests
                .iter()
                .fold(false, |ok, d| md5_verify(d, salt, response) | ok)
        }
        Challenge::Scram(keys) => {
            MessageBuilder::auth_sasl_scram(&mut conn.wbuf, binding.is_some());
            conn.flush().await?;
            let body = read_password_message(conn).await?;
            let (mechanism, first) = LoginMessage::sasl_initial(&body)?;
            let scram = ScramServer::new(keys);
            let mut scram = match (mechanism.as_str(), binding) {
                ("SCRAM-SHA-256", None) => scram,
                ("SCRAM-SHA-256", Some(data)) => scram.with_binding(data, false),
                ("SCRAM-SHA-256-PLUS", Some(data)) => scram.with_binding(data, true),
                _ => {
                    return Err(ProtocolError::Malformed {
                        what: "SASLInitialResponse (client selected an invalid SASL authentication mechanism)",
                    }
                    .into())
                }
            };
            let server_first = scram.client_first(first).map_err(scram_error)?;
            MessageBuilder::auth_sasl_data(&mut conn.wbuf, false, server_first.as_bytes());
            conn.flush().await?;
            let body = read_password_message(conn).await?;
            match scram.client_final(&body) {
                Ok(server_final) => {
                    MessageBuilder::auth_sasl_data(&mut conn.wbuf, true, server_final.as_bytes());
                    if let (Some(key), Some(ServerPassword::Scram(pass))) = (
                        scram.client_key(),
                        entry.as_ref().map(|e| &e.server_password),
                    ) {
                        pass.learn(key);
                    }
                    true
                }
                Err(ScramError::WrongPassword) => false,
                Err(e) => return Err(scram_error(e)),
            }
        }
    };
    match entry {
        Some(entry) if ok => Ok(entry),
        _ => Err(SessionError::AuthFailed(name.to_owned())),
    }
}

/// A malformed SCRAM message is a protocol violation (08P01), not a wrong password.
fn scram_error(e: ScramError) -> SessionError {
    match e {
        ScramError::WrongPassword => SessionError::AuthFailed(String::new()),
        other => {
            tracing::debug!("SCRAM exchange failed: {other}");
            ProtocolError::Malformed { what: "SASL" }.into()
        }
    }
}

/// Reads the next message, which must be a `p` message; anything else ends the login.
async fn read_password_message(conn: &mut Conn) -> Result<bytes::Bytes, SessionError> {
    // Refuse anything else at once (a StartupMessage mid-SCRAM has no tag at all), without
    // waiting for the length it seems to announce.
    if conn.rbuf.is_empty() && conn.read_some().await? == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    if let Some(&tag) = conn.rbuf.first() {
        if FrontendTag::try_from(tag).ok() != Some(FrontendTag::Password) {
            return Err(ProtocolError::UnexpectedTag(char::from(tag)).into());
        }
    }
    match conn.read_frame(MAX_LOGIN_MESSAGE).await? {
        Some(frame) if frame.tag() == b'p' => Ok(bytes::Bytes::copy_from_slice(frame.body())),
        Some(frame) => Err(ProtocolError::UnexpectedTag(char::from(frame.tag())).into()),
        None => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
    }
}
