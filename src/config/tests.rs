//! Tests for loading and validation: the example file, every error message's key path,
//! and environment overrides.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::*;

/// The example configuration shipped in `etc/`.
const EXAMPLE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/etc/weir.toml"));

/// Serializes the tests that read or change the process environment (`load`), since
/// tests run on parallel threads and the environment is process-global.
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// A minimal valid configuration, to which each test adds one mistake.
const BASE: &str = r#"
[[users]]
name = "app"
password = "app"

[[databases]]
name = "appdb"
hosts = ["127.0.0.1:5432"]
"#;

fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn err(text: &str) -> String {
    match from_toml_str(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    file
}

fn load_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = write_temp(text);
    load_with_env(file.path(), env(vars), &[])
}

#[test]
fn example_file_parses_with_documented_values() {
    let c = from_toml_str(EXAMPLE).unwrap();
    assert_eq!(c.listen, ListenSettings::default());
    assert_eq!(c.pool, PoolSettings::default());
    assert_eq!(c.auth.method, AuthMethod::ScramSha256);
    assert!(c.admin.users.is_empty());
    assert_eq!(
        c.metrics.map(|m| m.listen),
        Some("127.0.0.1:9930".parse::<SocketAddr>().unwrap())
    );
    assert_eq!(c.tls, None);
    assert_eq!(c.users.len(), 1);
    assert_eq!(c.users[0].name, "app");
    assert_eq!(c.users[0].password.as_deref(), Some("app"));
    assert_eq!(c.databases.len(), 1);
    let db = &c.databases[0];
    assert_eq!((db.name.as_str(), db.dbname.as_str()), ("appdb", "appdb"));
    assert_eq!(db.hosts[0].to_string(), "127.0.0.1:5432");
    assert_eq!(db.routing, Routing::ReadWrite);
}

#[test]
fn example_file_loads_from_disk() {
    let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/weir.toml");
    assert_eq!(load(&path).unwrap(), from_toml_str(EXAMPLE).unwrap());
}

