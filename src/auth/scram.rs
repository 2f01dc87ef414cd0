//! The server side of SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL speaks
//! it, as a sans-IO state machine: bytes in, the next server message out.
//!
//! Owns: parsing client-first and client-final messages, the server nonce, the
//! AuthMessage, the proof check and the server signature.
//! Does not: do I/O, frame protocol messages (the caller unwraps
//! SASLInitialResponse/SASLResponse and wraps AuthenticationSASLContinue/Final),
//! pick the mechanism, look users up, or log. Channel binding
//! (SCRAM-SHA-256-PLUS, `tls-server-end-point`) is checked when the caller gives the
//! binding data with [`ScramServer::with_binding`].
//!
//! As in PostgreSQL, the user name in `n=` is ignored: the user is the one from
//! the startup packet, whose keys the caller passed to [`ScramServer::new`].

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore as _;

use crate::auth::verifier::{constant_time_eq, hmac_sha256, sha256, ScramKeys, SCRAM_KEY_LEN};

/// Longest client message accepted. Real ones are under 200 bytes (a nonce of
/// a few dozen characters, a 44-character proof); the cap keeps a hostile
/// client from making weir build large AuthMessages.
pub(crate) const MAX_MESSAGE_LEN: usize = 2048;

/// The GS2 header of a client binding to weir's certificate (RFC 5929).
const END_POINT_HEADER: &str = "p=tls-server-end-point,,";

/// Random bytes in the server's half of the nonce (PostgreSQL's
/// `SCRAM_RAW_NONCE_LEN`); base64 makes them 24 printable characters.
const SERVER_NONCE_LEN: usize = 18;

/// Why a SCRAM exchange failed.
///
/// [`ScramError::WrongPassword`] means the messages were well formed but the
/// proof did not match (send SQLSTATE 28P01); every other variant is a protocol
/// violation by the client (08P01). Messages contain no key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScramError {
    /// The client proof does not match the user's StoredKey: wrong password,
    /// or a user that does not exist (mock keys).
    #[error("password authentication failed")]
    WrongPassword,
    /// A method was called in the wrong order, or after the exchange ended.
    #[error("unexpected SCRAM message: the exchange is {state}")]
    OutOfOrder {
        /// Where the exchange was: "waiting for client-first-message", etc.
        state: &'static str,
    },
    /// The message is longer than [`MAX_MESSAGE_LEN`].
    #[error("SCRAM message of {len} bytes is too long; at most {max} are accepted")]
    TooLong {
        /// Length received.
        len: usize,
        /// [`MAX_MESSAGE_LEN`].
        max: usize,
    },
    /// The message is not UTF-8 (RFC 5802 messages are).
    #[error("SCRAM message is not valid UTF-8")]
    NotUtf8,
    /// The client chose channel binding (`p=` in the GS2 header).
    #[error("the client requires SCRAM channel binding (SCRAM-SHA-256-PLUS), which weir does not offer on this connection; connect with channel_binding=prefer or disable")]
    ChannelBindingNotSupported,
    /// The client chose SCRAM-SHA-256-PLUS but sent no binding (`n` or `y`).
    #[error("the client selected SCRAM-SHA-256-PLUS, but its SCRAM message does not include channel binding data")]
    PlusWithoutBinding,
    /// The client chose SCRAM-SHA-256 but sent binding (`p=`).
    #[error("the client selected SCRAM-SHA-256 without channel binding, but its SCRAM message includes channel binding data")]
    BindingWithoutPlus,
    /// `y`: the client thinks weir cannot bind, though PLUS was offered (a downgrade).
    #[error("SCRAM channel binding negotiation error: the client supports channel binding but thinks weir does not, although weir offered SCRAM-SHA-256-PLUS")]
    BindingDowngrade,
    /// A binding type other than `tls-server-end-point`.
    #[error("unsupported SCRAM channel-binding type; weir supports tls-server-end-point")]
    UnsupportedBindingType,
    /// The GS2 header is not `n,,` or `y,,` (or `p=...,,`).
    #[error("malformed SCRAM client-first-message: it must start with the GS2 header \"n,,\" or \"y,,\"")]
    BadGs2Header,
    /// The GS2 header names an authorization identity (`a=`).
    #[error("the client uses a SCRAM authorization identity (a=), which is not supported")]
    AuthzidNotSupported,
    /// The client sent `m=` or another SCRAM extension attribute.
    #[error("the client requires a SCRAM extension, which is not supported")]
    ExtensionNotSupported,
    /// A required attribute is missing or out of place.
    #[error("malformed SCRAM {message}: attribute \"{attr}=\" expected")]
    MissingAttribute {
        /// The attribute letter (`n`, `r`, `c` or `p`).
        attr: char,
        /// "client-first-message" or "client-final-message".
        message: &'static str,
    },
    /// The client nonce is empty or has characters outside printable ASCII
    /// (or a comma).
    #[error(
        "malformed SCRAM client-first-message: the client nonce is empty or not printable ASCII"
    )]
    BadNonce,
    /// The nonce in client-final is not the one agreed in this exchange.
    #[error("the nonce in the SCRAM client-final-message does not match this exchange")]
    NonceMismatch,
    /// `c=` does not repeat the GS2 header of the client-first-message.
    #[error("the channel-binding attribute (c=) of the SCRAM client-final-message does not match the GS2 header the client sent first")]
    ChannelBindingMismatch,
    /// `p=` is not base64 of exactly 32 bytes.
    #[error("malformed SCRAM client-final-message: the proof (p=) is not base64 of 32 bytes")]
    BadProof,
    /// Attributes after the proof.
    #[error("malformed SCRAM client-final-message: unexpected data after the proof")]
    TrailingData,
}

