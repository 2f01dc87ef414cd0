//! Maps who may log in and how: `auth_type`, the auth file's users, `auth_user` /
//! `auth_query` / `auth_dbname`, `admin_users` / `stats_users`, and client limits per user.
//!
//! Owns: choosing weir's method when PgBouncer's has no equivalent (never a weaker one
//! without a warning), which users weir can take as they are, and whether `auth_query`
//! can be carried over (one `auth.user` for every database, with a password weir can log
//! in with). Does not: read the auth file's syntax (`userlist.rs`).

use std::path::{Path, PathBuf};

use super::databases::{name_problem, Named};
use super::error::ImportError;
use super::general::{clamp_non_zero, Globals};
use super::settings::Settings;
use super::userlist::{self, Listed};
use super::values::{list, whole};
use super::{LastWins, Plan, Warnings};
use crate::auth::verifier::{parse_secret, Secret};
use crate::config::{AuthMethod, TlsMode, UserConfig};

/// The query PgBouncer runs when `auth_user` is set without `auth_query`: it also refuses
/// expired passwords and roles that cannot log in, which weir's own default does not.
const PGBOUNCER_AUTH_QUERY: &str = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin";

/// What the account mapping reads besides `[pgbouncer]`.
pub(crate) struct Inputs<'a> {
    /// The auth file's users, in file order.
    pub(crate) listed: Vec<Listed>,
    /// `[databases]`, for per-database `auth_user`, `auth_query` and `auth_dbname`.
    pub(crate) dbs: &'a [Named],
    /// `[users]`, for per-user client limits.
    pub(crate) user_sections: &'a [Named],
    /// The pooler-wide limits.
    pub(crate) globals: &'a Globals,
}

/// The users of the ini's `auth_file`, when no userlist was given: the path as written
/// (PgBouncer reads it from its working directory), else next to the ini file. A file
/// that cannot be read is a warning (it may only exist on the PgBouncer host); one that
/// cannot be parsed is an error.
pub(crate) fn auth_file(
    s: &Settings,
    ini: &Path,
    w: &mut Warnings,
) -> Result<(Vec<Listed>, Option<PathBuf>), ImportError> {
    let Some(setting) = s.peek("auth_file").filter(|f| !f.value.is_empty()) else {
        return Ok((Vec::new(), None));
    };
    let named = PathBuf::from(&setting.value);
    let beside = ini.parent().map(|dir| dir.join(&named));
    let path = match beside {
        Some(b) if !named.exists() && !named.is_absolute() && b.exists() => b,
        _ => named,
    };
    match userlist::read(&path) {
        Ok(users) => Ok((users, Some(path))),
        Err(ImportError::Read { cause, .. }) => {
            w.at(&setting.at, format!(
                "auth_file = {} cannot be read ({cause}): no users are carried over; give the file as the second argument",
                setting.value
            ));
            Ok((Vec::new(), None))
        }
        Err(other) => Err(other),
    }
}

/// Maps authentication, users and the admin console into `plan`.
pub(crate) fn apply(
    s: &mut Settings,
    inputs: Inputs<'_>,
    plan: &mut Plan,
    w: &mut Warnings,
) -> Result<(), ImportError> {
    s.take("auth_file");
    let auth_type_at = s.peek("auth_type").map(|a| a.at.clone());
    let (method, substituted) = method(s, plan, w)?;
    plan.config.auth.method = method;
    let Inputs {
        listed,
        dbs,
        user_sections,
        globals,
    } = inputs;
    let auth = auth_query(s, dbs, w);
    let listed_any = !listed.is_empty();
    users(
        listed,
        (method, substituted),
        auth.as_ref().map(|a| a.user.as_str()),
        plan,
        w,
    );
    limits(user_sections, globals, plan, w)?;
    if method == AuthMethod::Trust {
        trust_listed_only(plan);
    }
    if let Some(a) = auth {
        carry_auth_query(a, plan, w);
    }
    if method == AuthMethod::Trust && plan.config.auth.user.is_some() {
        w.maybe_at(auth_type_at.as_ref(), "auth_type = trust is carried over for the users of the auth file only: users found by auth_query are asked for their password (weir's trust would also let in names the query does not find)".to_owned());
    }
    admins(s, plan, w);
    if !listed_any && plan.config.auth.user.is_none() {
        w.file("no users are carried over (no auth file was read, or it lists nobody): weir lets in only the users it lists; give the auth file as the second argument".to_owned());
    }
    Ok(())
}

