//! Stored credentials: parsing a configured password into a [`Secret`], building
//! SCRAM-SHA-256 keys, and the MD5 challenge arithmetic.
//!
//! Owns: PostgreSQL's stored-verifier formats (`SCRAM-SHA-256$...` and `md5...`),
//! SASLprep + PBKDF2 key derivation, deterministic mock keys for unknown users,
//! MD5 digests and responses, and the constant-time comparison the rest of `auth`
//! uses.
//! Does not: do I/O, read config files, run the SCRAM message exchange (that is
//! `scram.rs`), log anything, or put secret material into errors or `Debug` output.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use md5::{Digest as _, Md5};
use rand::RngCore as _;
use sha2::Sha256;

/// Length in bytes of a SCRAM-SHA-256 key (StoredKey, ServerKey, ClientKey,
/// SaltedPassword): the SHA-256 output size.
pub(crate) const SCRAM_KEY_LEN: usize = 32;

/// Iteration count for keys weir derives itself; PostgreSQL's default
/// (`scram_iterations`), so weir's verifiers look like the server's own.
pub(crate) const DEFAULT_ITERATIONS: u32 = 4096;

/// Upper bound on the iteration count weir accepts, in a stored verifier or for
/// [`ScramKeys::derive`].
///
/// PBKDF2 cost is linear in this number: one million rounds of HMAC-SHA-256 is
/// roughly a second of CPU for whoever runs it (weir at config load for a plain
/// password, every client at every login for a stored verifier). PostgreSQL sets
/// no limit, but nothing real uses more; note that some clients refuse counts
/// far lower than this (postgres-protocol >= 0.6.12, and so tokio-postgres, and
/// pgjdbc stop at 100 000).
pub(crate) const MAX_ITERATIONS: u32 = 1_000_000;

/// Salt length for keys weir generates; PostgreSQL's default
/// (`SCRAM_DEFAULT_SALT_LEN`).
pub(crate) const DEFAULT_SALT_LEN: usize = 16;

/// Upper bound on a stored verifier's decoded salt. The salt is echoed to every
/// client in the server-first-message, so it must stay small; PostgreSQL and
/// the common client libraries use 16 bytes.
pub(crate) const MAX_SALT_LEN: usize = 1024;

/// Prefix of PostgreSQL's stored SCRAM-SHA-256 verifier.
const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";

/// Prefix of PostgreSQL's stored MD5 verifier (`md5` + 32 hex digits).
const MD5_PREFIX: &str = "md5";

/// Why a configured password could not be turned into a [`Secret`] or keys.
///
/// Messages name the part that is wrong and never contain the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VerifierError {
    /// The password is the empty string, which PostgreSQL never accepts.
    #[error("the password is empty; PostgreSQL never accepts an empty password, so set one or use another auth method")]
    EmptyPassword,
    /// A `SCRAM-SHA-256$` string without the expected `$`/`:` structure.
    #[error("the SCRAM-SHA-256 verifier must look like SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (as stored in pg_authid.rolpassword)")]
    ScramFormat,
    /// The iteration field is not a plain decimal number.
    #[error("the iteration count of the SCRAM-SHA-256 verifier is not a decimal number")]
    IterationsNotANumber,
    /// The iteration count is outside `1..=MAX_ITERATIONS`.
    #[error("the SCRAM-SHA-256 iteration count {iterations} is out of range; it must be from 1 to {max}")]
    IterationsOutOfRange {
        /// The rejected count (not secret: it is sent to every client).
        iterations: u64,
        /// [`MAX_ITERATIONS`], repeated so the message is self-contained.
        max: u32,
    },
    /// A base64 field of the verifier does not decode.
    #[error("the {field} of the SCRAM-SHA-256 verifier is not valid base64")]
    BadBase64 {
        /// Which field: "salt", "StoredKey" or "ServerKey".
        field: &'static str,
    },
    /// The salt is empty.
    #[error("the salt of the SCRAM-SHA-256 verifier is empty")]
    EmptySalt,
    /// The salt is longer than [`MAX_SALT_LEN`].
    #[error("the salt of the SCRAM-SHA-256 verifier is {len} bytes; at most {max} are accepted")]
    SaltTooLong {
        /// Decoded salt length.
        len: usize,
        /// [`MAX_SALT_LEN`].
        max: usize,
    },
    /// StoredKey or ServerKey does not decode to exactly 32 bytes.
    #[error("the {field} of the SCRAM-SHA-256 verifier decodes to {len} bytes; it must be 32")]
    KeyLength {
        /// Which key: "StoredKey" or "ServerKey".
        field: &'static str,
        /// Decoded length.
        len: usize,
    },
}