/// Where a [`ScramServer`] is in the exchange. Each state holds what the next
/// step needs.
enum State {
    /// New; the SASLInitialResponse payload is next.
    AwaitingClientFirst {
        /// Our half of the nonce, fixed at construction.
        server_nonce: String,
    },
    /// server-first sent; the SASLResponse payload is next.
    AwaitingClientFinal {
        /// What `c=` must be: base64 of the GS2 header as the client sent it, followed,
        /// with `p=tls-server-end-point`, by the binding data.
        expected_binding: String,
        /// client-first-message-bare, verbatim: first part of the AuthMessage.
        client_first_bare: String,
        /// The server-first-message we sent: second part of the AuthMessage.
        server_first: String,
        /// Client nonce + server nonce; `r=` in client-final must equal it.
        nonce: String,
    },
    /// Succeeded or failed; nothing more is accepted.
    Done,
}

impl State {
    /// Words for [`ScramError::OutOfOrder`].
    fn describe(&self) -> &'static str {
        match self {
            Self::AwaitingClientFirst { .. } => "waiting for the client-first-message",
            Self::AwaitingClientFinal { .. } => "waiting for the client-final-message",
            Self::Done => "already finished",
        }
    }
}

/// One server-side SCRAM-SHA-256 exchange for one client login.
///
/// Feed it the SASLInitialResponse data with [`ScramServer::client_first`] and
/// the SASLResponse data with [`ScramServer::client_final`]; send back what
/// each returns. Any error ends the exchange. `Debug` shows only the state.
#[must_use = "a ScramServer does nothing until fed the client's messages"]
pub(crate) struct ScramServer {
    /// The user's keys (mock keys for an unknown user); shared with the config
    /// snapshot so a login does not copy them.
    keys: Arc<ScramKeys>,
    /// Progress through the exchange.
    state: State,
    /// Channel binding: the `tls-server-end-point` data when SCRAM-SHA-256-PLUS was
    /// offered, and whether the client chose it.
    binding: Option<(Arc<[u8]>, bool)>,
    /// The ClientKey recovered from a proof that matched the user's current password
    /// (not a previous one): what SCRAM pass-through logs in to servers with.
    client_key: Option<[u8; SCRAM_KEY_LEN]>,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer")
            .field("state", &self.state.describe())
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// Start an exchange for the user whose keys these are, with a fresh random
    /// server nonce (18 bytes, base64).
    pub(crate) fn new(keys: Arc<ScramKeys>) -> Self {
        let mut raw = [0u8; SERVER_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut raw);
        Self {
            keys,
            state: State::AwaitingClientFirst {
                server_nonce: STANDARD.encode(raw),
            },
            binding: None,
            client_key: None,
        }
    }

    /// On a TLS connection where SCRAM-SHA-256-PLUS was offered with the binding data
    /// `end_point`: `plus` says whether the client chose it. A client that chose plain
    /// SCRAM-SHA-256 must not claim (`y`) that weir cannot bind.
    pub(crate) fn with_binding(mut self, end_point: Arc<[u8]>, plus: bool) -> Self {
        self.binding = Some((end_point, plus));
        self
    }