/// PgBouncer's trust lets in the users of the auth file only; weir's `auth.method =
/// "trust"` lets in any name (and leaves the servers to refuse it). So the listed users
/// get trust each, and everyone else keeps weir's default, under which unknown names fail.
fn trust_listed_only(plan: &mut Plan) {
    plan.config.auth.method = AuthMethod::default();
    for user in &mut plan.config.users {
        user.auth_method = Some(AuthMethod::Trust);
    }
    plan.note(
        "auth.method",
        "auth_type = trust is given to each listed user",
    );
    plan.note("users.auth_method", "auth_type = trust");
}

/// `auth_type` -> `auth.method`. PgBouncer's default is md5.
/// The client-facing method, and whether it stands in for one weir lacks (then users
/// stored as md5 keep md5, as the method they replace would have accepted them).
fn method(
    s: &mut Settings,
    plan: &mut Plan,
    w: &mut Warnings,
) -> Result<(AuthMethod, bool), ImportError> {
    let hba = s.take("auth_hba_file");
    s.take("auth_ident_file");
    s.take("auth_ldap_options");
    let Some(written) = s.take("auth_type") else {
        plan.note("auth.method", "PgBouncer's default auth_type");
        return Ok((AuthMethod::Md5, false));
    };
    plan.note("auth.method", "auth_type");
    let value = written.value.to_ascii_lowercase();
    let mut instead = |why: String| {
        w.at(
            &written.at,
            format!(
                "auth_type = {value} is carried over as auth.method = \"scram-sha-256\" (users stored as md5 get auth_method = \"md5\"): {why}"
            ),
        );
        (AuthMethod::ScramSha256, true)
    };
    Ok(match value.as_str() {
        "md5" => (AuthMethod::Md5, false),
        "scram-sha-256" => (AuthMethod::ScramSha256, false),
        "trust" => (AuthMethod::Trust, false),
        "cert" => {
            let checks_certs = plan
                .config
                .tls
                .as_ref()
                .is_some_and(|t| t.mode != TlsMode::Disable && t.client_ca.is_some());
            if checks_certs {
                (AuthMethod::Cert, false)
            } else {
                instead("weir's cert method needs client TLS with client_tls_ca_file, which this file does not set up".to_owned())
            }
        }
        "plain" => instead("weir never asks for a cleartext password".to_owned()),
        "any" => instead("weir always checks the user name and password; auth.method = \"trust\" would let any name in without one".to_owned()),
        "hba" => instead(format!(
            "weir has no pg_hba-style rules{}; set users.auth_method per user where the rules differ",
            hba.map(|h| format!(" (auth_hba_file = {})", h.value)).unwrap_or_default()
        )),
        "pam" | "ldap" | "gss" | "sspi" => instead(format!("weir has no {value} authentication")),
        _ => {
            return Err(ImportError::Value {
                at: written.at.clone(),
                key: "auth_type".to_owned(),
                problem: format!("{:?} is not a PgBouncer auth_type", written.value),
            })
        }
    })
}

