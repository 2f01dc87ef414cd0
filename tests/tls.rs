//! TLS between clients and weir, against certificates the test makes: psql and
//! tokio-postgres with `sslmode=require` and `verify-full`, `tls.mode = "require"`, direct
//! TLS (ALPN `postgresql`, no SSLRequest), and a certificate renewed by RELOAD.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use common::admin::{admin_toml, ADMIN, ADMIN_PASSWORD};
use common::tools::{ok_stdout, psql_through};
use common::{
    config_toml, config_toml_with, db_message, fresh_database, sqlstate, Proxy, Settings,
    MD5_PASSWORD, MD5_USER, PASSWORD, USER,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1, as PEM files.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// The CA, to sign client certificates with.
    issuer: (rcgen::Certificate, rcgen::KeyPair),
}

impl Certs {
    /// Makes them in `dir`, their names starting with `name`.
    fn make(dir: &Path, name: &str) -> Certs {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("weir test CA {name}"));
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let key = rcgen::KeyPair::generate().expect("server key");
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server certificate parameters");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
        let certs = Certs {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}-server.pem")),
            key: dir.join(format!("{name}-server.key")),
            issuer: (ca, ca_key),
        };
        std::fs::write(&certs.ca, certs.issuer.0.pem()).expect("write CA");
        std::fs::write(&certs.cert, cert.pem()).expect("write certificate");
        std::fs::write(&certs.key, key.serialize_pem()).expect("write key");
        certs
    }

    /// A client certificate for the common name `cn`, signed by this CA, and its key
    /// (readable by its owner only, as libpq demands), in `dir`.
    fn client(&self, dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt as _;
        let key = rcgen::KeyPair::generate().expect("client key");
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("client parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params
            .signed_by(&key, &self.issuer.0, &self.issuer.1)
            .expect("sign client certificate");
        let (cert_path, key_path) = (
            dir.join(format!("client-{cn}.crt")),
            dir.join(format!("client-{cn}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write client certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write client key");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod client key");
        (cert_path, key_path)
    }

    /// The `[tls]` table for them.
    fn table(&self, mode: &str) -> String {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nmode = \"{mode}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }

    /// A rustls client configuration that trusts this CA only.
    fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(&self.ca).expect("read CA") {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

#[tokio::test]
async fn psql_connects_with_require_and_verify_full() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = Certs::make(dir.path(), "a");
    let other = Certs::make(dir.path(), "other");
    let proxy = Proxy::start(&config_toml(&db, "", &certs.table("allow"))).await;

    let out = psql_through(&proxy, &db, "sslmode=require", &["-c", "\\conninfo"]).await;
    let info = ok_stdout(&out);
    assert!(info.contains("SSL connection (protocol: TLSv1."), "{info}");

    // A result of 3.2 MB crosses many TLS records, and the socket fills up on the way.
    let verify = format!("sslmode=verify-full sslrootcert={}", certs.ca.display());
    let big = "SELECT length(string_agg(md5(i::text), '')) FROM generate_series(1, 100000) i";
    let out = psql_through(&proxy, &db, &verify, &["-c", big]).await;
    assert_eq!(ok_stdout(&out), "3200000");
    let out = psql_through(
        &proxy,
        &db,
        &verify,
        &[
            "-c",
            "SELECT string_agg(md5(i::text), '') FROM generate_series(1, 100000) i",
        ],
    )
    .await;
    assert_eq!(ok_stdout(&out).len(), 3_200_000);

    // A CA that did not sign weir's certificate: verify-full refuses it.
    let wrong = format!("sslmode=verify-full sslrootcert={}", other.ca.display());
    let out = psql_through(&proxy, &db, &wrong, &["-c", "SELECT 1"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate verify failed"), "{stderr}");

    // Without TLS the same database still answers (tls.mode = "allow").
    let out = psql_through(&proxy, &db, "sslmode=disable", &["-c", "SELECT 7"]).await;
    assert_eq!(ok_stdout(&out), "7");
    proxy.stop().await;
}

#[tokio::test]
async fn tokio_postgres_verifies_weir_and_runs_transactions() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = Certs::make(dir.path(), "b");
    let proxy = Proxy::start(&config_toml(&db, "size = 2", &certs.table("require"))).await;
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(certs.client_config(&[]));
    let conninfo = format!(
        "host=localhost port={} user={USER} password={PASSWORD} dbname={db} sslmode=require",
        proxy.port
    );
    // weir offers SCRAM-SHA-256-PLUS; tokio-postgres-rustls 0.13 reads no binding data from
    // the certificate (it parses it as a TBSCertificate), so the client answers plain
    // SCRAM-SHA-256 with the GS2 flag `n`, which must be accepted.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, conn) = tokio_postgres::connect(&conninfo, tls.clone())
            .await
            .expect("TLS connection verified against the test CA");
        tokio::spawn(conn);
        clients.push(client);
    }
    let runs = clients.iter().enumerate().map(|(i, c)| async move {
        let i = i as i32;
        for round in 0..20 {
            let row = c
                .query_one("SELECT $1::int + $2::int", &[&i, &round])
                .await
                .expect("extended protocol over TLS");
            assert_eq!(row.get::<_, i32>(0), i + round);
        }
        let big: String = c
            .query_one("SELECT repeat(md5($1::text), 20000)", &[&i.to_string()])
            .await
            .expect("a 640 KB value")
            .get(0);
        assert_eq!(big.len(), 640_000);
    });
    futures_util::future::join_all(runs).await;
    proxy.stop().await;
}

#[tokio::test]
async fn plaintext_logins_are_refused_when_tls_is_required() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = Certs::make(dir.path(), "c");
    let proxy = Proxy::start(&config_toml(&db, "", &certs.table("require"))).await;
    let err = proxy
        .try_client(USER, PASSWORD, &db)
        .await
        .expect_err("tokio-postgres without TLS is refused");
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"));
    let message = err.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("sslmode=require")),
        "{message:?}"
    );
    let out = psql_through(&proxy, &db, "sslmode=require", &["-c", "SELECT 8"]).await;
    assert_eq!(ok_stdout(&out), "8");
    proxy.stop().await;
}

/// A StartupMessage for `USER` and `db`.
fn startup(db: &str) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i32(196_608);
    for s in ["user", USER, "database", db, ""] {
        body.put_slice(s.as_bytes());
        body.put_u8(0);
    }
    let mut msg = BytesMut::new();
    msg.put_i32(body.len() as i32 + 4);
    msg.put_slice(&body);
    msg
}