/// A user's configured credential, in the form weir will check clients against
/// (and, for `Plain` and `Md5`, can log in to servers with).
///
/// `Debug` is written by hand and redacts everything secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Secret {
    /// A cleartext password. Can answer any server challenge; for SCRAM clients
    /// derive [`ScramKeys`] once at config load.
    Plain(String),
    /// PostgreSQL's md5 verifier: the raw `md5(password || username)` digest.
    /// Valid only for the user name it was made with; clients must be challenged
    /// with md5, not SCRAM.
    Md5([u8; 16]),
    /// PostgreSQL's SCRAM-SHA-256 verifier. Can check SCRAM clients but cannot
    /// log in to a server by itself (that needs the ClientKey it does not hold).
    Scram(ScramKeys),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Plain(_) => f.write_str("Secret::Plain(<redacted>)"),
            Self::Md5(_) => f.write_str("Secret::Md5(<redacted>)"),
            Self::Scram(keys) => f.debug_tuple("Secret::Scram").field(keys).finish(),
        }
    }
}

/// Parse a configured password the way PostgreSQL reads `rolpassword`.
///
/// - `SCRAM-SHA-256$...` must be a well-formed verifier, or this is an error;
/// - `md5` followed by exactly 32 hex digits (either case) is an md5 verifier;
/// - anything else non-empty is a cleartext password (as in PostgreSQL, so
///   `md5` + 31 hex digits is a cleartext password, not an error).
pub(crate) fn parse_secret(s: &str) -> Result<Secret, VerifierError> {
    if s.is_empty() {
        return Err(VerifierError::EmptyPassword);
    }
    if let Some(rest) = s.strip_prefix(SCRAM_PREFIX) {
        return parse_scram(rest).map(Secret::Scram);
    }
    if let Some(hex) = s.strip_prefix(MD5_PREFIX) {
        if let Some(digest) = hex_decode_16(hex) {
            return Ok(Secret::Md5(digest));
        }
    }
    Ok(Secret::Plain(s.to_owned()))
}

/// Parse `<iterations>:<salt>$<StoredKey>:<ServerKey>` (the part after the prefix).
fn parse_scram(rest: &str) -> Result<ScramKeys, VerifierError> {
    let (params, keys) = split_exact(rest, '$').ok_or(VerifierError::ScramFormat)?;
    let (iterations, salt) = split_exact(params, ':').ok_or(VerifierError::ScramFormat)?;
    let (stored_key, server_key) = split_exact(keys, ':').ok_or(VerifierError::ScramFormat)?;

    let iterations = parse_iterations(iterations)?;
    let salt = STANDARD
        .decode(salt)
        .map_err(|_| VerifierError::BadBase64 { field: "salt" })?;
    check_salt(&salt)?;
    let stored_key = decode_key(stored_key, "StoredKey")?;
    let server_key = decode_key(server_key, "ServerKey")?;
    Ok(ScramKeys {
        iterations,
        salt,
        stored_key,
        server_key,
        previous: Vec::new(),
    })
}

/// Split on the only occurrence of `sep`; `None` if it occurs zero or several times.
fn split_exact(s: &str, sep: char) -> Option<(&str, &str)> {
    let (a, b) = s.split_once(sep)?;
    if b.contains(sep) {
        return None;
    }
    Some((a, b))
}

/// Digits only (no sign, no spaces), then the range check.
fn parse_iterations(s: &str) -> Result<u32, VerifierError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifierError::IterationsNotANumber);
    }
    // Saturate absurdly long digit strings instead of failing to parse them, so
    // the error still says "out of range".
    let n = s.parse::<u64>().unwrap_or(u64::MAX);
    check_iterations(n)
}