/// The auth file's users as `[[users]]` entries, with the method each one needs.
fn users(
    listed: Vec<Listed>,
    (method, substituted): (AuthMethod, bool),
    auth_user: Option<&str>,
    plan: &mut Plan,
    w: &mut Warnings,
) {
    let mut out = LastWins::new();
    for l in listed {
        if let Some(problem) = name_problem(&l.name) {
            w.at(
                &l.at,
                format!(
                    "user {} is not carried over: {problem}",
                    l.name.escape_debug()
                ),
            );
            continue;
        }
        let lost = |w: &mut Warnings, why: &str| {
            w.at(&l.at, format!("user {} is not carried over: {why}", l.name))
        };
        let mut auth_method = None;
        let password = if l.password.is_empty() {
            if !matches!(method, AuthMethod::Trust | AuthMethod::Cert) {
                let why = if substituted {
                    "its password is empty, and the method weir uses instead of auth_type needs one"
                } else {
                    "its password is empty, and PgBouncer accepted no password for it either"
                };
                lost(w, why);
                continue;
            }
            None
        } else {
            match parse_secret(&l.password) {
                Err(e) => {
                    lost(w, &format!("its password: {e}"));
                    continue;
                }
                // auth_type was one weir lacks, which accepted this password: md5 is
                // no weaker than what it replaces.
                Ok(Secret::Md5(_)) if method == AuthMethod::ScramSha256 && substituted => {
                    auth_method = Some(AuthMethod::Md5)
                }
                Ok(Secret::Md5(_)) if method == AuthMethod::ScramSha256 => {
                    if auth_user != Some(l.name.as_str()) {
                        lost(w, "it is stored as an md5 verifier, which PgBouncer's scram-sha-256 refused; give its SCRAM verifier or plaintext password");
                        continue;
                    }
                    w.at(&l.at, format!("user {} is stored as an md5 verifier: weir keeps it for auth_user, and lets clients log in as it with md5, which PgBouncer's scram-sha-256 refused", l.name));
                }
                // PgBouncer's md5 switches such users to SCRAM itself; weir needs it said.
                Ok(Secret::Scram(_)) if method == AuthMethod::Md5 => {
                    auth_method = Some(AuthMethod::ScramSha256)
                }
                Ok(_) => {}
            }
            Some(l.password)
        };
        let user = UserConfig {
            name: l.name.clone(),
            password,
            auth_method,
            max_client_conn: None,
            previous_passwords: Vec::new(),
        };
        if out.insert(&l.name, user) {
            w.at(
                &l.at,
                format!("user {} is listed twice: the later line is used", l.name),
            );
        }
    }
    plan.config.users = out.into_vec();
}

/// `max_user_client_connections` (global, and per user in `[users]`) -> `users[].max_client_conn`.
fn limits(
    user_sections: &[Named],
    globals: &Globals,
    plan: &mut Plan,
    w: &mut Warnings,
) -> Result<(), ImportError> {
    for section in user_sections {
        if let Some(n) = section.parsed("max_user_client_connections", whole)? {
            match plan.config.users.iter_mut().find(|u| u.name == section.name) {
                Some(user) => user.max_client_conn = (n > 0).then(|| clamp_non_zero(n)),
                None if n > 0 => w.at(&section.at, format!(
                    "user {}: max_user_client_connections={n} is not carried over: the user is not in the auth file, so weir has no [[users]] entry to put it in",
                    section.name
                )),
                None => {}
            }
        }
    }
    let global = globals.max_user_client_connections;
    if global > 0 {
        for user in &mut plan.config.users {
            let own = user_sections
                .iter()
                .any(|s| s.name == user.name && s.get("max_user_client_connections").is_some());
            if !own {
                user.max_client_conn = Some(clamp_non_zero(global));
            }
        }
    }
    Ok(())
}

/// `auth_user` with its query and database, agreed on by every database.
struct AuthQuery {
    /// `auth_user`: who weir logs in as to run the query.
    user: String,
    /// `auth_query`, or PgBouncer's default.
    query: String,
    /// The database on the servers the query runs in (`None`: the client's).
    dbname: Option<String>,
    /// Where `auth_user` was written, for warnings.
    at: Option<super::Origin>,
}