/// Opens a direct TLS connection (no SSLRequest) offering `alpn`, sends a StartupMessage
/// and returns the type of the first message weir answers with.
async fn direct_tls(proxy: &Proxy, certs: &Certs, db: &str, alpn: &[&[u8]]) -> u8 {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(certs.client_config(alpn)));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("direct TLS handshake");
    tls.write_all(&startup(db)).await.expect("send startup");
    tls.read_u8().await.expect("weir answers")
}

#[tokio::test]
async fn direct_tls_needs_the_postgresql_alpn() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = Certs::make(dir.path(), "d");
    let proxy = Proxy::start(&config_toml(&db, "", &certs.table("require"))).await;
    // 'R': an authentication request (SCRAM), so the startup was read over TLS.
    assert_eq!(
        direct_tls(&proxy, &certs, &db, &[b"postgresql"]).await,
        b'R'
    );
    // Without the ALPN, as PostgreSQL 17 does: an error, then the connection closes.
    assert_eq!(direct_tls(&proxy, &certs, &db, &[]).await, b'E');
    proxy.stop().await;
}

#[tokio::test]
async fn reload_picks_up_a_renewed_certificate() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Certs::make(dir.path(), "first");
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, admin_toml(&db, "", &first.table("allow"))).expect("write config");
    let proxy = Proxy::start_file(&path).await;
    let verify = |c: &Certs| format!("sslmode=verify-full sslrootcert={}", c.ca.display());
    let out = psql_through(&proxy, &db, &verify(&first), &["-c", "SELECT 1"]).await;
    assert_eq!(ok_stdout(&out), "1");

    // Renewed in place (same paths), by another CA.
    let second = Certs::make(dir.path(), "second");
    std::fs::copy(&second.cert, &first.cert).expect("replace certificate");
    std::fs::copy(&second.key, &first.key).expect("replace key");
    let console = proxy
        .try_client(ADMIN, ADMIN_PASSWORD, "weir")
        .await
        .expect("admin console");
    console.simple_query("RELOAD").await.expect("RELOAD");
    let out = psql_through(&proxy, &db, &verify(&second), &["-c", "SELECT 2"]).await;
    assert_eq!(ok_stdout(&out), "2");

    // SHOW CLIENTS tells a TLS client (its version and cipher suite) from a plain one.
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(second.client_config(&[]));
    let conninfo = format!(
        "host=localhost port={} user={USER} password={PASSWORD} dbname={db} sslmode=require \
         application_name=over-tls",
        proxy.port
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, tls)
        .await
        .expect("TLS client");
    tokio::spawn(conn);
    client.simple_query("SELECT 1").await.expect("served");
    let rows = common::admin::show(&console, "SHOW CLIENTS").await;
    let row = common::admin::row_where(&rows, "application_name", "over-tls");
    let shown = row["tls"].clone().unwrap_or_default();
    assert!(
        shown.starts_with("TLSv1.") && shown.contains('/'),
        "{shown:?}"
    );
    let console_row = common::admin::row_where(&rows, "user", ADMIN);
    assert_eq!(console_row["tls"].as_deref(), Some(""));

    // A key that does not belong to the certificate is refused, and the renewed pair stays.
    std::fs::copy(&first.ca, &first.key).expect("break the key file");
    let err = console.simple_query("RELOAD").await.expect_err("refused");
    let message = err.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("tls.key")),
        "{message:?}"
    );
    let out = psql_through(&proxy, &db, &verify(&second), &["-c", "SELECT 3"]).await;
    assert_eq!(ok_stdout(&out), "3");
    proxy.stop().await;
}

