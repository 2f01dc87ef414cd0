//! Authentication: the user list weir checks clients against, how each user is
//! challenged, and what weir can answer a server's challenge with.
//!
//! Owns: user entries with SCRAM keys derived once per user, md5 digests, the choice of
//! method. Sans-IO: the client task runs the exchange (see `client::login`).
//! Does not: read sockets or configuration files.

pub(crate) mod passthrough;
pub(crate) mod scram;
pub(crate) mod verifier;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{AuthMethod, UserConfig};
pub(crate) use passthrough::{KeyedClient, KeyedError, PassThrough};
pub(crate) use scram::{server_iterations, ScramError, ScramServer};
pub(crate) use verifier::{md5_client_response, md5_digest, md5_verify, ScramKeys};
use verifier::{parse_secret, Secret, VerifierError};

/// What weir can log in to servers with, for one user.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum ServerPassword {
    /// No password: only servers that trust weir accept this user.
    None,
    /// The plaintext password: answers cleartext, md5 and SCRAM.
    Plain(String),
    /// An md5 verifier: answers md5 only.
    Md5([u8; 16]),
    /// Only a SCRAM verifier: answers SCRAM with the ClientKey the user's first client
    /// login revealed (pass-through), and nothing before that login.
    Scram(Arc<PassThrough>),
}

impl std::fmt::Debug for ServerPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Plain(_) => "Plain(..)",
            Self::Md5(_) => "Md5(..)",
            Self::Scram(_) => "Scram(..)",
        })
    }
}

/// How a client is challenged.
#[derive(Debug, Clone)]
pub(crate) enum Challenge {
    /// No password asked.
    Trust,
    /// md5 with the user's digests: the password's, then previous passwords'.
    Md5(Vec<[u8; 16]>),
    /// SCRAM-SHA-256 with keys derived at load time.
    Scram(Arc<ScramKeys>),
    /// A TLS client certificate, verified against `tls.client_ca`, whose common name is
    /// the user name.
    Cert,
}

/// One user as weir authenticates it.
#[derive(Debug)]
pub(crate) struct UserEntry {
    /// Role name, as clients and servers know it.
    pub(crate) name: String,
    /// How clients logging in as this user are challenged.
    pub(crate) challenge: Challenge,
    /// What weir answers a server with.
    pub(crate) server_password: ServerPassword,
}

impl UserEntry {
    /// The entry for `user` (position `index` in `[[users]]`, for errors): its challenge and
    /// what it answers servers with. CPU heavy for a plaintext password (SCRAM keys are
    /// derived). With `previous`, the same user's entry before a reload or a fresh lookup,
    /// an unchanged SCRAM verifier keeps what pass-through learned.
    pub(crate) fn build(
        user: &UserConfig,
        index: usize,
        default: AuthMethod,
        previous: Option<&UserEntry>,
    ) -> Result<Self, AuthConfigError> {
        let secret = match user.password.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                parse_secret(s).map_err(|source| AuthConfigError::BadSecret { index, source })?,
            ),
        };
        let method = user.auth_method.unwrap_or(default);
        let unusable = |reason| AuthConfigError::Unusable {
            index,
            name: user.name.clone(),
            reason,
        };
        let challenge = match (method, &secret) {
            (AuthMethod::Trust, _) => Challenge::Trust,
            (AuthMethod::Cert, _) => Challenge::Cert,
            (_, None) => {
                return Err(unusable(
                    "a password is required unless the auth method is trust",
                ))
            }
            // A user stored as an md5 verifier can only be checked with md5.
            (_, Some(Secret::Md5(digest))) => Challenge::Md5(vec![*digest]),
            (AuthMethod::Md5, Some(Secret::Plain(pw))) => {
                Challenge::Md5(vec![md5_digest(&user.name, pw)])
            }
            // md5 cannot be checked against a SCRAM verifier: challenge with SCRAM instead.
            (_, Some(Secret::Scram(keys))) => Challenge::Scram(Arc::new(keys.clone())),
            (AuthMethod::ScramSha256, Some(Secret::Plain(pw))) => {
                Challenge::Scram(Arc::new(ScramKeys::from_plain(pw)))
            }
        };
        let challenge = with_previous(challenge, user, index)?;
        let server_password = match secret {
            None => ServerPassword::None,
            Some(Secret::Plain(pw)) => ServerPassword::Plain(pw),
            Some(Secret::Md5(d)) => ServerPassword::Md5(d),
            Some(Secret::Scram(keys)) => {
                let fresh = PassThrough::new(&keys);
                let kept = previous.and_then(|old| match &old.server_password {
                    ServerPassword::Scram(p) if **p == fresh => Some(p.clone()),
                    _ => None,
                });
                ServerPassword::Scram(kept.unwrap_or_else(|| Arc::new(fresh)))
            }
        };
        Ok(Self {
            name: user.name.clone(),
            challenge,
            server_password,
        })
    }
}

