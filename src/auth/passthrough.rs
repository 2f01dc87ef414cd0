//! SCRAM pass-through: logging in to servers as a user weir holds only a SCRAM verifier
//! for, with the ClientKey a client's own proof revealed.
//!
//! Owns: [`PassThrough`] (a verifier's public half plus the learned ClientKey) and
//! [`KeyedClient`], the client side of SCRAM-SHA-256 run from keys instead of a password.
//! Does not: do I/O or frame protocol messages (`server::login` does), or check clients
//! (`scram::ScramServer` recovers the key and hands it to [`PassThrough::learn`]).
//!
//! Why it works: a client's proof is `ClientKey XOR HMAC(StoredKey, AuthMessage)`, so a
//! proof that checks out gives weir the ClientKey, and the ClientKey is all a SCRAM client
//! needs to prove itself to a server holding the same verifier. No PBKDF2 runs here.

use std::fmt;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore as _;

use super::verifier::{constant_time_eq, hmac_sha256, sha256, ScramKeys, SCRAM_KEY_LEN};

/// Random bytes in weir's half of the nonce (libpq uses 18 too).
const CLIENT_NONCE_LEN: usize = 18;

/// Longest server message a [`KeyedClient`] reads: real ones are under 200 bytes.
const MAX_SERVER_MESSAGE: usize = 2048;

/// One user's SCRAM verifier, as weir logs in to servers with it: the salt, the iteration
/// count and the ServerKey from the verifier, and the ClientKey once a client has logged
/// in with SCRAM. Shared (in an `Arc`) by the user's entry and every server target built
/// from it, so what one login learns every pool of the user can use.
pub(crate) struct PassThrough {
    /// PBKDF2 salt of the verifier; the server must send the same one.
    salt: Vec<u8>,
    /// PBKDF2 rounds of the verifier; the server must ask for the same count.
    iterations: u32,
    /// `SHA-256(ClientKey)`: checks a learned key, and signs weir's proof.
    stored_key: [u8; SCRAM_KEY_LEN],
    /// Checks the server's signature.
    server_key: [u8; SCRAM_KEY_LEN],
    /// Set by the first client whose proof matched.
    client_key: OnceLock<[u8; SCRAM_KEY_LEN]>,
}

impl PassThrough {
    /// For a user whose current password is the verifier `keys`.
    pub(crate) fn new(keys: &ScramKeys) -> Self {
        Self {
            salt: keys.salt().to_vec(),
            iterations: keys.iterations(),
            stored_key: *keys.stored_key(),
            server_key: *keys.server_key(),
            client_key: OnceLock::new(),
        }
    }

    /// Keeps `client_key`, recovered from a client's proof, if it belongs to this
    /// verifier. Later calls change nothing: every key that belongs is the same key.
    pub(crate) fn learn(&self, client_key: &[u8; SCRAM_KEY_LEN]) {
        if constant_time_eq(&sha256(client_key), &self.stored_key) {
            let _ = self.client_key.set(*client_key);
        }
    }

    /// Whether a client has logged in since this verifier was loaded.
    pub(crate) fn learned(&self) -> bool {
        self.client_key.get().is_some()
    }

    /// A SCRAM client for one server login, or `None` before any client has logged in.
    pub(crate) fn client(&self) -> Option<KeyedClient<'_>> {
        let client_key = self.client_key.get()?;
        let mut raw = [0u8; CLIENT_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut raw);
        Some(KeyedClient {
            keys: self,
            client_key,
            client_first_bare: format!("n=,r={}", STANDARD.encode(raw)),
            auth_message: None,
        })
    }
}

/// Two are equal when made from the same verifier, learned or not: a RELOAD that keeps
/// the verifier keeps the pools built on it.
impl PartialEq for PassThrough {
    fn eq(&self, other: &Self) -> bool {
        self.salt == other.salt
            && self.iterations == other.iterations
            && self.stored_key == other.stored_key
            && self.server_key == other.server_key
    }
}

impl Eq for PassThrough {}

impl fmt::Debug for PassThrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassThrough")
            .field("learned", &self.learned())
            .finish_non_exhaustive()
    }
}