    /// Take the client-first-message (SASLInitialResponse data) and return the
    /// server-first-message (`r=<nonce>,s=<salt>,i=<iterations>`) for
    /// AuthenticationSASLContinue.
    pub(crate) fn client_first(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        let server_nonce = match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitingClientFirst { server_nonce } => server_nonce,
            other => {
                return Err(ScramError::OutOfOrder {
                    state: other.describe(),
                })
            }
        };
        let text = as_text(msg)?;
        let (gs2_header, bare) = parse_gs2_header(text)?;
        let expected_binding = self.expected_binding(gs2_header)?;
        let client_nonce = parse_client_first_bare(bare)?;

        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(self.keys.salt()),
            self.keys.iterations()
        );
        self.state = State::AwaitingClientFinal {
            expected_binding,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first)
    }

    /// Take the client-final-message (SASLResponse data), check the proof, and
    /// return the server-final-message (`v=<ServerSignature>`) for
    /// AuthenticationSASLFinal.
    ///
    /// A well-formed message with a wrong proof is [`ScramError::WrongPassword`].
    pub(crate) fn client_final(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        let (expected_binding, client_first_bare, server_first, nonce) =
            match std::mem::replace(&mut self.state, State::Done) {
                State::AwaitingClientFinal {
                    expected_binding,
                    client_first_bare,
                    server_first,
                    nonce,
                } => (expected_binding, client_first_bare, server_first, nonce),
                other => {
                    return Err(ScramError::OutOfOrder {
                        state: other.describe(),
                    })
                }
            };
        let text = as_text(msg)?;
        let parsed = parse_client_final(text)?;

        // "n,," is "biws" and "y,," is "eSws"; compare the encoded forms, as
        // PostgreSQL does, so padding or whitespace variants are refused too.
        if !constant_time_eq(
            parsed.channel_binding.as_bytes(),
            expected_binding.as_bytes(),
        ) {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if parsed.nonce != nonce {
            return Err(ScramError::NonceMismatch);
        }

        let auth_message = format!(
            "{client_first_bare},{server_first},{}",
            parsed.without_proof
        );
        // The password's keys, then those of previous passwords (a rotation): each is
        // checked, so the time taken does not say which matched.
        let mut matched = None;
        for (i, (stored_key, server_key)) in self.keys.candidates().enumerate() {
            let client_signature = hmac_sha256(stored_key, &[auth_message.as_bytes()]);
            let mut client_key = parsed.proof;
            for (k, s) in client_key.iter_mut().zip(client_signature) {
                *k ^= s;
            }
            if constant_time_eq(&sha256(&client_key), stored_key) && matched.is_none() {
                matched = Some(server_key);
                if i == 0 {
                    self.client_key = Some(client_key);
                }
            }
        }
        let server_key = matched.ok_or(ScramError::WrongPassword)?;
        let server_signature = hmac_sha256(server_key, &[auth_message.as_bytes()]);
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }

    /// What `c=` must hold for the GS2 header the client sent, after checking that header
    /// against the mechanism it chose and what weir offered.
    fn expected_binding(&self, gs2_header: &'static str) -> Result<String, ScramError> {
        let (offered, plus) = match &self.binding {
            Some((data, plus)) => (Some(data), *plus),
            None => (None, false),
        };
        match gs2_header {
            END_POINT_HEADER => {
                let data = offered.ok_or(ScramError::ChannelBindingNotSupported)?;
                if !plus {
                    return Err(ScramError::BindingWithoutPlus);
                }
                let mut input = gs2_header.as_bytes().to_vec();
                input.extend_from_slice(data);
                Ok(STANDARD.encode(input))
            }
            _ if plus => Err(ScramError::PlusWithoutBinding),
            "y,," if offered.is_some() => Err(ScramError::BindingDowngrade),
            other => Ok(STANDARD.encode(other)),
        }
    }

    /// After a successful [`ScramServer::client_final`] with the user's current password:
    /// the client's ClientKey, which SCRAM pass-through logs in to servers with.
    pub(crate) fn client_key(&self) -> Option<&[u8; SCRAM_KEY_LEN]> {
        self.client_key.as_ref()
    }
}

/// The iteration count a server asks for in its server-first-message (`i=`), read before
/// any key is derived from it: `None` when the message has none that parses.
pub(crate) fn server_iterations(server_first: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(server_first).ok()?;
    text.split(',')
        .find_map(|attr| attr.strip_prefix("i="))
        .and_then(|n| n.parse().ok())
}