/// The `auth_query` set-up every database uses, or `None` (with a warning when one was
/// asked for): weir has one `auth.user` for all databases, and giving databases that had
/// none a way to look users up would let more users in than PgBouncer did.
fn auth_query(s: &mut Settings, dbs: &[Named], w: &mut Warnings) -> Option<AuthQuery> {
    let user = s.take_given("auth_user");
    let query = s.take_given("auth_query");
    let dbname = s.take_given("auth_dbname");
    let real: Vec<&Named> = dbs.iter().filter(|d| d.name != "*").collect();
    let at = user
        .as_ref()
        .map(|u| u.at.clone())
        .or_else(|| real.first().map(|d| d.at.clone()));
    let agreed = |key: &str, global: Option<&str>| -> Result<Option<String>, ()> {
        let mut values = real.iter().map(|d| d.get(key).or(global));
        let first = values.next().unwrap_or(global);
        if values.all(|v| v == first) {
            Ok(first.map(str::to_owned))
        } else {
            Err(())
        }
    };
    let found = (
        agreed("auth_user", user.as_ref().map(|u| u.value.as_str())),
        agreed("auth_query", query.as_ref().map(|q| q.value.as_str())),
        agreed("auth_dbname", dbname.as_ref().map(|d| d.value.as_str())),
    );
    let (auth_user, auth_query, auth_dbname) = match found {
        (Ok(None), _, _) => return None,
        (Ok(Some(u)), Ok(q), Ok(d)) => (u, q, d),
        _ => {
            w.maybe_at(at.as_ref(), "auth_user is not carried over: the databases differ in auth_user, auth_query or auth_dbname, and weir has one of each for all databases; users not in the auth file cannot log in".to_owned());
            return None;
        }
    };
    let query = auth_query.unwrap_or_else(|| PGBOUNCER_AUTH_QUERY.to_owned());
    if !query.contains("$1") {
        w.maybe_at(
            at.as_ref(),
            "auth_query is not carried over: it does not take the user name as $1".to_owned(),
        );
        return None;
    }
    // auth_dbname names a [databases] entry; weir wants the database on the server.
    let dbname = auth_dbname.map(|name| {
        dbs.iter()
            .find(|d| d.name == name)
            .and_then(|d| d.get("dbname"))
            .map_or(name, str::to_owned)
    });
    Some(AuthQuery {
        user: auth_user,
        query,
        dbname,
        at,
    })
}

/// Sets `[auth]` user, query and dbname when weir can log in as the user.
fn carry_auth_query(a: AuthQuery, plan: &mut Plan, w: &mut Warnings) {
    let password = plan
        .config
        .users
        .iter()
        .find(|u| u.name == a.user)
        .map(|u| u.password.clone());
    let why = match password {
        None => Some("weir logs in as it to run auth.query, so it needs a [[users]] entry with its password (plaintext or md5), and the auth file has none"),
        Some(Some(p)) if p.starts_with("SCRAM-SHA-256$") => Some("its password in the auth file is a SCRAM verifier, which weir cannot log in with before a client has; give it in plaintext or as md5"),
        Some(_) => None,
    };
    if let Some(why) = why {
        w.maybe_at(a.at.as_ref(), format!("auth_user = {} is not carried over: {why}; users not in the auth file cannot log in", a.user));
        return;
    }
    let auth = &mut plan.config.auth;
    auth.user = Some(a.user);
    auth.query = a.query;
    auth.dbname = a.dbname;
    plan.note("auth.user", "auth_user");
}

/// `admin_users` and `stats_users` -> `admin.users`.
fn admins(s: &mut Settings, plan: &mut Plan, w: &mut Warnings) {
    let admin = s.take("admin_users");
    let stats = s.take("stats_users");
    let mut names: Vec<String> = Vec::new();
    // Only admin_users: weir has no read-only console role, and a stats user let in
    // could PAUSE, KILL, RELOAD and SHUTDOWN.
    for setting in [&admin].into_iter().flatten() {
        for name in list(&setting.value) {
            if let Some(problem) = name_problem(&name) {
                w.at(
                    &setting.at,
                    format!("console user {name} is not carried over: {problem}"),
                );
            } else if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if let Some(stats) = &stats {
        let only_stats: Vec<String> = list(&stats.value)
            .into_iter()
            .filter(|n| !admin.as_ref().is_some_and(|a| list(&a.value).contains(n)))
            .collect();
        if !only_stats.is_empty() {
            w.at(&stats.at, format!(
                "stats_users = {} is not carried over: weir has no read-only console role, and admin.users may also run PAUSE, KILL, RELOAD and SHUTDOWN; add them to admin.users yourself if they may, or let them read /metrics instead",
                only_stats.join(", ")
            ));
        }
    }
    for name in &names {
        let listed = plan.config.users.iter().any(|u| &u.name == name);
        // Only weir's own trust lets a name without an entry in.
        if !listed && plan.config.auth.method != AuthMethod::Trust {
            let at = admin.as_ref().map(|s| s.at.clone());
            w.maybe_at(at.as_ref(), format!(
                "console user {name} has no [[users]] entry (it is not in the auth file), so it cannot log in to weir's console until one is added"
            ));
        }
    }
    plan.config.admin.users = names;
}