#[test]
fn empty_file_means_all_defaults() {
    let c = from_toml_str("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.listen.addr.to_string(), "127.0.0.1:6432");
    assert_eq!(c.pool.mode, PoolMode::Transaction);
    assert_eq!(c.pool.size.get(), 20);
    assert_eq!(c.pool.max_client_conn.get(), 10_000);
    assert_eq!(c.pool.query_wait_timeout, Duration::from_secs(30));
    assert_eq!(c.pool.server_connect_timeout, Duration::from_secs(5));
    assert_eq!(c.pool.query_timeout, Duration::ZERO);
    assert_eq!(c.listen.client_login_timeout, Duration::from_secs(60));
}

#[test]
fn every_value_form_is_understood() {
    let c = from_toml_str(
        r#"
        [listen]
        addr = "[::1]:7000"
        client_login_timeout = 15
        shutdown_timeout = 0
        workers = 3
        [pool]
        mode = "session"
        size = 5
        min_size = 5
        query_wait_timeout = "1m 30s"
        server_connect_timeout = "500ms"
        query_timeout = "2h"
        [auth]
        method = "md5"
        [admin]
        users = ["ops", "app"]
        [tls]
        cert = "etc/tls/server.crt"
        key = "etc/tls/server.key"
        client_ca = "etc/tls/client-ca.crt"
        [[users]]
        name = "ops"
        auth_method = "cert"
        [[users]]
        name = "app"
        password = "md5a3556571e93b0d20722ba62be61e8c2d"
        [[databases]]
        name = "appdb"
        dbname = "app_production"
        hosts = "db1:5432, db2:5433"
        routing = "primary_only"
        "#,
    )
    .unwrap();
    assert_eq!(c.listen.addr.to_string(), "[::1]:7000");
    assert_eq!(c.listen.client_login_timeout, Duration::from_secs(15));
    assert_eq!(c.listen.shutdown_timeout, Duration::ZERO);
    assert_eq!(c.listen.workers, 3);
    assert_eq!(c.pool.mode, PoolMode::Session);
    assert_eq!((c.pool.size.get(), c.pool.min_size), (5, 5));
    assert_eq!(c.pool.query_wait_timeout, Duration::from_secs(90));
    assert_eq!(c.pool.server_connect_timeout, Duration::from_millis(500));
    assert_eq!(c.pool.query_timeout, Duration::from_secs(7200));
    assert_eq!(c.auth.method, AuthMethod::Md5);
    assert!(c.admin.is_admin("ops") && !c.admin.is_admin("nobody"));
    assert_eq!(
        c.tls.as_ref().map(|t| t.key.clone()),
        Some(PathBuf::from("etc/tls/server.key"))
    );
    let ops = c.user("ops").unwrap();
    assert_eq!(c.auth_method_for(ops), AuthMethod::Cert);
    assert_eq!(c.auth_method_for(c.user("app").unwrap()), AuthMethod::Md5);
    let db = c.database("appdb").unwrap();
    assert_eq!(db.dbname, "app_production");
    let hosts: Vec<String> = db.hosts.iter().map(ToString::to_string).collect();
    assert_eq!(hosts, ["db1:5432", "db2:5433"]);
    assert_eq!(db.routing, Routing::PrimaryOnly);
    assert_eq!(c.metrics, None);
}

#[test]
fn humantime_accepts_spaced_units() {
    // "30 sec" is a valid humantime duration, so it is accepted, not an error.
    let c = from_toml_str("[pool]\nquery_wait_timeout = \"30 sec\"").unwrap();
    assert_eq!(c.pool.query_wait_timeout, Duration::from_secs(30));
}

#[test]
fn unknown_enum_value_lists_the_choices() {
    assert_eq!(
        err("[pool]\nmode = \"tranaction\""),
        r#"pool.mode: unknown value "tranaction" (expected one of: session, transaction, statement)"#
    );
    let e = err("[auth]\nmethod = \"scram\"");
    assert!(e.starts_with("auth.method: unknown value \"scram\""), "{e}");
    assert!(e.contains("scram-sha-256, md5, trust, cert"), "{e}");
    let e = err(&format!("{BASE}routing = \"readwrite\""));
    assert!(e.starts_with("databases[0].routing: unknown value"), "{e}");
    assert!(e.contains("read_write, primary_only"), "{e}");
}

#[test]
fn bad_host_port_names_the_entry() {
    let text = format!("{BASE}\n[[databases]]\nname = \"other\"\nhosts = [\"localhost:99999\"]");
    assert_eq!(
        err(&text),
        r#"databases[1].hosts[0]: "localhost:99999" is not a valid host:port (port out of range)"#
    );
    let e = err(&format!(
        "{BASE}\n[[databases]]\nname = \"b\"\nhosts = [\"db:1\", \"db:x\"]"
    ));
    assert!(e.starts_with("databases[1].hosts[1]: \"db:x\""), "{e}");
}

#[test]
fn bad_duration_gives_examples() {
    assert_eq!(
        err("[pool]\nquery_wait_timeout = \"thirty seconds\""),
        r#"pool.query_wait_timeout: "thirty seconds" is not a duration (examples: "30s", "500ms", "5m")"#
    );
    let e = err("[pool]\nserver_lifetime = -5");
    assert!(
        e.starts_with("pool.server_lifetime: \"-5\" is not a duration"),
        "{e}"
    );
    let e = err("[listen]\nclient_login_timeout = 1.5");
    assert!(
        e.starts_with("listen.client_login_timeout: \"1.5\" is not a duration"),
        "{e}"
    );
    let e = err("[pool]\nserver_idle_timeout = \"20y\"");
    assert!(
        e.starts_with("pool.server_idle_timeout: \"20y\" is too long"),
        "{e}"
    );
}

#[test]
fn zero_is_off_only_where_documented() {
    let c = from_toml_str(
        "[pool]\nclient_idle_timeout = 0\nidle_transaction_timeout = \"0s\"\nquery_timeout = \"0\"",
    )
    .unwrap();
    assert!(c.pool.client_idle_timeout.is_zero() && c.pool.query_timeout.is_zero());
    for key in [
        "query_wait_timeout",
        "server_lifetime",
        "server_idle_timeout",
        "server_connect_timeout",
    ] {
        let e = err(&format!("[pool]\n{key} = 0"));
        assert!(
            e.starts_with(&format!("pool.{key}: must be greater than zero")),
            "{e}"
        );
    }
    let e = err("[listen]\nclient_login_timeout = \"0s\"");
    assert!(
        e.starts_with("listen.client_login_timeout: must be greater than zero"),
        "{e}"
    );
}

#[test]
fn missing_file_names_the_path() {
    let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("y.toml");
    let e = load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "cannot read configuration file {}: No such file or directory",
            path.display()
        )
    );
}