/// `1..=MAX_ITERATIONS`, or an error naming the count.
fn check_iterations(n: u64) -> Result<u32, VerifierError> {
    match u32::try_from(n) {
        Ok(i) if (1..=MAX_ITERATIONS).contains(&i) => Ok(i),
        _ => Err(VerifierError::IterationsOutOfRange {
            iterations: n,
            max: MAX_ITERATIONS,
        }),
    }
}

/// Non-empty and at most [`MAX_SALT_LEN`] bytes.
fn check_salt(salt: &[u8]) -> Result<(), VerifierError> {
    if salt.is_empty() {
        return Err(VerifierError::EmptySalt);
    }
    if salt.len() > MAX_SALT_LEN {
        return Err(VerifierError::SaltTooLong {
            len: salt.len(),
            max: MAX_SALT_LEN,
        });
    }
    Ok(())
}

/// Decode a base64 key that must be exactly [`SCRAM_KEY_LEN`] bytes.
fn decode_key(b64: &str, field: &'static str) -> Result<[u8; SCRAM_KEY_LEN], VerifierError> {
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| VerifierError::BadBase64 { field })?;
    let len = bytes.len();
    <[u8; SCRAM_KEY_LEN]>::try_from(bytes).map_err(|_| VerifierError::KeyLength { field, len })
}

/// What a SCRAM-SHA-256 server needs to know about one user: PostgreSQL's stored
/// verifier, minus the password.
///
/// Every value of this type is valid (iterations in `1..=MAX_ITERATIONS`, salt
/// non-empty and at most `MAX_SALT_LEN`), so [`ScramKeys::to_verifier_string`]
/// always round-trips through [`parse_secret`]. `Debug` redacts the keys.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ScramKeys {
    /// PBKDF2 rounds the client must run; sent in the server-first-message.
    iterations: u32,
    /// PBKDF2 salt; sent (base64) in the server-first-message.
    salt: Vec<u8>,
    /// `SHA256(ClientKey)`: what a client proof is checked against.
    stored_key: [u8; SCRAM_KEY_LEN],
    /// `HMAC(SaltedPassword, "Server Key")`: signs the server-final-message so
    /// the client knows weir holds the verifier.
    server_key: [u8; SCRAM_KEY_LEN],
    /// The stored and server keys of previous passwords (a rotation), with the same salt
    /// and iterations: a proof for any of them is accepted.
    previous: Vec<([u8; SCRAM_KEY_LEN], [u8; SCRAM_KEY_LEN])>,
}

impl fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramKeys")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

