//! TLS toward clients and servers: the rustls configurations from `[tls]` and
//! `[server_tls]`, the handshakes, and `TlsIo`, a TLS connection read and written without
//! blocking, the way the relay uses a socket.
//!
//! Owns: loading certificates, certificate verification modes, the handshakes, record I/O
//! over a `TcpStream`.
//! Does not: decide whether a peer must use TLS (`client::start`, `server::login`), parse
//! messages.
//!
//! Why rustls directly rather than through tokio-rustls's `TlsStream`: the relay works on
//! non-blocking `try_read`/`try_write` calls and readiness, not on `AsyncRead`/`AsyncWrite`,
//! and a direct-TLS client's ClientHello has already been read into weir's buffer when the
//! handshake starts. Both are a few lines over `rustls::ServerConnection`.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};
use tokio::net::TcpStream;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{ServerTlsMode, ServerTlsSettings, TlsSettings};

/// The ALPN protocol PostgreSQL clients name (PostgreSQL 17); a direct TLS connection must.
pub(crate) const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Why `[tls]` could not be turned into a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsConfigError {
    /// A certificate file is missing, unreadable or holds no certificate.
    #[error("{key}: cannot use {path}: {reason}")]
    Cert {
        /// The key that names the file (`tls.cert`, `server_tls.cert`).
        key: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A key file is missing, unreadable or holds no private key.
    #[error("{key}: cannot use {path}: {reason}")]
    Key {
        /// The configuration key that names the file (`tls.key`, `server_tls.key`).
        key: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, say).
    #[error("tls: {0}")]
    Refused(String),
    /// `server_tls.ca` or `tls.client_ca` is missing, unreadable or holds no usable CA
    /// certificate.
    #[error("{key}: cannot use {path}: {reason}")]
    Ca {
        /// The key that names the file.
        key: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The one crypto provider, for both sides.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What TLS clients are offered, built from `[tls]`.
#[derive(Debug, Clone)]
pub(crate) struct Offered {
    /// The rustls server configuration.
    pub(crate) config: Arc<ServerConfig>,
    /// The `tls-server-end-point` channel-binding data of weir's certificate (RFC 5929):
    /// with it, SCRAM-SHA-256-PLUS is offered. `None` when the certificate's signature
    /// algorithm names no hash to use (Ed25519, RSA-PSS), as PostgreSQL also cannot bind.
    pub(crate) end_point: Option<Arc<[u8]>>,
}

/// What clients are offered: built from `[tls]`, or `None` without it or with
/// `tls.mode = "disable"`.
pub(crate) fn offered(config: &crate::config::Config) -> Result<Option<Offered>, TlsConfigError> {
    match &config.tls {
        Some(t) if t.mode != crate::config::TlsMode::Disable => server_config(t).map(Some),
        _ => Ok(None),
    }
}

/// The server configuration for `settings`: its certificate chain and key, TLS 1.2 and
/// 1.3, ALPN `postgresql`. Read again on every RELOAD, so a renewed certificate is used by
/// the clients that connect after it.
fn server_config(settings: &TlsSettings) -> Result<Offered, TlsConfigError> {
    let (certs, key) = cert_and_key((&settings.cert, "tls.cert"), (&settings.key, "tls.key"))?;
    let end_point = certs
        .first()
        .and_then(|leaf| end_point(leaf))
        .map(Arc::from);
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Refused(e.to_string()))?;
    let builder = match &settings.client_ca {
        // Asked for, checked when given, not required: the auth method decides (`cert`).
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca, "tls.client_ca")?),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsConfigError::Refused(e.to_string()))?,
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsConfigError::Refused(e.to_string()))?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Offered {
        config: Arc::new(config),
        end_point,
    })
}

/// The `tls-server-end-point` binding data of a certificate (RFC 5929, section 4.1): its
/// hash with the hash function of its signature algorithm, SHA-256 for MD5 and SHA-1.
/// `None` for an algorithm that names no hash, or a certificate that does not parse.
fn end_point(der: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest as _;
    use x509_cert::der::Decode as _;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let hash = match cert.signature_algorithm.oid.to_string().as_str() {
        // md5WithRSA, sha1WithRSA, sha256WithRSA, ecdsa-with-SHA1, ecdsa-with-SHA256
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2" => sha2::Sha256::digest(der).to_vec(),
        // sha384WithRSA, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => sha2::Sha384::digest(der).to_vec(),
        // sha512WithRSA, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => sha2::Sha512::digest(der).to_vec(),
        _ => return None,
    };
    Some(hash)
}