#[test]
fn unknown_keys_are_refused_with_a_suggestion() {
    assert_eq!(
        err("[pool]\nszie = 50"),
        "pool.szie: unknown key (did you mean `size`?)"
    );
    let e = err("[pool]\nbanana = 1");
    assert!(
        e.starts_with("pool.banana: unknown key (known keys: "),
        "{e}"
    );
    assert!(e.contains("max_client_conn"), "{e}");
    assert_eq!(
        err("[pol]\nsize = 1"),
        "pol: unknown key (did you mean `pool`?)"
    );
    let e = err(&format!("{BASE}\n[[databases]]\nnmae = \"x\""));
    assert_eq!(e, "databases[1].nmae: unknown key (did you mean `name`?)");
    let e = err("[[users]]\nname = \"a\"\npasword = \"x\"");
    assert_eq!(
        e,
        "users[0].pasword: unknown key (did you mean `password`?)"
    );
}

#[test]
fn numbers_are_checked_with_their_range() {
    let e = err("[pool]\nsize = 0");
    assert_eq!(e, "pool.size: 0 is out of range (expected 1 to 4294967295)");
    let e = err("[pool]\nmax_client_conn = -3");
    assert!(
        e.starts_with("pool.max_client_conn: -3 is out of range"),
        "{e}"
    );
    let e = err("[pool]\nsize = 5000000000");
    assert!(
        e.starts_with("pool.size: 5000000000 is out of range"),
        "{e}"
    );
    let e = err("[pool]\nsize = \"lots\"");
    assert!(
        e.starts_with("pool.size: \"lots\" is not a whole number"),
        "{e}"
    );
    let e = err("[pool]\nsize = 2.5");
    assert_eq!(
        e,
        "pool.size: expected a whole number, found a decimal number"
    );
    assert_eq!(
        err("[pool]\nsize = 10\nmin_size = 11"),
        "pool.min_size: 11 is larger than pool.size (10)"
    );
}

#[test]
fn wrong_shapes_name_the_key() {
    let e = err("pool = 5");
    assert!(e.starts_with("pool: invalid type"), "{e}");
    assert!(e.contains("a [pool] table"), "{e}");
    let e = err(&format!(
        "{BASE}\n[[databases]]\nname = \"b\"\nhosts = [5432]"
    ));
    assert!(e.starts_with("databases[1].hosts[0]: invalid type"), "{e}");
    assert!(e.contains("a string in quotes"), "{e}");
    let e = err("[pool]\nmode = [\"session\"]");
    assert!(e.starts_with("pool.mode: invalid type"), "{e}");
    assert_eq!(
        err("[databases]\nappdb = \"host=127.0.0.1\""),
        "databases: found a single [databases] table; write each entry under its own [[databases]] header (double brackets)"
    );
    let e = err("users = 5");
    assert!(
        e.starts_with("users: invalid type: integer `5`, expected a list of tables"),
        "{e}"
    );
    let e = err("[[users]]\nname = 42\npassword = \"x\"");
    assert_eq!(
        e,
        "users[0].name: expected a string in quotes, found an integer"
    );
}

#[test]
fn wrong_type_never_echoes_a_password() {
    let e = err("[[users]]\nname = \"a\"\npassword = 918273645");
    assert_eq!(
        e,
        "users[0].password: expected a string in quotes, found an integer"
    );
    assert!(!e.contains("918273645"));
}

#[test]
fn syntax_errors_say_where() {
    let e = err("[pool\nsize = 1");
    assert!(e.starts_with("configuration text: not valid TOML: "), "{e}");
    assert!(e.contains("line 1"), "{e}");
    let file = write_temp("[pool]\nsize = = 3\n");
    let e = load_with_env(file.path(), env(&[]), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}: not valid TOML", file.path().display())),
        "{e}"
    );
}