/// Why a pass-through login to a server failed. Messages carry no key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyedError {
    /// A server message does not parse.
    #[error("malformed SCRAM message from the server: {0}")]
    Malformed(&'static str),
    /// A server message longer than any real one.
    #[error("SCRAM message from the server of {0} bytes; at most {MAX_SERVER_MESSAGE} are read")]
    TooLong(usize),
    /// The server's nonce does not extend ours.
    #[error("the server's SCRAM nonce does not start with weir's")]
    Nonce,
    /// The server holds a different verifier for the user.
    #[error(
        "the server's SCRAM verifier for this user is not the one weir holds (its salt or \
         iteration count differs): give weir the verifier from the server's pg_authid"
    )]
    OtherVerifier,
    /// The server-final-message is an error or does not parse.
    #[error("the server refused weir's SCRAM proof: {0}")]
    Refused(String),
    /// The server's signature does not match the verifier: it does not hold it.
    #[error("the server's SCRAM signature is wrong")]
    Signature,
}

/// The client side of one SCRAM-SHA-256 login, run from a learned ClientKey.
#[must_use = "a KeyedClient does nothing until fed the server's messages"]
pub(crate) struct KeyedClient<'a> {
    /// The verifier and its learned key.
    keys: &'a PassThrough,
    /// The learned ClientKey.
    client_key: &'a [u8; SCRAM_KEY_LEN],
    /// `n=,r=<nonce>`: the first part of the AuthMessage.
    client_first_bare: String,
    /// Set once the server-first-message is answered; its signature is checked against it.
    auth_message: Option<String>,
}

impl KeyedClient<'_> {
    /// The SASLInitialResponse data: no channel binding, the user name left to the
    /// startup packet (as libpq does).
    pub(crate) fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Answers the server-first-message (`r=...,s=...,i=...`) with the client-final-message.
    pub(crate) fn server_first(&mut self, msg: &[u8]) -> Result<String, KeyedError> {
        let text = text(msg)?;
        let mut attrs = text.split(',');
        let mut next = |key: &'static str| {
            attrs
                .next()
                .and_then(|a| a.strip_prefix(key))
                .ok_or(KeyedError::Malformed(key))
        };
        let nonce = next("r=")?;
        let salt = next("s=")?;
        let iterations = next("i=")?;
        let ours = self
            .client_first_bare
            .strip_prefix("n=,r=")
            .unwrap_or_default();
        if nonce.len() <= ours.len() || !nonce.starts_with(ours) {
            return Err(KeyedError::Nonce);
        }
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| KeyedError::Malformed("s= is not base64"))?;
        if salt != self.keys.salt || iterations.parse::<u32>().ok() != Some(self.keys.iterations) {
            return Err(KeyedError::OtherVerifier);
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let mut proof = hmac_sha256(&self.keys.stored_key, &[auth_message.as_bytes()]);
        for (p, k) in proof.iter_mut().zip(self.client_key) {
            *p ^= k;
        }
        self.auth_message = Some(auth_message);
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)))
    }

    /// Checks the server-final-message (`v=<signature>`).
    pub(crate) fn server_final(&self, msg: &[u8]) -> Result<(), KeyedError> {
        let text = text(msg)?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(KeyedError::Refused(error.chars().take(100).collect()));
        }
        let auth_message = self
            .auth_message
            .as_ref()
            .ok_or(KeyedError::Malformed("server-final before server-first"))?;
        let signature = text
            .split(',')
            .next()
            .and_then(|v| v.strip_prefix("v="))
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or(KeyedError::Malformed("no v= signature"))?;
        let expected = hmac_sha256(&self.keys.server_key, &[auth_message.as_bytes()]);
        if constant_time_eq(&signature, &expected) {
            Ok(())
        } else {
            Err(KeyedError::Signature)
        }
    }
}