impl ScramKeys {
    /// Derive keys from a password: SASLprep (skipped, using the raw bytes, when
    /// the password is not valid SASLprep input, exactly as PostgreSQL and libpq
    /// do), then PBKDF2-HMAC-SHA-256.
    ///
    /// CPU heavy by design: `iterations` rounds of HMAC (a few ms at 4096 in a
    /// release build, ~1 s at [`MAX_ITERATIONS`]). Call it once per user at
    /// config load, never per connection, and never for a user name a client
    /// chose (use [`ScramKeys::mock`] for unknown users).
    #[cfg_attr(not(test), allow(dead_code))] // for auth_query verifiers (security issue)
    pub(crate) fn derive(
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, VerifierError> {
        check_iterations(u64::from(iterations))?;
        check_salt(salt)?;
        Ok(Self::derive_unchecked(password, salt, iterations))
    }

    /// Keys for a cleartext password with a fresh random 16-byte salt and 4096
    /// iterations (PostgreSQL's defaults). CPU heavy like [`ScramKeys::derive`].
    pub(crate) fn from_plain(password: &str) -> Self {
        let mut salt = [0u8; DEFAULT_SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::derive_unchecked(password, &salt, DEFAULT_ITERATIONS)
    }

    /// [`ScramKeys::derive`] for arguments already known to be in range.
    fn derive_unchecked(password: &str, salt: &[u8], iterations: u32) -> Self {
        let prepared = match stringprep::saslprep(password) {
            Ok(p) => p,
            Err(_) => std::borrow::Cow::Borrowed(password),
        };
        let salted: [u8; SCRAM_KEY_LEN] = pbkdf2::pbkdf2_hmac_array::<Sha256, SCRAM_KEY_LEN>(
            prepared.as_bytes(),
            salt,
            iterations,
        );
        let client_key = hmac_sha256(&salted, &[b"Client Key"]);
        Self {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, &[b"Server Key"]),
            previous: Vec::new(),
        }
    }

    /// Deterministic fake keys for a user weir does not know, so a client probing
    /// for user names gets the same-looking exchange (same iterations, a salt of
    /// the usual length that is stable per name) and then fails with a wrong
    /// password, as PostgreSQL's own mock authentication does.
    ///
    /// `server_secret` must be random per weir process (or per install) and never
    /// shown: with it, anyone could tell mock salts from real ones. Cheap: four
    /// HMACs, no PBKDF2. No password matches the result, because its StoredKey
    /// is not the hash of any known ClientKey.
    pub(crate) fn mock(user: &str, server_secret: &[u8; SCRAM_KEY_LEN]) -> Self {
        let u = user.as_bytes();
        let salt_full = hmac_sha256(server_secret, &[b"weir mock salt\0", u]);
        let salt = salt_full
            .get(..DEFAULT_SALT_LEN)
            .unwrap_or(&salt_full)
            .to_vec();
        Self {
            iterations: DEFAULT_ITERATIONS,
            salt,
            stored_key: hmac_sha256(server_secret, &[b"weir mock stored key\0", u]),
            server_key: hmac_sha256(server_secret, &[b"weir mock server key\0", u]),
            previous: Vec::new(),
        }
    }

    /// PostgreSQL's stored form,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, suitable
    /// for `[[users]] password` or `ALTER ROLE ... PASSWORD`.
    #[cfg_attr(not(test), allow(dead_code))] // for SHOW USERS and the PgBouncer import
    pub(crate) fn to_verifier_string(&self) -> String {
        format!(
            "{SCRAM_PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key),
        )
    }

    /// PBKDF2 rounds a client must run for this user.
    pub(crate) fn iterations(&self) -> u32 {
        self.iterations
    }

    /// PBKDF2 salt (raw bytes; base64 it for the wire).
    pub(crate) fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// `SHA256(ClientKey)`, against which client proofs are checked.
    pub(crate) fn stored_key(&self) -> &[u8; SCRAM_KEY_LEN] {
        &self.stored_key
    }

    /// Key that signs the server-final-message.
    pub(crate) fn server_key(&self) -> &[u8; SCRAM_KEY_LEN] {
        &self.server_key
    }

    /// Every (stored key, server key) a proof may match: the password's, then the previous
    /// passwords'.
    pub(crate) fn candidates(
        &self,
    ) -> impl Iterator<Item = (&[u8; SCRAM_KEY_LEN], &[u8; SCRAM_KEY_LEN])> {
        std::iter::once((&self.stored_key, &self.server_key)).chain(
            self.previous
                .iter()
                .map(|(stored, server)| (stored, server)),
        )
    }

    /// Also accepts `secret`, a previous password: plaintext is derived with this salt and
    /// iteration count; a SCRAM verifier must already have them (a client is sent one salt).
    pub(crate) fn also_accept(&mut self, secret: &Secret) -> Result<(), &'static str> {
        let keys = match secret {
            Secret::Plain(pw) => Self::derive_unchecked(pw, &self.salt, self.iterations),
            Secret::Scram(k) if k.salt == self.salt && k.iterations == self.iterations => k.clone(),
            Secret::Scram(_) => {
                return Err("a SCRAM verifier in previous_passwords must have the salt and iterations of password's; give it in plaintext instead")
            }
            Secret::Md5(_) => {
                return Err("an md5 verifier cannot be checked by SCRAM; give the previous password in plaintext")
            }
        };
        self.previous.push((keys.stored_key, keys.server_key));
        Ok(())
    }
}