#[tokio::test]
async fn plaintext_is_never_read_as_tls() {
    use common::raw::{startup as raw_startup, Raw};
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = Certs::make(dir.path(), "e");
    let proxy = Proxy::start(&config_toml(&db, "", &certs.table("allow"))).await;
    let ssl_request = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let login = raw_startup(196_608, &[("user", USER), ("database", &db)]);

    // Bytes behind the SSLRequest, before weir's answer (CVE-2021-23214): no 'S', an error.
    let mut raw = Raw::connect(proxy.port).await;
    let mut both = ssl_request.to_vec();
    both.extend_from_slice(&login);
    raw.send(&both).await;
    raw.expect_fatal("08P01").await;

    // A plaintext startup after weir's 'S': not a ClientHello, so the handshake fails and
    // the connection closes; nothing of it is taken for a login.
    let mut raw = Raw::connect(proxy.port).await;
    raw.send(&ssl_request).await;
    assert_eq!(raw.read_bytes(1).await.as_deref(), Some(&b"S"[..]));
    raw.send(&login).await;
    let mut answer = Vec::new();
    while let Some(byte) = raw.read_bytes(1).await {
        answer.extend(byte);
    }
    // A TLS alert record (type 21) at most, never a PostgreSQL message.
    assert!(
        answer.first().is_none_or(|&b| b == 21),
        "weir answered {answer:?}"
    );

    // weir still serves TLS clients and plaintext ones.
    let out = psql_through(&proxy, &db, "sslmode=require", &["-c", "SELECT 9"]).await;
    assert_eq!(ok_stdout(&out), "9");
    let out = psql_through(&proxy, &db, "sslmode=disable", &["-c", "SELECT 10"]).await;
    assert_eq!(ok_stdout(&out), "10");
    proxy.stop().await;
}