/// Length cap, then UTF-8.
fn text(msg: &[u8]) -> Result<&str, KeyedError> {
    if msg.len() > MAX_SERVER_MESSAGE {
        return Err(KeyedError::TooLong(msg.len()));
    }
    std::str::from_utf8(msg).map_err(|_| KeyedError::Malformed("not UTF-8"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    use super::*;
    use crate::auth::ScramServer;

    /// Keys with one PBKDF2 round, so the tests stay fast in debug builds.
    fn keys(password: &str) -> ScramKeys {
        ScramKeys::derive(password, b"pass-through salt", 1).unwrap()
    }

    /// A real client logs in to a `ScramServer` with `password`; returns the key it revealed.
    fn client_login(keys: &ScramKeys, password: &str) -> Option<[u8; SCRAM_KEY_LEN]> {
        let mut server = ScramServer::new(Arc::new(keys.clone()));
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let first = server.client_first(client.message()).unwrap();
        client.update(first.as_bytes()).unwrap();
        server.client_final(client.message()).ok()?;
        server.client_key().copied()
    }

    /// `KeyedClient` logs in to a `ScramServer` holding `server_keys`.
    fn server_login(pass: &PassThrough, server_keys: &ScramKeys) -> Result<(), KeyedError> {
        let mut server = ScramServer::new(Arc::new(server_keys.clone()));
        let mut client = pass.client().expect("learned");
        let first = server
            .client_first(client.client_first().as_bytes())
            .unwrap();
        let fin = client.server_first(first.as_bytes())?;
        let last = server
            .client_final(fin.as_bytes())
            .map_err(|e| KeyedError::Refused(e.to_string()))?;
        client.server_final(last.as_bytes())
    }

    #[test]
    fn a_learned_key_logs_in_to_a_server_with_the_same_verifier() {
        let k = keys("secret");
        let pass = PassThrough::new(&k);
        assert!(pass.client().is_none(), "nothing learned yet");
        let key = client_login(&k, "secret").expect("right password reveals the key");
        pass.learn(&key);
        assert!(pass.learned());
        server_login(&pass, &k).unwrap();
    }

    #[test]
    fn a_key_that_does_not_belong_is_not_learned() {
        let k = keys("secret");
        let pass = PassThrough::new(&k);
        pass.learn(&[7; SCRAM_KEY_LEN]);
        assert!(!pass.learned());
        assert_eq!(client_login(&k, "wrong"), None);
    }

    #[test]
    fn a_server_with_another_verifier_is_named_not_sent_a_failing_proof() {
        let k = keys("secret");
        let pass = PassThrough::new(&k);
        pass.learn(&client_login(&k, "secret").unwrap());
        let other_salt = ScramKeys::derive("secret", b"another salt", 1).unwrap();
        assert_eq!(
            server_login(&pass, &other_salt),
            Err(KeyedError::OtherVerifier)
        );
        let other_password = keys("changed");
        assert!(matches!(
            server_login(&pass, &other_password),
            Err(KeyedError::Refused(_))
        ));
    }

    #[test]
    fn server_messages_that_do_not_fit_are_errors() {
        let k = keys("secret");
        let pass = PassThrough::new(&k);
        pass.learn(&client_login(&k, "secret").unwrap());
        let mut client = pass.client().unwrap();
        for bad in [
            &b""[..],
            b"r=",
            b"s=abc,r=x,i=1",
            b"r=someone-elses-nonce,s=cGFzcy10aHJvdWdoIHNhbHQ=,i=1",
            b"\xff\xfe",
        ] {
            assert!(client.server_first(bad).is_err(), "{bad:?}");
        }
        assert!(
            client.server_final(b"v=AAAA").is_err(),
            "before server-first"
        );
        assert!(matches!(
            client.server_final(b"e=invalid-proof"),
            Err(KeyedError::Refused(_))
        ));
        assert!(client.server_first(&[b'a'; 4096]).is_err());
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        let k = keys("secret");
        let pass = PassThrough::new(&k);
        pass.learn(&client_login(&k, "secret").unwrap());
        let mut server = ScramServer::new(Arc::new(k.clone()));
        let mut client = pass.client().unwrap();
        let first = server
            .client_first(client.client_first().as_bytes())
            .unwrap();
        client.server_first(first.as_bytes()).unwrap();
        assert_eq!(
            client.server_final(format!("v={}", STANDARD.encode([0u8; 32])).as_bytes()),
            Err(KeyedError::Signature)
        );
    }

    #[test]
    fn equal_by_verifier_and_debug_shows_no_keys() {
        let k = keys("secret");
        let (a, b) = (PassThrough::new(&k), PassThrough::new(&k));
        a.learn(&client_login(&k, "secret").unwrap());
        assert_eq!(a, b);
        assert_ne!(a, PassThrough::new(&keys("other")));
        assert_eq!(format!("{a:?}"), "PassThrough { learned: true, .. }");
    }
}
