//! Logins without plaintext passwords in weir's files: SCRAM pass-through with verifiers
//! copied from `pg_authid`, against the real server.

mod common;

use common::admin::{ADMIN, ADMIN_PASSWORD};
use common::tools::{ok_stdout, psql_through};
use common::{
    config_toml_with, db_message, default_users, fresh_database, pg, psql, simple_value, sqlstate,
    Proxy, Settings, PASSWORD, USER,
};

/// The role's verifier as the server stores it.
fn verifier(role: &str) -> String {
    psql(
        "postgres",
        &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"),
    )
}

/// A configuration whose `USER` entry is the server's own SCRAM verifier, with an admin
/// user (plaintext) for RELOAD, and `extra_users` appended.
fn passthrough_toml(db: &str, extra_users: &str) -> String {
    let users = format!(
        "[[users]]\nname = \"{USER}\"\npassword = \"{}\"\n\
         [[users]]\nname = \"{ADMIN}\"\npassword = \"{ADMIN_PASSWORD}\"\n{extra_users}",
        verifier(USER)
    );
    config_toml_with(
        db,
        Settings {
            users: Some(&users),
            tail: &format!("[admin]\nusers = [\"{ADMIN}\"]\n"),
            ..Settings::default()
        },
    )
}

#[tokio::test]
async fn a_scram_verifier_from_pg_authid_is_enough_to_reach_the_server() {
    let db = fresh_database();
    let proxy = Proxy::start(&passthrough_toml(&db, "")).await;

    // Wrong password first: refused.
    let e = proxy
        .login_error(USER, "not-the-password", &db, "wrong password")
        .await;
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");

    // The right password logs in, and weir logs in to the server with the key it revealed.
    let client = proxy.client(&db).await;
    client
        .batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .await
        .expect("write through a pass-through login");
    assert_eq!(
        simple_value(&client, "SELECT current_user").await,
        USER,
        "the server sees the user itself"
    );

    // A second client, and psql (libpq: SCRAM with channel binding if offered), share it.
    let other = proxy.client(&db).await;
    assert_eq!(simple_value(&other, "SELECT count(*) FROM t").await, "1");
    let out = psql_through(&proxy, &db, "", &["-c", "SELECT v FROM t"]).await;
    assert_eq!(ok_stdout(&out), "1");

    // New server connections after the old ones are gone still log in.
    psql(
        &db,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{USER}' AND datname = '{db}'"),
    );
    let client = proxy.client(&db).await;
    assert_eq!(simple_value(&client, "SELECT count(*) FROM t").await, "1");
    proxy.stop().await;
}

#[tokio::test]
async fn a_reload_that_keeps_the_verifier_keeps_the_learned_key() {
    let db = fresh_database();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, passthrough_toml(&db, "")).expect("write config");
    let proxy = Proxy::start_file(&path).await;
    let client = proxy.client(&db).await;
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");

    // Another user's entry changes, so the user table is rebuilt; and `[server_tls]`
    // changes, so the pool is built anew from the new table's entry.
    let changed = "[[users]]\nname = \"extra\"\npassword = \"extra-secret\"\n";
    let toml = passthrough_toml(&db, changed) + "[server_tls]\nmode = \"disable\"\n";
    std::fs::write(&path, toml).expect("rewrite config");
    let console = proxy
        .try_client(ADMIN, ADMIN_PASSWORD, "weir")
        .await
        .expect("admin console");
    console.simple_query("RELOAD").await.expect("RELOAD");
    console.simple_query("RECONNECT").await.expect("RECONNECT");
    psql(
        &db,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{USER}' AND datname = '{db}'"),
    );

    // The connected client needs a new server connection: the key learned before the
    // reload must still be there, since no one has logged in since.
    assert_eq!(simple_value(&client, "SELECT 2").await, "2");
    proxy.stop().await;
}