/// The certificates the shared server presents, made and installed once for every test
/// of this binary (the server has one certificate at a time).
fn server_certs() -> &'static Certs {
    static CERTS: std::sync::OnceLock<Certs> = std::sync::OnceLock::new();
    CERTS.get_or_init(|| {
        let certs = Certs::make(common::pg().data_dir(), "shared-server");
        server_ssl_on(&certs);
        certs
    })
}

/// Turns TLS on in this test binary's PostgreSQL, with `certs`' certificate; called once,
/// by `server_certs`.
fn server_ssl_on(certs: &Certs) {
    use std::os::unix::fs::MetadataExt;
    {
        let pg = common::pg();
        let data = pg.data_dir().to_path_buf();
        let owner = std::fs::metadata(&data).expect("data directory");
        let (cert, key) = (data.join("weir-test.crt"), data.join("weir-test.key"));
        std::fs::copy(&certs.cert, &cert).expect("copy certificate");
        std::fs::copy(&certs.key, &key).expect("copy key");
        for file in [&cert, &key] {
            std::os::unix::fs::chown(file, Some(owner.uid()), Some(owner.gid())).expect("chown");
        }
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod key");
        let sql = format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'; ALTER SYSTEM SET ssl_key_file = '{}'; \
             ALTER SYSTEM SET ssl = on; SELECT pg_reload_conf();",
            cert.display(),
            key.display()
        );
        pg.psql(pg.primary().port, "postgres", &sql)
            .expect("turn TLS on");
        // The reload is asynchronous: wait until a new session sees it.
        for _ in 0..50 {
            let on = pg
                .psql(pg.primary().port, "postgres", "SHOW ssl")
                .unwrap_or_default();
            if on.trim() == "on" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("PostgreSQL did not turn TLS on");
    }
}