/// Why the user list could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthConfigError {
    /// A password or verifier is malformed.
    #[error("users[{index}].password: {source}")]
    BadSecret {
        /// Position in `[[users]]`.
        index: usize,
        /// What is wrong.
        #[source]
        source: VerifierError,
    },
    /// A previous password cannot be checked the way the user is challenged.
    #[error("users[{index}].previous_passwords[{i}]: {reason}")]
    Previous {
        /// Position in `[[users]]`.
        index: usize,
        /// Position in `previous_passwords`.
        i: usize,
        /// Why.
        reason: String,
    },
    /// The method needs something the user's password cannot give.
    #[error("users[{index}] ({name}): {reason}")]
    Unusable {
        /// Position in `[[users]]`.
        index: usize,
        /// The user.
        name: String,
        /// What is missing.
        reason: &'static str,
    },
}

/// All users, built once per configuration load (SCRAM keys are derived here, not per login).
#[derive(Debug)]
pub(crate) struct UserTable {
    /// By name.
    users: HashMap<String, Arc<UserEntry>>,
    /// Users not listed may log in (auth.method = trust).
    trust_unlisted: bool,
    /// Seed of the fake SCRAM exchange given to unknown users.
    mock_secret: [u8; 32],
}

/// `challenge` also accepting the user's `previous_passwords`.
fn with_previous(
    mut challenge: Challenge,
    user: &UserConfig,
    index: usize,
) -> Result<Challenge, AuthConfigError> {
    for (i, previous) in user.previous_passwords.iter().enumerate() {
        let refused = |reason: String| AuthConfigError::Previous { index, i, reason };
        let secret = parse_secret(previous).map_err(|e| refused(e.to_string()))?;
        match (&mut challenge, &secret) {
            (Challenge::Trust | Challenge::Cert, _) => {}
            (Challenge::Md5(digests), Secret::Md5(d)) => digests.push(*d),
            (Challenge::Md5(digests), Secret::Plain(pw)) => digests.push(md5_digest(&user.name, pw)),
            (Challenge::Md5(_), Secret::Scram(_)) => {
                return Err(refused("a SCRAM verifier cannot be checked by md5; give the previous password in plaintext".to_owned()))
            }
            (Challenge::Scram(keys), _) => Arc::make_mut(keys)
                .also_accept(&secret)
                .map_err(|reason| refused(reason.to_owned()))?,
        }
    }
    Ok(challenge)
}

impl UserTable {
    /// Builds the table; the CPU-heavy key derivation happens here. A user whose verifier
    /// is the same as in `previous` keeps what pass-through learned there, and with it the
    /// pools built for it.
    pub(crate) fn build(
        users: &[UserConfig],
        default: AuthMethod,
        previous: Option<&UserTable>,
    ) -> Result<Self, AuthConfigError> {
        let mut table = HashMap::new();
        for (index, user) in users.iter().enumerate() {
            let old = previous.and_then(|p| p.users.get(&user.name));
            let entry = UserEntry::build(user, index, default, old.map(|e| &**e))?;
            table.insert(user.name.clone(), Arc::new(entry));
        }
        Ok(Self {
            users: table,
            trust_unlisted: default == AuthMethod::Trust,
            mock_secret: rand::random(),
        })
    }

    /// The entry for `name`. An unlisted user gets a trust entry when the default method is
    /// trust, and `None` otherwise.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<UserEntry>> {
        if let Some(u) = self.users.get(name) {
            return Some(u.clone());
        }
        self.trust_unlisted.then(|| {
            Arc::new(UserEntry {
                name: name.to_owned(),
                challenge: Challenge::Trust,
                server_password: ServerPassword::None,
            })
        })
    }

    /// Fake SCRAM keys for an unknown user, so the exchange does not reveal that it is unknown.
    pub(crate) fn mock_keys(&self, name: &str) -> Arc<ScramKeys> {
        Arc::new(ScramKeys::mock(name, &self.mock_secret))
    }

    /// Users that cannot log in to servers, with the reason (for `--check`).
    pub(crate) fn server_login_warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .users
            .values()
            .filter(|u| matches!(u.server_password, ServerPassword::Scram(_)))
            .map(|u| {
                format!(
                    "user {:?} is given only as a SCRAM verifier: weir logs in to servers as this user with the key \
                     a client's own SCRAM login reveals (pass-through), so the servers must hold this same verifier, \
                     and no server connection opens for the user before its first client logs in",
                    u.name
                )
            })
            .collect();
        out.sort();
        out
    }
}