/// Length cap, then UTF-8.
fn as_text(msg: &[u8]) -> Result<&str, ScramError> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(ScramError::TooLong {
            len: msg.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    std::str::from_utf8(msg).map_err(|_| ScramError::NotUtf8)
}

/// Split `gs2-header client-first-message-bare`, returning the header as one of
/// two constants.
///
/// Whether each fits the mechanism and what weir offered is
/// [`ScramServer::expected_binding`]'s to check.
fn parse_gs2_header(text: &str) -> Result<(&'static str, &str), ScramError> {
    let (flag, rest) = text.split_once(',').ok_or(ScramError::BadGs2Header)?;
    let header = match flag {
        "n" => "n,,",
        "y" => "y,,",
        "p=tls-server-end-point" => END_POINT_HEADER,
        f if f.starts_with("p=") => return Err(ScramError::UnsupportedBindingType),
        _ => return Err(ScramError::BadGs2Header),
    };
    let (authzid, bare) = rest.split_once(',').ok_or(ScramError::BadGs2Header)?;
    if authzid.starts_with("a=") {
        return Err(ScramError::AuthzidNotSupported);
    }
    if !authzid.is_empty() {
        return Err(ScramError::BadGs2Header);
    }
    Ok((header, bare))
}

/// `[m=...,] n=<user>,r=<nonce>[,ext...]`: returns the client nonce. The user
/// name is ignored (PostgreSQL uses the startup packet's); `m=` and any other
/// extension are refused.
fn parse_client_first_bare(bare: &str) -> Result<&str, ScramError> {
    const MSG: &str = "client-first-message";
    let mut attrs = bare.split(',');
    let user = attrs.next().unwrap_or_default();
    if user.starts_with("m=") {
        return Err(ScramError::ExtensionNotSupported);
    }
    if !user.starts_with("n=") {
        return Err(ScramError::MissingAttribute {
            attr: 'n',
            message: MSG,
        });
    }
    let nonce =
        attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::MissingAttribute {
                attr: 'r',
                message: MSG,
            })?;
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(ScramError::BadNonce);
    }
    if attrs.next().is_some() {
        return Err(ScramError::ExtensionNotSupported);
    }
    Ok(nonce)
}

/// The parts of a client-final-message the proof check needs.
struct ClientFinal<'a> {
    /// Value of `c=` (base64 of the GS2 header, as sent).
    channel_binding: &'a str,
    /// Value of `r=`.
    nonce: &'a str,
    /// client-final-message-without-proof, verbatim: end of the AuthMessage.
    without_proof: &'a str,
    /// Decoded `p=`.
    proof: [u8; SCRAM_KEY_LEN],
}