#[tokio::test]
async fn weir_reaches_servers_over_tls_and_checks_their_certificate() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = server_certs();
    let on_tls = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let table = |mode: &str, ca: &Path| {
        format!(
            "[server_tls]\nmode = \"{mode}\"\nca = \"{}\"\n",
            ca.display()
        )
    };
    for mode in ["prefer", "require", "verify-ca", "verify-full"] {
        let proxy = Proxy::start(&config_toml(&db, "", &table(mode, &certs.ca))).await;
        let client = proxy.client(&db).await;
        let row = client.query_one(on_tls, &[]).await.expect("query");
        assert!(row.get::<_, bool>(0), "server_tls.mode = {mode}: not TLS");
        // 3.2 MB from the server crosses many of its TLS records.
        let big: String = client
            .query_one("SELECT repeat(md5('x'), 100000)", &[])
            .await
            .expect("a large result over TLS")
            .get(0);
        assert_eq!(big.len(), 3_200_000);
        proxy.stop().await;
    }
    let proxy = Proxy::start(&config_toml(&db, "", &table("disable", &certs.ca))).await;
    let client = proxy.client(&db).await;
    let row = client.query_one(on_tls, &[]).await.expect("query");
    assert!(!row.get::<_, bool>(0), "server_tls.mode = disable, yet TLS");
    proxy.stop().await;

    // A CA that did not sign the server's certificate: verify-ca refuses, and says why.
    let other = Certs::make(dir.path(), "not-pg");
    let proxy = Proxy::start(&config_toml(&db, "", &table("verify-ca", &other.ca))).await;
    let err = proxy
        .try_client(USER, PASSWORD, &db)
        .await
        .expect_err("the server's certificate is not trusted");
    let message = err.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("TLS to server")),
        "{message:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn client_certificates_log_in_users_whose_method_is_cert() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = Certs::make(dir.path(), "a");
    let stranger = Certs::make(dir.path(), "stranger");
    let tls = format!(
        "{}client_ca = \"{}\"\n",
        certs.table("allow"),
        certs.ca.display()
    );
    let users = format!(
        "[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\nauth_method = \"cert\"\n\
         [[users]]\nname = \"{MD5_USER}\"\npassword = \"{MD5_PASSWORD}\"\nauth_method = \"md5\"\n"
    );
    let proxy = Proxy::start(&config_toml_with(
        &db,
        Settings {
            users: Some(&users),
            tail: &tls,
            ..Settings::default()
        },
    ))
    .await;
    let with_cert = |(cert, key): &(PathBuf, PathBuf)| {
        format!(
            "sslmode=verify-full sslrootcert={} sslcert={} sslkey={} password=not-asked",
            certs.ca.display(),
            cert.display(),
            key.display()
        )
    };

    // A certificate for the user: no password asked (a wrong one is given, unused).
    let mine = certs.client(dir.path(), USER);
    let out = psql_through(
        &proxy,
        &db,
        &with_cert(&mine),
        &["-c", "SELECT current_user"],
    )
    .await;
    assert_eq!(ok_stdout(&out), USER);

    // A certificate for someone else, one from another CA, none at all, or no TLS.
    let failure = |out: std::process::Output| {
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let theirs = certs.client(dir.path(), "someone-else");
    let out = psql_through(&proxy, &db, &with_cert(&theirs), &["-c", "SELECT 1"]).await;
    let stderr = failure(out);
    assert!(
        stderr.contains("certificate authentication failed for user \"app\""),
        "{stderr}"
    );
    let forged = stranger.client(dir.path(), USER);
    let out = psql_through(&proxy, &db, &with_cert(&forged), &["-c", "SELECT 1"]).await;
    let stderr = failure(out);
    assert!(
        stderr.contains("unknown ca"),
        "the handshake refuses it: {stderr}"
    );
    for plain in ["sslmode=require", "sslmode=disable"] {
        let out = psql_through(&proxy, &db, plain, &["-c", "SELECT 1"]).await;
        let stderr = failure(out);
        assert!(
            stderr.contains("logs in with a client certificate"),
            "{plain}: {stderr}"
        );
    }

    // Other users still log in with passwords, with or without TLS.
    let err = proxy
        .try_client(USER, PASSWORD, &db)
        .await
        .expect_err("a password is not a certificate");
    assert_eq!(sqlstate(&err).as_deref(), Some("28000"), "{err}");
    let client = proxy
        .try_client(MD5_USER, MD5_PASSWORD, &db)
        .await
        .expect("an md5 user needs no certificate");
    client.simple_query("SELECT 1").await.expect("query");
    let md5_over_tls = format!(
        "sslmode=verify-full sslrootcert={} user={MD5_USER} password={MD5_PASSWORD}",
        certs.ca.display()
    );
    let out = psql_through(&proxy, &db, &md5_over_tls, &["-c", "SELECT current_user"]).await;
    assert_eq!(ok_stdout(&out), MD5_USER, "over TLS, without a certificate");
    proxy.stop().await;
}

#[tokio::test]
async fn scram_binds_to_weirs_certificate() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = Certs::make(dir.path(), "cb");
    let proxy = Proxy::start(&config_toml(&db, "", &certs.table("allow"))).await;
    // libpq picks SCRAM-SHA-256-PLUS when offered; `require` fails unless it was.
    let out = psql_through(
        &proxy,
        &db,
        "sslmode=require channel_binding=require",
        &["-c", "SELECT 1"],
    )
    .await;
    assert_eq!(ok_stdout(&out), "1");
    // Without TLS there is nothing to bind to: SCRAM-SHA-256 alone, as PostgreSQL.
    let out = psql_through(
        &proxy,
        &db,
        "sslmode=disable channel_binding=require",
        &["-c", "SELECT 1"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("channel binding"), "{stderr}");
    let out = psql_through(&proxy, &db, "sslmode=disable", &["-c", "SELECT 2"]).await;
    assert_eq!(ok_stdout(&out), "2");
    proxy.stop().await;
}