#[test]
fn user_names_are_required_valid_and_unique() {
    let e = err("[[users]]\npassword = \"x\"");
    assert_eq!(
        e,
        "users[0].name: missing (every [[users]] entry needs a name)"
    );
    let e = err("[[users]]\nname = \"\"\npassword = \"x\"");
    assert_eq!(e, "users[0].name: must not be empty");
    let e =
        err("[[users]]\nname = \"a\"\npassword = \"x\"\n[[users]]\nname = \"a\"\npassword = \"y\"");
    assert_eq!(
        e,
        "users[1].name: \"a\" is already defined at users[0].name"
    );
    let long = "u".repeat(64);
    let e = err(&format!("[[users]]\nname = \"{long}\"\npassword = \"x\""));
    assert!(
        e.starts_with("users[0].name: ") && e.contains("63 bytes"),
        "{e}"
    );
    let e = err("[[users]]\nname = \"a\"\npassword = \"\"");
    assert_eq!(e, "users[0].password: must not be empty");
}

#[test]
fn database_names_are_required_unique_and_not_reserved() {
    for reserved in ["weir", "pgbouncer"] {
        let e = err(&format!(
            "[[databases]]\nname = \"{reserved}\"\nhosts = [\"h\"]"
        ));
        assert_eq!(
            e,
            format!("databases[0].name: \"{reserved}\" is reserved for the admin console; choose another database name")
        );
    }
    let e = err(&format!(
        "{BASE}\n[[databases]]\nname = \"appdb\"\nhosts = [\"h\"]"
    ));
    assert_eq!(
        e,
        "databases[1].name: \"appdb\" is already defined at databases[0].name"
    );
    let e = err("[[databases]]\nhosts = [\"h\"]");
    assert!(e.starts_with("databases[0].name: missing"), "{e}");
    let e = err("[[databases]]\nname = \"x\"\nhosts = []");
    assert!(
        e.starts_with("databases[0].hosts: missing (at least one server"),
        "{e}"
    );
    let e = err("[[databases]]\nname = \"x\"");
    assert!(e.starts_with("databases[0].hosts: missing"), "{e}");
    let e = err("[[databases]]\nname = \"x\"\ndbname = \"\"\nhosts = [\"h\"]");
    assert_eq!(e, "databases[0].dbname: must not be empty");
    let e = err("[[databases]]\nname = \"x\"\nhosts = [\"h:1\", \"h:1\"]");
    assert_eq!(
        e,
        "databases[0].hosts[1]: \"h:1\" is already defined at databases[0].hosts[0]"
    );
}