/// `c=<cbind>,r=<nonce>,p=<proof>` and nothing else (extensions refused).
fn parse_client_final(text: &str) -> Result<ClientFinal<'_>, ScramError> {
    const MSG: &str = "client-final-message";
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or(ScramError::MissingAttribute {
            attr: 'p',
            message: MSG,
        })?;
    if proof.contains(',') {
        return Err(ScramError::TrailingData);
    }
    let (cbind, nonce) = without_proof
        .split_once(',')
        .ok_or(ScramError::MissingAttribute {
            attr: 'r',
            message: MSG,
        })?;
    let channel_binding = cbind
        .strip_prefix("c=")
        .ok_or(ScramError::MissingAttribute {
            attr: 'c',
            message: MSG,
        })?;
    let nonce = nonce
        .strip_prefix("r=")
        .ok_or(ScramError::MissingAttribute {
            attr: 'r',
            message: MSG,
        })?;
    if nonce.contains(',') {
        // Something between r= and p=: an extension.
        return Err(ScramError::ExtensionNotSupported);
    }
    let proof = STANDARD.decode(proof).map_err(|_| ScramError::BadProof)?;
    let proof = <[u8; SCRAM_KEY_LEN]>::try_from(proof).map_err(|_| ScramError::BadProof)?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
    use rand::{Rng as _, SeedableRng as _};

    use super::*;
    use crate::auth::verifier::{parse_secret, Secret};

    /// Keys for `password` made by postgres-protocol, parsed by us.
    fn keys_from_pg(password: &str) -> Arc<ScramKeys> {
        let v = postgres_protocol::password::scram_sha_256(password.as_bytes());
        match parse_secret(&v).unwrap() {
            Secret::Scram(k) => Arc::new(k),
            other => panic!("not SCRAM: {other:?}"),
        }
    }

    /// Keys for "pw" with one PBKDF2 round, so tests that run many exchanges
    /// stay fast in debug builds (the client runs PBKDF2 every time).
    fn cheap_keys() -> Arc<ScramKeys> {
        Arc::new(ScramKeys::derive("pw", b"cheap salt", 1).unwrap())
    }

    /// Run a whole exchange with postgres-protocol's client. Returns the
    /// server's result for client-final, and (on success) whether the client
    /// accepted our server-final.
    fn exchange(
        keys: Arc<ScramKeys>,
        password: &str,
        cb: ChannelBinding,
    ) -> Result<(), ScramError> {
        let mut server = ScramServer::new(keys);
        let mut client = ScramSha256::new(password.as_bytes(), cb);
        let server_first = server.client_first(client.message())?;
        client
            .update(server_first.as_bytes())
            .expect("client accepts server-first");
        let server_final = server.client_final(client.message())?;
        client
            .finish(server_final.as_bytes())
            .expect("client accepts server-final");
        Ok(())
    }

    /// A server that has answered a valid client-first from a real client,
    /// plus that client's valid client-final for `password`.
    fn half_done(keys: Arc<ScramKeys>, password: &str) -> (ScramServer, String) {
        let mut server = ScramServer::new(keys);
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let sf = server.client_first(client.message()).unwrap();
        client.update(sf.as_bytes()).unwrap();
        (
            server,
            String::from_utf8(client.message().to_vec()).unwrap(),
        )
    }

    #[test]
    fn right_password_succeeds_and_client_verifies_server() {
        let keys = keys_from_pg("correct horse");
        exchange(keys.clone(), "correct horse", ChannelBinding::unsupported()).unwrap();
        exchange(keys, "correct horse", ChannelBinding::unrequested()).unwrap();
    }

    #[test]
    fn our_own_keys_work_with_a_real_client() {
        let keys = Arc::new(ScramKeys::from_plain("pässwörd"));
        exchange(keys.clone(), "pässwörd", ChannelBinding::unsupported()).unwrap();
        // SASLprep equivalence: ROMAN NUMERAL NINE prepares to "IX".
        let keys = Arc::new(ScramKeys::derive("\u{2168}", b"salt", 16).unwrap());
        exchange(keys, "IX", ChannelBinding::unsupported()).unwrap();
    }

    #[test]
    fn previous_passwords_are_accepted_during_a_rotation() {
        use crate::auth::verifier::Secret;
        let mut keys = ScramKeys::derive("new", b"rotation salt", 16).unwrap();
        keys.also_accept(&Secret::Plain("old".to_owned())).unwrap();
        let keys = Arc::new(keys);
        // The client checks the server's signature too: it must be the old password's.
        exchange(keys.clone(), "new", ChannelBinding::unsupported()).unwrap();
        exchange(keys.clone(), "old", ChannelBinding::unsupported()).unwrap();
        let err = exchange(keys, "older", ChannelBinding::unsupported()).unwrap_err();
        assert!(matches!(err, ScramError::WrongPassword), "{err:?}");
        // A verifier with another salt cannot join: the client is sent one salt.
        let mut keys = ScramKeys::derive("new", b"rotation salt", 16).unwrap();
        let other = ScramKeys::derive("old", b"another salt", 16).unwrap();
        assert!(keys.also_accept(&Secret::Scram(other)).is_err());
    }

    #[test]
    fn wrong_password_is_wrong_password() {
        let keys = keys_from_pg("correct horse");
        let err = exchange(keys, "battery staple", ChannelBinding::unsupported()).unwrap_err();
        assert_eq!(err, ScramError::WrongPassword);
    }

    #[test]
    fn unknown_user_with_mock_keys_fails_like_a_wrong_password() {
        let secret = [42u8; 32];
        let mock = Arc::new(ScramKeys::mock("ghost", &secret));
        let mut server = ScramServer::new(mock.clone());
        let mut client = ScramSha256::new(b"anything", ChannelBinding::unsupported());
        let sf = server.client_first(client.message()).unwrap();
        // Same shape as for a real user: 16-byte salt, 4096 iterations.
        let real = ScramKeys::from_plain("x");
        assert!(sf.ends_with(&format!(",i={}", real.iterations())));
        let salt_b64 = sf.split(",s=").nth(1).unwrap().split(',').next().unwrap();
        assert_eq!(STANDARD.decode(salt_b64).unwrap().len(), real.salt().len());
        // And the salt is stable per user name across connections.
        let sf2 = ScramServer::new(mock.clone())
            .client_first(client.message())
            .unwrap();
        assert!(sf2.contains(&format!(",s={salt_b64},")));
        client.update(sf.as_bytes()).unwrap();
        assert_eq!(
            server.client_final(client.message()),
            Err(ScramError::WrongPassword)
        );
    }

    #[test]
    fn server_first_format_and_nonce() {
        let keys = keys_from_pg("pw");
        let mut a = ScramServer::new(keys.clone());
        let mut b = ScramServer::new(keys.clone());
        let sa = a.client_first(b"n,,n=,r=abc").unwrap();
        let sb = b.client_first(b"n,,n=,r=abc").unwrap();
        assert_ne!(sa, sb, "server nonce is random");
        let rest = sa.strip_prefix("r=abc").unwrap();
        let (server_nonce, tail) = rest.split_once(',').unwrap();
        assert_eq!(server_nonce.len(), 24);
        assert_eq!(
            tail,
            format!("s={},i={}", STANDARD.encode(keys.salt()), keys.iterations())
        );
    }

    #[test]
    fn channel_binding_is_refused_where_it_was_not_offered() {
        let keys = keys_from_pg("pw");
        let err = exchange(
            keys.clone(),
            "pw",
            ChannelBinding::tls_server_end_point(vec![1, 2, 3]),
        )
        .unwrap_err();
        assert_eq!(err, ScramError::ChannelBindingNotSupported);
        let mut s = ScramServer::new(keys);
        assert_eq!(
            s.client_first(b"p=tls-unique,,n=,r=abc"),
            Err(ScramError::UnsupportedBindingType)
        );
    }

    /// An exchange with a real client on a connection where PLUS was offered with
    /// `offered`; the client chose PLUS when `plus`, and binds with `cb`.
    fn bound_exchange(offered: &[u8], plus: bool, cb: ChannelBinding) -> Result<(), ScramError> {
        let mut server = ScramServer::new(cheap_keys()).with_binding(Arc::from(offered), plus);
        let mut client = ScramSha256::new(b"pw", cb);
        let server_first = server.client_first(client.message())?;
        client
            .update(server_first.as_bytes())
            .expect("server-first");
        let server_final = server.client_final(client.message())?;
        client
            .finish(server_final.as_bytes())
            .expect("server-final");
        Ok(())
    }

    #[test]
    fn channel_binding_to_the_certificate() {
        let data = [7u8; 32];
        let bind = |d: &[u8]| ChannelBinding::tls_server_end_point(d.to_vec());
        bound_exchange(&data, true, bind(&data)).expect("PLUS with the right data");
        assert_eq!(
            bound_exchange(&data, true, bind(&[8; 32])),
            Err(ScramError::ChannelBindingMismatch),
            "another certificate's hash: a man in the middle"
        );
        assert_eq!(
            bound_exchange(&data, false, bind(&data)),
            Err(ScramError::BindingWithoutPlus)
        );
        assert_eq!(
            bound_exchange(&data, true, ChannelBinding::unsupported()),
            Err(ScramError::PlusWithoutBinding)
        );
        assert_eq!(
            bound_exchange(&data, false, ChannelBinding::unrequested()),
            Err(ScramError::BindingDowngrade),
            "y after PLUS was offered"
        );
        bound_exchange(&data, false, ChannelBinding::unsupported())
            .expect("a client that cannot bind may use plain SCRAM");
    }

    #[test]
    fn malformed_client_first_messages() {
        let keys = keys_from_pg("pw");
        let huge = vec![b'a'; 1 << 20];
        let long_nonce = format!("n,,n=,r={}", "x".repeat(MAX_MESSAGE_LEN));
        let cases: &[(&[u8], ScramError)] = &[
            (b"", ScramError::BadGs2Header),
            (b"n", ScramError::BadGs2Header),
            (b"n,", ScramError::BadGs2Header),
            (b"x,,n=,r=abc", ScramError::BadGs2Header),
            (b"n,x,n=,r=abc", ScramError::BadGs2Header),
            (b"nn,,n=,r=abc", ScramError::BadGs2Header),
            (b"n,a=bob,n=,r=abc", ScramError::AuthzidNotSupported),
            (
                b"n,,",
                ScramError::MissingAttribute {
                    attr: 'n',
                    message: "client-first-message",
                },
            ),
            (
                b"n,,r=abc",
                ScramError::MissingAttribute {
                    attr: 'n',
                    message: "client-first-message",
                },
            ),
            (
                b"n,,n=",
                ScramError::MissingAttribute {
                    attr: 'r',
                    message: "client-first-message",
                },
            ),
            (
                b"n,,n=,x=abc",
                ScramError::MissingAttribute {
                    attr: 'r',
                    message: "client-first-message",
                },
            ),
            (b"n,,n=,r=", ScramError::BadNonce),
            (b"n,,n=,r=a b", ScramError::BadNonce),
            (b"n,,n=,r=\x7f", ScramError::BadNonce),
            ("n,,n=,r=é".as_bytes(), ScramError::BadNonce),
            (b"n,,m=foo,n=,r=abc", ScramError::ExtensionNotSupported),
            (b"n,,n=,r=abc,x=1", ScramError::ExtensionNotSupported),
            (b"n,,n=,r=abc,", ScramError::ExtensionNotSupported),
            (b"n,,n=,r=\xff", ScramError::NotUtf8),
            (
                &huge,
                ScramError::TooLong {
                    len: 1 << 20,
                    max: MAX_MESSAGE_LEN,
                },
            ),
            (
                long_nonce.as_bytes(),
                ScramError::TooLong {
                    len: long_nonce.len(),
                    max: MAX_MESSAGE_LEN,
                },
            ),
        ];
        for (msg, want) in cases {
            let mut s = ScramServer::new(keys.clone());
            assert_eq!(
                s.client_first(msg).as_ref(),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(msg)
            );
            // Any error ends the exchange.
            assert!(matches!(
                s.client_final(b"c=biws,r=x,p=x"),
                Err(ScramError::OutOfOrder { .. })
            ));
        }
        // The user name is ignored, whatever it is.
        let mut s = ScramServer::new(keys);
        assert!(s.client_first(b"y,,n=some=2Cone,r=abc").is_ok());
    }

    /// Split a real client-final into its nonce and proof values.
    fn nonce_and_proof(fin: &str) -> (String, String) {
        let rest = fin.strip_prefix("c=biws,r=").unwrap();
        let (nonce, proof) = rest.split_once(",p=").unwrap();
        (nonce.to_owned(), proof.to_owned())
    }

    #[test]
    fn malformed_client_final_messages() {
        let keys = cheap_keys();
        type Case = (fn(&str, &str) -> String, ScramError);
        let cases: Vec<Case> = vec![
            (
                |_, _| String::new(),
                ScramError::MissingAttribute {
                    attr: 'p',
                    message: "client-final-message",
                },
            ),
            (
                |n, _| format!("c=biws,r={n}"),
                ScramError::MissingAttribute {
                    attr: 'p',
                    message: "client-final-message",
                },
            ),
            (
                |_, p| format!("c=biws,p={p}"),
                ScramError::MissingAttribute {
                    attr: 'r',
                    message: "client-final-message",
                },
            ),
            (
                |n, p| format!("r={n},p={p}"),
                ScramError::MissingAttribute {
                    attr: 'r',
                    message: "client-final-message",
                },
            ),
            (
                |n, p| format!("x=biws,r={n},p={p}"),
                ScramError::MissingAttribute {
                    attr: 'c',
                    message: "client-final-message",
                },
            ),
            (
                |n, p| format!("c=biws,x={n},p={p}"),
                ScramError::MissingAttribute {
                    attr: 'r',
                    message: "client-final-message",
                },
            ),
            (
                |n, p| format!("c=biws,r={n},x=1,p={p}"),
                ScramError::ExtensionNotSupported,
            ),
            (
                |n, p| format!("c=biws,r={n},p={p},x=1"),
                ScramError::TrailingData,
            ),
            (
                |n, _| format!("c=biws,r={n},p=!!notbase64"),
                ScramError::BadProof,
            ),
            (|n, _| format!("c=biws,r={n},p="), ScramError::BadProof),
            (
                |n, _| format!("c=biws,r={n},p={}", STANDARD.encode([0u8; 31])),
                ScramError::BadProof,
            ),
            (
                |n, _| format!("c=biws,r={n},p={}", STANDARD.encode([0u8; 33])),
                ScramError::BadProof,
            ),
            (
                |n, p| format!("c=biws,r={n}x,p={p}"),
                ScramError::NonceMismatch,
            ),
            (
                |n, p| format!("c=biws,r={},p={p}", &n[..n.len() - 1]),
                ScramError::NonceMismatch,
            ),
            (|_, p| format!("c=biws,r=,p={p}"), ScramError::NonceMismatch),
            (
                |n, p| format!("c=eSws,r={n},p={p}"),
                ScramError::ChannelBindingMismatch,
            ),
            (
                |n, p| format!("c=biws=,r={n},p={p}"),
                ScramError::ChannelBindingMismatch,
            ),
            (
                |n, p| format!("c=,r={n},p={p}"),
                ScramError::ChannelBindingMismatch,
            ),
            (
                |_, _| "a".repeat(MAX_MESSAGE_LEN + 1),
                ScramError::TooLong {
                    len: MAX_MESSAGE_LEN + 1,
                    max: MAX_MESSAGE_LEN,
                },
            ),
            (
                |_, _| "c=biws,r=\u{fffd},p=x".to_owned(),
                ScramError::BadProof,
            ),
        ];
        for (make, want) in cases {
            let (mut s, fin) = half_done(keys.clone(), "pw");
            let (nonce, proof) = nonce_and_proof(&fin);
            let msg = make(&nonce, &proof);
            assert_eq!(s.client_final(msg.as_bytes()), Err(want), "{msg:?}");
        }

        // The unmodified message is accepted (so the cases above test one change each).
        let (mut s, fin) = half_done(keys.clone(), "pw");
        assert!(s.client_final(fin.as_bytes()).is_ok());

        // A flipped proof bit is a wrong password, not a protocol error.
        let (mut s, fin) = half_done(keys.clone(), "pw");
        let (nonce, proof) = nonce_and_proof(&fin);
        let mut raw = STANDARD.decode(proof).unwrap();
        raw[0] ^= 1;
        let msg = format!("c=biws,r={nonce},p={}", STANDARD.encode(raw));
        assert_eq!(
            s.client_final(msg.as_bytes()),
            Err(ScramError::WrongPassword)
        );

        // A client-final replayed from another exchange has the wrong nonce.
        let (mut s, _) = half_done(keys.clone(), "pw");
        assert_eq!(
            s.client_final(fin.as_bytes()),
            Err(ScramError::NonceMismatch)
        );

        // Non-UTF-8.
        let (mut s, _) = half_done(keys, "pw");
        assert_eq!(
            s.client_final(b"c=biws,r=\xff,p=x"),
            Err(ScramError::NotUtf8)
        );
    }

    #[test]
    fn methods_out_of_order() {
        let keys = cheap_keys();
        let mut s = ScramServer::new(keys.clone());
        assert!(matches!(
            s.client_final(b"c=biws,r=a,p=a"),
            Err(ScramError::OutOfOrder { .. })
        ));
        // ...and that ended it.
        assert!(matches!(
            s.client_first(b"n,,n=,r=abc"),
            Err(ScramError::OutOfOrder { .. })
        ));

        let mut s = ScramServer::new(keys.clone());
        s.client_first(b"n,,n=,r=abc").unwrap();
        assert!(matches!(
            s.client_first(b"n,,n=,r=abc"),
            Err(ScramError::OutOfOrder { .. })
        ));

        let (mut s, fin) = half_done(keys, "pw");
        s.client_final(fin.as_bytes()).unwrap();
        assert!(matches!(
            s.client_final(fin.as_bytes()),
            Err(ScramError::OutOfOrder { .. })
        ));
        assert!(format!("{s:?}").contains("finished"));
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        let keys = cheap_keys();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let (_, good_final) = half_done(keys.clone(), "pw");
        let seeds: [&[u8]; 2] = [
            b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            good_final.as_bytes(),
        ];
        for _ in 0..3000 {
            let mut msg = seeds[rng.gen_range(0..2)].to_vec();
            for _ in 0..rng.gen_range(0..6) {
                let op = rng.gen_range(0..4);
                let at = rng.gen_range(0..=msg.len());
                match op {
                    0 if at < msg.len() => msg[at] = rng.gen(),
                    1 if at < msg.len() => {
                        msg.remove(at);
                    }
                    2 => msg.insert(at, *b",=pcrn".get(rng.gen_range(0..6)).unwrap()),
                    _ => msg.truncate(at),
                }
            }
            let mut s = ScramServer::new(keys.clone());
            let _ = s.client_first(&msg);
            let (mut s, _) = half_done(keys.clone(), "pw");
            let _ = s.client_final(&msg);
        }
    }

    #[test]
    fn errors_do_not_carry_key_material() {
        let keys = keys_from_pg("pw");
        for e in [
            ScramError::WrongPassword,
            ScramError::NonceMismatch,
            ScramError::BadProof,
        ] {
            let text = e.to_string();
            assert!(!text.contains(&STANDARD.encode(keys.stored_key())));
        }
    }

    #[test]
    fn the_server_iteration_count_is_read_before_anything_is_derived() {
        assert_eq!(server_iterations(b"r=abc,s=c2FsdA==,i=4096"), Some(4096));
        assert_eq!(
            server_iterations(b"r=abc,s=c2FsdA==,i=99999999999"),
            Some(99_999_999_999)
        );
        assert_eq!(server_iterations(b"r=abc,s=c2FsdA=="), None);
        assert_eq!(server_iterations(b"r=abc,s=c2FsdA==,i=-1"), None);
        assert_eq!(server_iterations(b"\xff,i=4096"), None);
    }
}