#[tokio::test]
async fn a_server_holding_another_verifier_is_named_in_the_error() {
    let db = fresh_database();
    // The same password, stored by weir with another salt than the server's.
    let own = postgres_protocol::password::scram_sha_256(PASSWORD.as_bytes());
    let users = format!("[[users]]\nname = \"{USER}\"\npassword = \"{own}\"\n");
    let proxy = Proxy::start(&config_toml_with(
        &db,
        Settings {
            users: Some(&users),
            ..Settings::default()
        },
    ))
    .await;
    // The first login to a pool opens a server connection to learn its parameters.
    let e = proxy
        .login_error(USER, PASSWORD, &db, "the server's verifier differs")
        .await;
    assert_eq!(sqlstate(&e).as_deref(), Some("08001"), "{e}");
    let message = db_message(&e);
    assert!(message.contains("pg_authid"), "{e:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn check_explains_what_a_verifier_only_user_needs() {
    let db = fresh_database();
    let users = default_users().replace(
        &format!("password = \"{PASSWORD}\""),
        &format!("password = \"{}\"", verifier(USER)),
    );
    let config = weir::config::from_toml_str(&config_toml_with(
        &db,
        Settings {
            users: Some(&users),
            ..Settings::default()
        },
    ))
    .expect("valid config");
    let warnings = weir::check(&config).expect("the configuration is usable");
    assert!(
        warnings.iter().any(|w| w.contains("pass-through")),
        "{warnings:?}"
    );
    let _ = pg();
}

/// Creates a LOGIN role stored as SCRAM on the server, named uniquely for this test.
fn role(prefix: &str, password: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{prefix}_{}_{n}", std::process::id());
    pg().create_role(&name, password).expect("create role");
    name
}

/// In `db`: `weir_lookup(name)`, a SECURITY DEFINER function that reads `pg_shadow` for
/// the role `auth_role`, as PgBouncer's documentation advises for `auth_query`.
fn lookup_function(db: &str, auth_role: &str) {
    psql(
        db,
        &format!(
            "CREATE FUNCTION public.weir_lookup(name text, OUT usename name, OUT passwd text) \
             RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog \
             AS $$ SELECT usename, passwd FROM pg_shadow WHERE usename = name $$; \
             REVOKE ALL ON FUNCTION public.weir_lookup(text) FROM public; \
             GRANT EXECUTE ON FUNCTION public.weir_lookup(text) TO {auth_role}; \
             GRANT CONNECT ON DATABASE {db} TO public;"
        ),
    );
}

/// `auth.query` through the function `lookup_function` makes.
const LOOKUP_QUERY: &str = "query = \"SELECT usename, passwd FROM public.weir_lookup($1)\"";

/// weir with only `auth_role` listed (plaintext), and `[auth]` set up for auth_query.
async fn auth_query_proxy(db: &str, auth_role: &str, auth_extra: &str) -> Proxy {
    let users = format!("[[users]]\nname = \"{auth_role}\"\npassword = \"lookup-secret\"\n");
    let toml = config_toml_with(
        db,
        Settings {
            users: Some(&users),
            ..Settings::default()
        },
    )
    .replace(
        "[auth]\n",
        &format!("[auth]\nuser = \"{auth_role}\"\n{auth_extra}\n"),
    );
    Proxy::start(&toml).await
}

#[tokio::test]
async fn auth_query_lets_unlisted_users_in_with_the_servers_own_verifiers() {
    let db = fresh_database();
    let auth_role = role("lookup", "lookup-secret");
    lookup_function(&db, &auth_role);
    let scram_user = role("unlisted", "unlisted-secret");
    let proxy = auth_query_proxy(&db, &auth_role, LOOKUP_QUERY).await;

    // A SCRAM user: challenged with its verifier, and logged in to the server by
    // pass-through.
    let client = proxy
        .try_client(&scram_user, "unlisted-secret", &db)
        .await
        .expect("an unlisted user the query finds logs in");
    assert_eq!(
        simple_value(&client, "SELECT current_user").await,
        scram_user
    );
    let libpq = format!("user={scram_user} password=unlisted-secret");
    let out = psql_through(&proxy, &db, &libpq, &["-c", "SELECT current_user"]).await;
    assert_eq!(ok_stdout(&out), scram_user, "psql");
    let e = proxy
        .login_error(&scram_user, "wrong", &db, "wrong password")
        .await;
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");

    // An md5 user: challenged with md5, answered to the server with the digest.
    let client = proxy
        .try_client(common::MD5_USER, common::MD5_PASSWORD, &db)
        .await
        .expect("an md5 user the query finds logs in");
    assert_eq!(
        simple_value(&client, "SELECT current_user").await,
        common::MD5_USER
    );

    // A user the query does not find fails like a wrong password.
    let e = proxy
        .login_error("nobody_here", "whatever", &db, "unknown user")
        .await;
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");

    // A name that would break SQL spliced into the text is only a parameter.
    let e = proxy
        .login_error("x' OR '1'='1", "whatever", &db, "injection")
        .await;
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");
    proxy.stop().await;
}

#[tokio::test]
async fn auth_query_sees_a_changed_password_once_the_cache_expires() {
    let db = fresh_database();
    let auth_role = role("lookup", "lookup-secret");
    lookup_function(&db, &auth_role);
    let user = role("rotating", "first-secret");
    let proxy = auth_query_proxy(
        &db,
        &auth_role,
        &format!("{LOOKUP_QUERY}\ncache_ttl = \"0s\""),
    )
    .await;
    let client = proxy
        .try_client(&user, "first-secret", &db)
        .await
        .expect("first");
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
    psql(
        "postgres",
        &format!("ALTER ROLE {user} PASSWORD 'second-secret'"),
    );
    let e = proxy
        .login_error(
            &user,
            "first-secret",
            &db,
            "the old password after a change",
        )
        .await;
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");
    let client = proxy
        .try_client(&user, "second-secret", &db)
        .await
        .expect("the new password, and pass-through with the new verifier");
    assert_eq!(simple_value(&client, "SELECT current_user").await, user);
    proxy.stop().await;
}

#[tokio::test]
async fn auth_query_runs_the_default_query_and_reports_a_broken_one() {
    let db = fresh_database();
    // The default query reads pg_shadow, which only a superuser may.
    let su = role("lookup_su", "lookup-secret");
    psql("postgres", &format!("ALTER ROLE {su} SUPERUSER"));
    let user = role("plain", "plain-secret");
    let proxy = auth_query_proxy(&db, &su, "").await;
    let client = proxy
        .try_client(&user, "plain-secret", &db)
        .await
        .expect("default query");
    assert_eq!(simple_value(&client, "SELECT current_user").await, user);
    proxy.stop().await;

    let proxy = auth_query_proxy(
        &db,
        &su,
        "query = \"SELECT * FROM no_such_table WHERE x = $1\"",
    )
    .await;
    let e = proxy
        .login_error(&user, "plain-secret", &db, "the query fails")
        .await;
    assert_eq!(sqlstate(&e).as_deref(), Some("08001"), "{e}");
    let message = db_message(&e);
    // The client, not logged in, hears that the lookup failed; the log has the server's
    // words.
    assert!(message.contains("auth.query"), "{message}");
    assert!(!message.contains("no_such_table"), "{message}");
    proxy.stop().await;
}

#[tokio::test]
async fn auth_query_keeps_a_verifier_for_its_ttl_and_runs_in_auth_dbname() {
    let db = fresh_database();
    // The lookup function lives in another database, named by auth.dbname.
    let lookups = fresh_database();
    let auth_role = role("lookup", "lookup-secret");
    lookup_function(&lookups, &auth_role);
    let user = role("cached", "first-secret");
    let extra = format!("{LOOKUP_QUERY}\ndbname = \"{lookups}\"\ncache_ttl = \"1h\"");
    let proxy = auth_query_proxy(&db, &auth_role, &extra).await;
    let client = proxy
        .try_client(&user, "first-secret", &db)
        .await
        .expect("first");
    assert_eq!(simple_value(&client, "SELECT current_user").await, user);
    // Changed on the server: within the hour weir still checks the verifier it has.
    psql(
        "postgres",
        &format!("ALTER ROLE {user} PASSWORD 'second-secret'"),
    );
    proxy
        .try_client(&user, "first-secret", &db)
        .await
        .expect("the cached verifier still accepts the old password");
    let e = proxy
        .login_error(&user, "second-secret", &db, "not looked up again yet")
        .await;
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e}");
    proxy.stop().await;
}