/// HMAC-SHA-256 with a 32-byte key over the concatenation of `parts`.
///
/// Built with `KeyInit::new` on the key zero-padded to the 64-byte block, which
/// is exactly what HMAC does to a short key (RFC 2104), so no fallible
/// `new_from_slice` is needed. Every key in SCRAM-SHA-256 is 32 bytes.
pub(crate) fn hmac_sha256(key: &[u8; SCRAM_KEY_LEN], parts: &[&[u8]]) -> [u8; SCRAM_KEY_LEN] {
    let mut block = [0u8; 64];
    for (dst, src) in block.iter_mut().zip(key) {
        *dst = *src;
    }
    let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; SCRAM_KEY_LEN] {
    <Sha256 as sha2::Digest>::digest(data).into()
}

/// Compare two byte strings in time that depends only on their lengths (which
/// are public here), not on where they first differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// PostgreSQL's md5 verifier digest: `md5(password || user)`.
pub(crate) fn md5_digest(user: &str, password: &str) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(password.as_bytes());
    md5.update(user.as_bytes());
    md5.finalize().into()
}

/// The md5 PasswordMessage body (without its NUL terminator) for a challenge
/// `salt`: `"md5" + hex(md5(hex(digest) || salt))`.
///
/// Used both to answer a server's md5 challenge from a stored verifier and to
/// compute what a client should send.
pub(crate) fn md5_client_response(digest: &[u8; 16], salt: [u8; 4]) -> String {
    let mut md5 = Md5::new();
    md5.update(hex_encode(digest).as_bytes());
    md5.update(salt);
    let out: [u8; 16] = md5.finalize().into();
    format!("{MD5_PREFIX}{}", hex_encode(&out))
}

/// Whether a client's md5 PasswordMessage body (without the NUL terminator)
/// answers challenge `salt` for `digest`. Compared in constant time; exact
/// match as in PostgreSQL (lowercase hex, `md5` prefix).
pub(crate) fn md5_verify(digest: &[u8; 16], salt: [u8; 4], client_response: &[u8]) -> bool {
    constant_time_eq(
        md5_client_response(digest, salt).as_bytes(),
        client_response,
    )
}

/// Lowercase hex of `bytes`.
fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            s.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    s
}