#[tokio::test]
async fn weir_ends_tls_connections_with_close_notify() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = Certs::make(dir.path(), "close");
    let proxy = Proxy::start(&config_toml(&db, "", &certs.table("allow"))).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("connect");
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(certs.client_config(&[b"postgresql"])));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("direct TLS");
    // Protocol 2.0, which weir refuses at once: the FATAL, then the end.
    tls.write_all(&[0, 0, 0, 8, 0, 2, 0, 0])
        .await
        .expect("send startup");
    let mut all = Vec::new();
    // rustls reports a close without close_notify as UnexpectedEof; with it, the end of
    // the stream.
    tls.read_to_end(&mut all)
        .await
        .expect("the stream ends with close_notify, not a cut");
    assert_eq!(all.first(), Some(&b'E'), "an error came first: {all:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn weir_shows_its_own_certificate_to_servers_that_ask() {
    use std::os::unix::fs::MetadataExt;
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    // The server's own CA signs weir's client certificate too.
    let certs = server_certs();
    let pg = common::pg();
    let role = format!("certrole_{}", std::process::id());
    pg.psql(
        pg.primary().port,
        "postgres",
        &format!("CREATE ROLE {role} LOGIN; GRANT ALL ON DATABASE {db} TO {role}"),
    )
    .expect("role");
    // The server trusts certificates of this test's CA, and wants one from this role.
    let data = pg.data_dir().to_path_buf();
    let owner = std::fs::metadata(&data).expect("data directory");
    let ca = data.join(format!("weir-client-ca-{role}.crt"));
    std::fs::copy(&certs.ca, &ca).expect("copy CA");
    std::os::unix::fs::chown(&ca, Some(owner.uid()), Some(owner.gid())).expect("chown");
    let hba = pg.primary().data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).expect("pg_hba.conf");
    std::fs::write(&hba, format!("hostssl all {role} 127.0.0.1/32 cert\n{old}"))
        .expect("pg_hba.conf");
    pg.psql(
        pg.primary().port,
        "postgres",
        &format!(
            "ALTER SYSTEM SET ssl_ca_file = '{}'; SELECT pg_reload_conf();",
            ca.display()
        ),
    )
    .expect("ssl_ca_file");
    // The reload is asynchronous: a new session seeing the new file has the new hba too.
    let reloaded = common::eventually(std::time::Duration::from_secs(10), || {
        pg.psql(pg.primary().port, "postgres", "SHOW ssl_ca_file")
            .is_ok_and(|v| v.trim() == ca.display().to_string())
    })
    .await;
    assert!(reloaded, "PostgreSQL did not reload its configuration");

    let (cert, key) = certs.client(dir.path(), &role);
    let users = format!("[[users]]\nname = \"{role}\"\nauth_method = \"trust\"\n");
    let with = |client_cert: &str| {
        config_toml_with(
            &db,
            Settings {
                users: Some(&users),
                auth_method: "trust",
                tail: &format!("[server_tls]\nmode = \"require\"\n{client_cert}"),
                ..Settings::default()
            },
        )
    };
    let proxy = Proxy::start(&with(&format!(
        "cert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    )))
    .await;
    let client = proxy
        .try_client(&role, "", &db)
        .await
        .expect("weir's certificate lets it in");
    let row = client
        .query_one("SELECT current_user::text, (SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid())", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), role);
    assert_eq!(row.get::<_, String>(1), format!("/CN={role}"));
    proxy.stop().await;

    // Without one, the server's refusal reaches the client.
    let proxy = Proxy::start(&with("")).await;
    let e = proxy
        .try_client(&role, "", &db)
        .await
        .expect_err("no certificate, no login");
    assert!(db_message(&e).contains("certificate"), "{e:?}");
    proxy.stop().await;
}