/// A certificate chain (leaf first) and its private key from PEM files, each named by
/// its configuration key in errors.
fn cert_and_key(
    (cert_path, cert_key): (&std::path::Path, &'static str),
    (key_path, key_key): (&std::path::Path, &'static str),
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsConfigError> {
    let cert_error = |reason: String| TlsConfigError::Cert {
        key: cert_key,
        path: cert_path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_error("no PEM certificate in it".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsConfigError::Key {
        key: key_key,
        path: key_path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok((certs, key))
}

/// The client configuration for connections to the servers, or `None` with
/// `server_tls.mode = "disable"`. `verify-ca` and `verify-full` trust the certificates in
/// `server_tls.ca`; `prefer` and `require` encrypt without checking who answers, as libpq
/// does.
pub(crate) fn client_config(
    settings: &ServerTlsSettings,
) -> Result<Option<Arc<ClientConfig>>, TlsConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Refused(e.to_string()))?;
    let lenient = |chain| Lenient {
        chain,
        provider: provider(),
    };
    // Validation makes sure the verifying modes have their CA file.
    let ca = || {
        settings
            .ca
            .as_deref()
            .map(|ca| roots(ca, "server_tls.ca"))
            .unwrap_or_else(|| {
                Err(TlsConfigError::Refused(format!(
                    "server_tls.mode = \"{}\" needs server_tls.ca",
                    settings.mode.as_str()
                )))
            })
    };
    let verified = match settings.mode {
        ServerTlsMode::Disable => return Ok(None),
        ServerTlsMode::Prefer | ServerTlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(lenient(None))),
        ServerTlsMode::VerifyCa => {
            let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(ca()?), provider())
                .build()
                .map_err(|e| TlsConfigError::Refused(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(lenient(Some(chain))))
        }
        ServerTlsMode::VerifyFull => builder.with_root_certificates(ca()?),
    };
    let config = match &settings.cert {
        Some((cert, key)) => {
            let (certs, key) = cert_and_key((cert, "server_tls.cert"), (key, "server_tls.key"))?;
            verified
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsConfigError::Refused(e.to_string()))?
        }
        None => verified.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// The CA certificates in `path`, named by the configuration key `key`.
fn roots(path: &std::path::Path, key: &'static str) -> Result<RootCertStore, TlsConfigError> {
    let ca_error = |reason: String| TlsConfigError::Ca {
        key,
        path: path.display().to_string(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))? {
        let cert = cert.map_err(|e| ca_error(e.to_string()))?;
        roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no PEM certificate in it".to_owned()));
    }
    Ok(roots)
}

/// The server-certificate check of `verify-ca` (`chain`: the CA's verifier; a name
/// mismatch is let through), or of `prefer` and `require` (`chain: None`: any
/// certificate). Either way the handshake's signatures are checked, so the server holds
/// the key of the certificate it shows.
#[derive(Debug)]
struct Lenient {
    /// rustls's WebPKI verifier for the CA, under `verify-ca`.
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// The signature algorithms.
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection over a socket, driven without blocking.
#[derive(Debug)]
pub(crate) struct TlsIo {
    /// The socket.
    pub(crate) tcp: TcpStream,
    /// rustls's state: records in and out, the plaintext it decrypted.
    tls: Connection,
    /// Plaintext rustls holds that has not been read yet: while any is left the
    /// connection is readable whatever the socket says.
    plaintext: usize,
    /// The client sent close_notify: once the plaintext is read, the stream has ended.
    closed: bool,
}

/// `io::Read` and `io::Write` over a tokio socket's non-blocking calls, for rustls.
struct Sock<'a>(&'a TcpStream);

impl Read for Sock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Sock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A TLS failure as an I/O error (the connection is then closed).
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsIo {
    /// Runs the server side of the handshake on `tcp`. `early` holds bytes already read
    /// from the socket (a direct-TLS ClientHello); they are handed to rustls first.
    pub(crate) async fn accept(
        tcp: TcpStream,
        config: Arc<ServerConfig>,
        early: &mut BytesMut,
    ) -> io::Result<Self> {
        let tls = ServerConnection::new(config).map_err(tls_error)?;
        let mut io = Self::new(tcp, tls.into());
        while early.has_remaining() {
            let n = io.tls.read_tls(&mut early.chunk())?;
            early.advance(n);
            io.process()?;
        }
        io.handshake().await?;
        Ok(io)
    }

    /// Runs the client side of the handshake on `tcp`, toward the server `name`.
    pub(crate) async fn connect(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<Self> {
        let tls = ClientConnection::new(config, name).map_err(tls_error)?;
        let mut io = Self::new(tcp, tls.into());
        io.handshake().await?;
        Ok(io)
    }

    fn new(tcp: TcpStream, tls: Connection) -> Self {
        Self {
            tcp,
            tls,
            plaintext: 0,
            closed: false,
        }
    }

    /// Exchanges handshake records until the handshake is done, and sends the last ones.
    async fn handshake(&mut self) -> io::Result<()> {
        while self.tls.is_handshaking() {
            if self.tls.wants_write() {
                self.tcp.writable().await?;
                self.flush_records()?;
                continue;
            }
            self.tcp.readable().await?;
            match self.tls.read_tls(&mut Sock(&self.tcp)) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => self.process()?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        // The last flight (the server's Finished in TLS 1.2, session tickets in 1.3).
        while self.flush_records()? {
            self.tcp.writable().await?;
        }
        Ok(())
    }

    /// `<version>/<cipher suite>` as negotiated, e.g. `TLSv1.3/TLS13_AES_256_GCM_SHA384`.
    pub(crate) fn description(&self) -> String {
        let version = self
            .tls
            .protocol_version()
            .map(|v| format!("{v:?}").replace('_', "."))
            .unwrap_or_default();
        let suite = self
            .tls
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        format!("{version}/{suite}")
    }

    /// Queues a close_notify alert; `Conn::close` sends it.
    pub(crate) fn send_close_notify(&mut self) {
        self.tls.send_close_notify();
    }

    /// The ALPN protocol the client and weir agreed on, if any.
    pub(crate) fn alpn(&self) -> Option<&[u8]> {
        self.tls.alpn_protocol()
    }

    /// The common name (CN) of the certificate the peer presented, which the verifier
    /// (`tls.client_ca`) has accepted; `None` without a certificate or a CN.
    pub(crate) fn peer_common_name(&self) -> Option<String> {
        common_name(self.tls.peer_certificates()?.first()?)
    }

    /// Decrypts what `read_tls` took in; a bad record or a handshake failure sends its alert
    /// (best effort) and fails.
    fn process(&mut self) -> io::Result<()> {
        match self.tls.process_new_packets() {
            Ok(state) => {
                self.plaintext = state.plaintext_bytes_to_read();
                self.closed = state.peer_has_closed();
                Ok(())
            }
            Err(e) => {
                let _ = self.flush_records();
                Err(tls_error(e))
            }
        }
    }

    /// Writes the records rustls has queued, as far as the socket takes them. Returns
    /// whether some are still queued (the socket is full).
    pub(crate) fn flush_records(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut Sock(&self.tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Whether rustls holds plaintext not read yet, or the peer's close_notify.
    pub(crate) fn has_input(&self) -> bool {
        self.plaintext > 0 || self.closed
    }

    /// Whether records are queued that the socket has not taken yet.
    pub(crate) fn pending_output(&self) -> bool {
        self.tls.wants_write()
    }

    /// Reads plaintext into `buf` (at most `room` bytes): what rustls already holds, else
    /// records from the socket. `Ok(0)` at the end of the stream; `WouldBlock` when the
    /// socket has nothing more.
    pub(crate) fn try_read(&mut self, buf: &mut BytesMut, room: usize) -> io::Result<usize> {
        loop {
            if self.plaintext == 0 && self.closed {
                return Ok(0);
            }
            if self.plaintext > 0 {
                let start = buf.len();
                let want = room.min(self.plaintext).max(1);
                buf.resize(start + want, 0);
                let read = self
                    .tls
                    .reader()
                    .read(buf.get_mut(start..).unwrap_or_default());
                let n = *read.as_ref().unwrap_or(&0);
                buf.truncate(start + n);
                self.plaintext = self.plaintext.saturating_sub(n);
                return read;
            }
            match self.tls.read_tls(&mut Sock(&self.tcp))? {
                0 => return Ok(0),
                _ => {
                    self.process()?;
                    // A key update or alert to answer goes out now, if the socket takes it.
                    self.flush_records()?;
                    if self.plaintext == 0 && self.closed {
                        return Ok(0);
                    }
                }
            }
        }
    }

    /// Encrypts as much of `data` as rustls's buffer takes; `WouldBlock` when that buffer
    /// is full and the socket will not take its records. The records go out in
    /// `flush_records` (the caller's `flush_pending`), once for all the writes before it.
    pub(crate) fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut n = self.tls.writer().write(data)?;
        if n == 0 && !data.is_empty() {
            if self.flush_records()? {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            n = self.tls.writer().write(data)?;
        }
        Ok(n)
    }

    /// Ready to read when rustls holds plaintext, else when the socket is.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.plaintext > 0 || self.closed {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }
}

/// The subject's common name in a DER certificate (the first, if several), when it is a
/// text string.
fn common_name(der: &[u8]) -> Option<String> {
    use x509_cert::der::asn1::ObjectIdentifier;
    use x509_cert::der::Decode as _;
    /// id-at-commonName.
    const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let value = cert
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|attr| attr.oid == CN)?
        .value
        .clone();
    String::from_utf8(value.value().to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use sha2::Digest as _;

    use super::*;

    /// A self-signed certificate for `alg`, as DER.
    fn cert(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "weir unit test");
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn end_point_hashes_with_the_signature_hash() {
        let p256 = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(end_point(&p256), Some(sha2::Sha256::digest(&p256).to_vec()));
        let p384 = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(end_point(&p384), Some(sha2::Sha384::digest(&p384).to_vec()));
        assert_eq!(
            end_point(&cert(&rcgen::PKCS_ED25519)),
            None,
            "Ed25519 names no hash"
        );
        assert_eq!(end_point(b"not a certificate"), None);
        assert_eq!(common_name(&p256).as_deref(), Some("weir unit test"));
        assert_eq!(common_name(b"junk"), None);
    }
}