/// Exactly 32 hex digits (either case) to 16 bytes, else `None`.
fn hex_decode_16(s: &str) -> Option<[u8; 16]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (dst, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *dst = (nibble(*hi)? << 4) | nibble(*lo)?;
    }
    Some(out)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    /// A valid verifier string with the given fields (base64 done here).
    fn verifier(iter: &str, salt: &[u8], stored: &[u8], server: &[u8]) -> String {
        format!(
            "SCRAM-SHA-256${iter}:{}${}:{}",
            STANDARD.encode(salt),
            STANDARD.encode(stored),
            STANDARD.encode(server)
        )
    }

    fn scram(s: &str) -> ScramKeys {
        match parse_secret(s).unwrap() {
            Secret::Scram(k) => k,
            other => panic!("expected a SCRAM secret, got {other:?}"),
        }
    }

    #[test]
    fn postgres_protocol_verifier_matches_our_derivation() {
        for password in ["pencil", "pässwörd", "I\u{00AD}X", "\u{2168}", "a\u{0007}b"] {
            let theirs = postgres_protocol::password::scram_sha_256(password.as_bytes());
            let keys = scram(&theirs);
            assert_eq!(keys.iterations(), 4096);
            assert_eq!(keys.salt().len(), 16);
            let ours = ScramKeys::derive(password, keys.salt(), keys.iterations()).unwrap();
            assert_eq!(ours, keys, "derivation differs for {password:?}");
            assert_eq!(ours.to_verifier_string(), theirs);
        }
    }

    #[test]
    fn saslprep_applied_and_skipped_like_postgres() {
        // U+00AD (soft hyphen) maps to nothing: "I\u{AD}X" prepares to "IX".
        let salt = b"0123456789abcdef";
        let a = ScramKeys::derive("I\u{00AD}X", salt, 1).unwrap();
        let b = ScramKeys::derive("IX", salt, 1).unwrap();
        assert_eq!(a, b);
        // A prohibited control character makes SASLprep fail: raw bytes are used.
        let c = ScramKeys::derive("a\u{0007}b", salt, 1).unwrap();
        let d = ScramKeys::derive("ab", salt, 1).unwrap();
        assert_ne!(c, d);
    }

    #[test]
    fn to_verifier_string_round_trips() {
        let keys = ScramKeys::from_plain("secret");
        let s = keys.to_verifier_string();
        assert!(s.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(scram(&s), keys);
        assert_ne!(
            ScramKeys::from_plain("secret").salt(),
            keys.salt(),
            "salt is random"
        );
    }

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = ScramKeys::derive("pencil", &salt, 4096).unwrap();
        // ServerSignature over the RFC's AuthMessage must be the RFC's v=.
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
                    r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                    s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
                    c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac_sha256(keys.server_key(), &[auth.as_bytes()]);
        assert_eq!(
            STANDARD.encode(sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn hmac_with_padded_key_matches_new_from_slice() {
        let key = [7u8; 32];
        let mut m = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&key).unwrap();
        m.update(b"abc");
        let expect: [u8; 32] = m.finalize().into_bytes().into();
        assert_eq!(hmac_sha256(&key, &[b"a", b"bc"]), expect);
    }

    #[test]
    fn md5_secret_and_plain() {
        let hexed = postgres_protocol::password::md5(b"pw", "alice");
        let Secret::Md5(d) = parse_secret(&hexed).unwrap() else {
            panic!()
        };
        assert_eq!(d, md5_digest("alice", "pw"));
        let upper = format!("md5{}", hexed[3..].to_uppercase());
        assert_eq!(parse_secret(&upper).unwrap(), Secret::Md5(d));
        // Not exactly 32 hex digits: a cleartext password, as in PostgreSQL.
        for plain in [
            "md5",
            "md5abc",
            &hexed[..34],
            &format!("{hexed}0"),
            "md5zz3456789012345678901234567890",
            "MD5",
            "hunter2",
        ] {
            assert_eq!(
                parse_secret(plain).unwrap(),
                Secret::Plain(plain.to_owned()),
                "{plain}"
            );
        }
        assert_eq!(parse_secret(""), Err(VerifierError::EmptyPassword));
    }

    #[test]
    fn md5_response_matches_postgres_protocol() {
        let salt = [0xde, 0xad, 0xbe, 0xef];
        let digest = md5_digest("bob", "secret");
        let theirs = postgres_protocol::authentication::md5_hash(b"bob", b"secret", salt);
        assert_eq!(md5_client_response(&digest, salt), theirs);
        assert!(md5_verify(&digest, salt, theirs.as_bytes()));
        let wrong = postgres_protocol::authentication::md5_hash(b"bob", b"secreT", salt);
        assert!(!md5_verify(&digest, salt, wrong.as_bytes()));
        assert!(!md5_verify(&digest, [0, 0, 0, 0], theirs.as_bytes()));
        assert!(!md5_verify(&digest, salt, b""));
        assert!(!md5_verify(&digest, salt, format!("{theirs}\0").as_bytes()));
        assert!(!md5_verify(&digest, salt, theirs.to_uppercase().as_bytes()));
    }

    #[test]
    fn malformed_scram_verifiers_are_rejected_with_reasons() {
        let k = [1u8; 32];
        let s16 = [2u8; 16];
        assert!(matches!(
            parse_secret(&verifier("4096", &s16, &k, &k)),
            Ok(Secret::Scram(_))
        ));
        let cases: Vec<(String, VerifierError)> = vec![
            ("SCRAM-SHA-256$".into(), VerifierError::ScramFormat),
            ("SCRAM-SHA-256$4096:abc".into(), VerifierError::ScramFormat),
            (
                format!("{}$x", verifier("4096", &s16, &k, &k)),
                VerifierError::ScramFormat,
            ),
            (verifier("4096:1", &s16, &k, &k), VerifierError::ScramFormat),
            (
                verifier("", &s16, &k, &k),
                VerifierError::IterationsNotANumber,
            ),
            (
                verifier("+4096", &s16, &k, &k),
                VerifierError::IterationsNotANumber,
            ),
            (
                verifier(" 4096", &s16, &k, &k),
                VerifierError::IterationsNotANumber,
            ),
            (
                verifier("-1", &s16, &k, &k),
                VerifierError::IterationsNotANumber,
            ),
            (
                verifier("0", &s16, &k, &k),
                VerifierError::IterationsOutOfRange {
                    iterations: 0,
                    max: MAX_ITERATIONS,
                },
            ),
            (
                verifier("1000001", &s16, &k, &k),
                VerifierError::IterationsOutOfRange {
                    iterations: 1_000_001,
                    max: MAX_ITERATIONS,
                },
            ),
            (
                verifier("99999999999999999999999", &s16, &k, &k),
                VerifierError::IterationsOutOfRange {
                    iterations: u64::MAX,
                    max: MAX_ITERATIONS,
                },
            ),
            (verifier("4096", &[], &k, &k), VerifierError::EmptySalt),
            (
                verifier("4096", &[0; 1025], &k, &k),
                VerifierError::SaltTooLong {
                    len: 1025,
                    max: MAX_SALT_LEN,
                },
            ),
            (
                verifier("4096", &s16, &[1; 31], &k),
                VerifierError::KeyLength {
                    field: "StoredKey",
                    len: 31,
                },
            ),
            (
                verifier("4096", &s16, &k, &[1; 33]),
                VerifierError::KeyLength {
                    field: "ServerKey",
                    len: 33,
                },
            ),
            (
                "SCRAM-SHA-256$4096:!!$AA==:AA==".into(),
                VerifierError::BadBase64 { field: "salt" },
            ),
            (
                format!("SCRAM-SHA-256$4096:c2FsdA==${}:{}", "x", STANDARD.encode(k)),
                VerifierError::BadBase64 { field: "StoredKey" },
            ),
            (
                format!("SCRAM-SHA-256$4096:c2FsdA==${}:", STANDARD.encode(k)),
                VerifierError::KeyLength {
                    field: "ServerKey",
                    len: 0,
                },
            ),
        ];
        for (input, want) in cases {
            let got = parse_secret(&input);
            assert_eq!(got, Err(want), "input {input:?}");
        }
    }

    #[test]
    fn errors_and_debug_do_not_leak_secrets() {
        let keys = ScramKeys::from_plain("topsecret");
        let stored_b64 = STANDARD.encode(keys.stored_key());
        let dbg = format!("{:?}", Secret::Scram(keys.clone()));
        assert!(
            !dbg.contains(&stored_b64) && !dbg.contains("stored"),
            "{dbg}"
        );
        assert_eq!(
            format!("{:?}", Secret::Plain("topsecret".into())),
            "Secret::Plain(<redacted>)"
        );
        let bad = format!("SCRAM-SHA-256$4096:c2FsdA==${stored_b64}:{stored_b64}x");
        let err = parse_secret(&bad).unwrap_err().to_string();
        assert!(!err.contains(&stored_b64), "{err}");
    }

    #[test]
    fn derive_bounds() {
        assert!(ScramKeys::derive("pw", b"salt", 0).is_err());
        assert!(ScramKeys::derive("pw", b"salt", MAX_ITERATIONS + 1).is_err());
        assert_eq!(
            ScramKeys::derive("pw", b"", 1),
            Err(VerifierError::EmptySalt)
        );
        assert!(ScramKeys::derive("pw", b"salt", 1).is_ok());
    }

    #[test]
    fn mock_keys_are_deterministic_and_look_real() {
        let secret = [9u8; 32];
        let a = ScramKeys::mock("nobody", &secret);
        assert_eq!(a, ScramKeys::mock("nobody", &secret));
        assert_ne!(a.salt(), ScramKeys::mock("nobody2", &secret).salt());
        assert_ne!(a.salt(), ScramKeys::mock("nobody", &[8u8; 32]).salt());
        assert_eq!(a.iterations(), DEFAULT_ITERATIONS);
        assert_eq!(a.salt().len(), DEFAULT_SALT_LEN);
        assert_eq!(scram(&a.to_verifier_string()), a);
    }

    #[test]
    fn constant_time_eq_basics() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