#[test]
fn metrics_and_tls_sections() {
    assert_eq!(from_toml_str("[metrics]").unwrap().metrics, None);
    assert_eq!(
        from_toml_str("[metrics]\nlisten = \"\"").unwrap().metrics,
        None
    );
    let e = err("[metrics]\nlisten = \"localhost:9930\"");
    assert!(
        e.starts_with("metrics.listen: \"localhost:9930\" is not an IP address and port"),
        "{e}"
    );
    let e = err("[listen]\naddr = \"0.0.0.0:7000\"\n[metrics]\nlisten = \"0.0.0.0:7000\"");
    assert_eq!(
        e,
        "metrics.listen: 0.0.0.0:7000 is also listen.addr; use another address or port"
    );
    // Port 0 twice is fine: the OS picks two different ports (tests do this).
    assert!(
        from_toml_str("[listen]\naddr = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"")
            .is_ok()
    );
    assert_eq!(from_toml_str("[tls]").unwrap().tls, None);
    let e = err("[tls]\ncert = \"a.crt\"");
    assert_eq!(e, "tls.key: missing ([tls] needs both cert and key)");
    let e = err("[auth]\nmethod = \"cert\"");
    assert!(
        e.starts_with("auth.method: \"cert\" authentication needs [tls] with client_ca"),
        "{e}"
    );
    let e = err("[auth]\nmethod = \"cert\"\n[tls]\ncert = \"a.crt\"\nkey = \"a.key\"");
    assert!(
        e.contains("client_ca"),
        "a [tls] without client_ca is not enough: {e}"
    );
    let c = from_toml_str(
        "[auth]\nmethod = \"cert\"\n[tls]\ncert = \"a.crt\"\nkey = \"a.key\"\nclient_ca = \"ca.crt\"",
    )
    .unwrap();
    assert_eq!(
        c.tls.and_then(|t| t.client_ca),
        Some(std::path::PathBuf::from("ca.crt"))
    );
    let e = err("[[users]]\nname = \"a\"\nauth_method = \"cert\"");
    assert!(
        e.starts_with("users[0].auth_method: \"cert\" authentication needs"),
        "{e}"
    );
}

#[test]
fn passwords_are_required_where_the_method_needs_one() {
    let e = err("[[users]]\nname = \"a\"");
    assert_eq!(
        e,
        "users[0].password: user \"a\" logs in with scram-sha-256 and needs a password (or set auth_method = \"trust\" or \"cert\")"
    );
    assert!(from_toml_str("[[users]]\nname = \"a\"\nauth_method = \"trust\"").is_ok());
    let e = err("[[users]]\nname = \"a\"\nauth_method = \"md5\"\npassword = \"SCRAM-SHA-256$4096:c2FsdA==$a:b\"");
    assert!(
        e.starts_with("users[0].password: user \"a\" logs in with md5 but"),
        "{e}"
    );
}

#[test]
fn user_debug_hides_the_password() {
    let c = from_toml_str("[[users]]\nname = \"app\"\npassword = \"hunter2-secret\"").unwrap();
    let user = format!("{:?}", c.users[0]);
    assert!(
        user.contains("app") && user.contains("<redacted>"),
        "{user}"
    );
    assert!(!user.contains("hunter2-secret"), "{user}");
    assert!(!format!("{c:?}").contains("hunter2-secret"));
    assert!(!format!("{c:#?}").contains("hunter2-secret"));
}

#[test]
fn process_env_overrides_the_file() {
    let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let file = write_temp(EXAMPLE);
    std::env::set_var("WEIR_POOL__SIZE", "7");
    let loaded = load(file.path());
    std::env::remove_var("WEIR_POOL__SIZE");
    let c = loaded.unwrap();
    assert_eq!(c.pool.size.get(), 7);
    // The arrays of tables from the file are untouched.
    assert_eq!(c.users, from_toml_str(EXAMPLE).unwrap().users);
    assert_eq!(c.databases, from_toml_str(EXAMPLE).unwrap().databases);
}

#[test]
fn env_values_parse_like_the_file() {
    let c = load_env(
        EXAMPLE,
        &[
            ("WEIR_POOL__SIZE", "50"),
            ("WEIR_POOL__MIN_SIZE", "3"),
            ("WEIR_POOL__MODE", "session"),
            ("WEIR_POOL__QUERY_WAIT_TIMEOUT", "45"),
            ("WEIR_POOL__QUERY_TIMEOUT", "2m"),
            ("WEIR_LISTEN__ADDR", "127.0.0.1:7000"),
            ("WEIR_ADMIN__USERS", "app, ops"),
            ("WEIR_METRICS__LISTEN", ""),
            ("HOME", "/root"),
        ],
    )
    .unwrap();
    assert_eq!((c.pool.size.get(), c.pool.min_size), (50, 3));
    assert_eq!(c.pool.mode, PoolMode::Session);
    assert_eq!(c.pool.query_wait_timeout, Duration::from_secs(45));
    assert_eq!(c.pool.query_timeout, Duration::from_secs(120));
    assert_eq!(c.listen.addr.to_string(), "127.0.0.1:7000");
    assert_eq!(c.admin.users, ["app", "ops"]);
    assert_eq!(c.metrics, None);
    assert_eq!(c.databases.len(), 1);
    assert_eq!(c.users.len(), 1);
}

#[test]
fn env_reaches_into_arrays_of_tables_without_breaking_them() {
    let text = format!("{BASE}\n[[databases]]\nname = \"reports\"\nhosts = [\"10.0.0.9\"]\nrouting = \"primary_only\"");
    let c = load_env(
        &text,
        &[
            ("WEIR_DATABASES__1__HOSTS", "10.0.0.5:5432,10.0.0.6:5432"),
            ("WEIR_USERS__0__PASSWORD", "0123"),
        ],
    )
    .unwrap();
    assert_eq!(c.databases.len(), 2);
    assert_eq!(c.databases[0].hosts[0].to_string(), "127.0.0.1:5432");
    let reports = &c.databases[1];
    assert_eq!(reports.name, "reports");
    assert_eq!(reports.routing, Routing::PrimaryOnly);
    let hosts: Vec<String> = reports.hosts.iter().map(ToString::to_string).collect();
    assert_eq!(hosts, ["10.0.0.5:5432", "10.0.0.6:5432"]);
    // Leading zeros survive: env values are never turned into numbers behind our back.
    assert_eq!(c.users[0].name, "app");
    assert_eq!(c.users[0].password.as_deref(), Some("0123"));
}

#[test]
fn env_can_define_entries_after_the_files() {
    let c = load_env(
        BASE,
        &[
            ("WEIR_DATABASES__1__NAME", "reports"),
            ("WEIR_DATABASES__1__HOSTS", "db2"),
            ("WEIR_USERS__1__NAME", "ro"),
            ("WEIR_USERS__1__AUTH_METHOD", "trust"),
        ],
    )
    .unwrap();
    assert_eq!(c.databases[1].name, "reports");
    assert_eq!(c.databases[1].hosts[0].to_string(), "db2:5432");
    assert_eq!(c.users[1].auth_method, Some(AuthMethod::Trust));
    let e = load_env(BASE, &[("WEIR_DATABASES__2__NAME", "x")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "environment variable WEIR_DATABASES__2__NAME: there is no databases[1]: the file defines 1 [[databases]] entries and the environment may only add entries after them, numbered without gaps"
    );
}

#[test]
fn env_errors_name_the_variable() {
    let e = load_env(BASE, &[("WEIR_POOL__SIZE", "abc")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "pool.size: \"abc\" is not a whole number (expected 1 to 4294967295) (set by environment variable WEIR_POOL__SIZE)"
    );
    let e = load_env(BASE, &[("WEIR_POOL__SZIE", "5")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "pool.szie: unknown key (did you mean `size`?) (set by environment variable WEIR_POOL__SZIE)"
    );
    let e = load_env(BASE, &[("WEIR_DATABASES__0__HOSTS", "db:70000")])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("databases[0].hosts[0]: \"db:70000\""), "{e}");
    assert!(
        e.ends_with("(set by environment variable WEIR_DATABASES__0__HOSTS)"),
        "{e}"
    );
    let e = load_env(BASE, &[("WEIR_POOL_SIZE", "5")])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("environment variable WEIR_POOL_SIZE: not a configuration key"),
        "{e}"
    );
    // A mistake in the file is not blamed on an unrelated variable.
    let e = load_env("[pool]\nsize = 0", &[("WEIR_POOL__MODE", "session")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pool.size: 0 is out of range (expected 1 to 4294967295)"
    );
    assert_eq!(e.key(), Some("pool.size"));
}

#[test]
fn tls_modes() {
    let c = from_toml_str(&format!("{BASE}[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n")).unwrap();
    assert_eq!(c.tls.map(|t| t.mode), Some(TlsMode::Allow));
    let c = from_toml_str(&format!("{BASE}[tls]\nmode = \"disable\"\n")).unwrap();
    assert_eq!(c.tls, None);
    let e = err(&format!("{BASE}[tls]\nmode = \"require\"\n"));
    assert!(e.starts_with("tls.mode:") && e.contains("tls.cert"), "{e}");
    let e = err(&format!(
        "{BASE}[tls]\ncert = \"c\"\nkey = \"k\"\nmode = \"always\"\n"
    ));
    assert!(e.starts_with("tls.mode:") && e.contains("require"), "{e}");
}

#[test]
fn server_tls_modes() {
    let c = from_toml_str(BASE).unwrap();
    assert_eq!(c.server_tls.mode, ServerTlsMode::Prefer);
    let c = from_toml_str(&format!(
        "{BASE}[server_tls]\nmode = \"verify-full\"\nca = \"ca.pem\"\n"
    ))
    .unwrap();
    assert_eq!(c.server_tls.mode, ServerTlsMode::VerifyFull);
    let e = err(&format!("{BASE}[server_tls]\nmode = \"verify-ca\"\n"));
    assert!(e.starts_with("server_tls.ca:"), "{e}");
    let e = err(&format!("{BASE}[server_tls]\nmode = \"allow\"\n"));
    assert!(
        e.starts_with("server_tls.mode:") && e.contains("verify-full"),
        "{e}"
    );
}

#[test]
fn auth_query_settings() {
    let c =
        from_toml_str("[auth]\nuser = \"lookup\"\n[[users]]\nname = \"lookup\"\npassword = \"x\"")
            .unwrap();
    assert_eq!(c.auth.user.as_deref(), Some("lookup"));
    assert!(c.auth.query.contains("pg_shadow") && c.auth.query.contains("$1"));
    assert_eq!(c.auth.cache_ttl, Duration::from_secs(30));
    assert_eq!(c.auth.dbname, None);
    assert_eq!(
        err("[auth]\nuser = \"nobody\""),
        "auth.user: no [[users]] entry is named \"nobody\"; name one of the users"
    );
    let e = err("[auth]\nuser = \"a\"\n[[users]]\nname = \"a\"\npassword = \"SCRAM-SHA-256$4096:c2FsdA==$a:b\"");
    assert!(
        e.starts_with("auth.user: weir logs in as this user before any client"),
        "{e}"
    );
    let e = err("[cluster]\nhealth_check_user = \"a\"\n[[users]]\nname = \"a\"\npassword = \"SCRAM-SHA-256$4096:c2FsdA==$a:b\"");
    assert!(
        e.starts_with("cluster.health_check_user: weir logs in as this user"),
        "{e}"
    );
    let e = err("[auth]\nquery = \"SELECT usename, passwd FROM pg_shadow\"");
    assert!(
        e.starts_with("auth.query: the query must take the user name as $1"),
        "{e}"
    );
    let e = err("[auth]\ncache_ttl = \"soon\"");
    assert!(e.starts_with("auth.cache_ttl"), "{e}");
}

#[test]
fn message_size_limit() {
    let size = |v: &str| {
        from_toml_str(&format!("[limits]\nmax_message_size = {v}"))
            .map(|c| c.limits.max_message_size)
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        from_toml_str("").unwrap().limits.max_message_size,
        0x3fff_ffff
    );
    assert_eq!(size("\"64MB\""), Ok(64 << 20));
    assert_eq!(size("\"512kB\""), Ok(512 << 10));
    assert_eq!(size("\"1GB\""), Ok(0x3fff_ffff), "PostgreSQL's own limit");
    assert_eq!(size("4096"), Ok(4096));
    for bad in ["\"10\"", "\"2GB\"", "\"64 mb\"", "\"lots\"", "-1", "true"] {
        let e = size(bad).unwrap_err();
        assert!(
            e.starts_with("limits.max_message_size: a size in bytes"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn server_tls_client_certificate() {
    let c = from_toml_str("[server_tls]\ncert = \"w.crt\"\nkey = \"w.key\"").unwrap();
    assert_eq!(
        c.server_tls.cert,
        Some((
            std::path::PathBuf::from("w.crt"),
            std::path::PathBuf::from("w.key")
        ))
    );
    assert_eq!(
        err("[server_tls]\ncert = \"w.crt\""),
        "server_tls.key: missing (a client certificate needs both cert and key)"
    );
    assert_eq!(
        err("[server_tls]\nkey = \"w.key\""),
        "server_tls.cert: missing (a client certificate needs both cert and key)"
    );
}

#[test]
fn reuse_port_is_off_unless_asked_for() {
    assert!(!from_toml_str("").unwrap().listen.reuse_port);
    assert!(!from_toml_str(EXAMPLE).unwrap().listen.reuse_port);
    let c = from_toml_str("[listen]\nreuse_port = true").unwrap();
    assert!(c.listen.reuse_port);
    let c = load_env("", &[("WEIR_LISTEN__REUSE_PORT", "on")]).unwrap();
    assert!(c.listen.reuse_port);
    assert_eq!(
        err("[listen]\nreuse_port = \"sometimes\""),
        "listen.reuse_port: unknown value \"sometimes\" (expected one of: true, false)"
    );
}
