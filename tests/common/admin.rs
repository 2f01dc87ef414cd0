//! Talking to weir's admin console from tests: a configuration with an admin user, SHOW
//! results as maps, and a raw protocol view of result columns (names and type OIDs).

use std::collections::HashMap;

use tokio_postgres::SimpleQueryMessage;

use super::raw::{query, Raw};
use super::{config_toml_with, default_users, Settings};

/// The admin user tests log in as.
pub const ADMIN: &str = "admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-secret";

/// `config_toml_with` plus an admin user listed in `admin.users`; `tail` goes after it.
pub fn admin_toml(db: &str, pool_extra: &str, tail: &str) -> String {
    let users = format!(
        "{}[[users]]\nname = \"{ADMIN}\"\npassword = \"{ADMIN_PASSWORD}\"\n",
        default_users()
    );
    let tail = format!("[admin]\nusers = [\"{ADMIN}\"]\n{tail}");
    config_toml_with(
        db,
        Settings {
            pool_extra,
            users: Some(&users),
            tail: &tail,
            ..Settings::default()
        },
    )
}

/// One SHOW row: column name → value (`None` for NULL).
pub type Row = HashMap<String, Option<String>>;

/// Runs `sql` with the simple protocol and returns its rows.
pub async fn show(client: &tokio_postgres::Client, sql: &str) -> Vec<Row> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_owned(), row.get(i).map(str::to_owned)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The value of `column` in `row` as a number (panics if absent or not a number).
pub fn num(row: &Row, column: &str) -> i64 {
    row.get(column)
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("column {column} is not a number in {row:?}"))
}

/// The row whose `column` is `value`.
pub fn row_where<'a>(rows: &'a [Row], column: &str, value: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.get(column).and_then(|v| v.as_deref()) == Some(value))
        .unwrap_or_else(|| panic!("no row with {column} = {value} in {rows:?}"))
}

/// The columns (name, type OID) of `sql`'s result, read from the RowDescription on a raw
/// connection that is already logged in.
pub async fn columns(raw: &mut Raw, sql: &str) -> Vec<(String, u32)> {
    raw.send(&query(sql)).await;
    let messages = raw.until_ready().await;
    if let Some(e) = messages.iter().find(|m| m.tag == b'E') {
        panic!("{sql}: {:?}", e.fields());
    }
    let Some(desc) = messages.iter().find(|m| m.tag == b'T') else {
        return Vec::new();
    };
    let body = &desc.body;
    let count = i16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut out = Vec::new();
    for _ in 0..count {
        let end = at + body[at..].iter().position(|&b| b == 0).expect("NUL");
        let name = String::from_utf8_lossy(&body[at..end]).into_owned();
        let oid_at = end + 1 + 4 + 2;
        let oid = u32::from_be_bytes(body[oid_at..oid_at + 4].try_into().expect("4 bytes"));
        out.push((name, oid));
        at = oid_at + 4 + 2 + 4 + 2;
    }
    out
}

/// Runs `sql` until its rows satisfy `ready` (weir counts a transaction a moment after
/// the client heard its answer), at most 5 s; returns the last rows either way.
pub async fn show_until(
    client: &tokio_postgres::Client,
    sql: &str,
    ready: impl Fn(&[Row]) -> bool,
) -> Vec<Row> {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let rows = show(client, sql).await;
        if ready(&rows) || tokio::time::Instant::now() >= until {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Runs a console command that blocks (PAUSE, WAIT_CLOSE) in the background; the handle
/// gives the console back when the command returned. Checks it is still blocked after a
/// moment, saying `why` if not.
pub async fn blocked_command(
    console: tokio_postgres::Client,
    sql: &str,
    why: &str,
) -> tokio::task::JoinHandle<tokio_postgres::Client> {
    let sql = sql.to_owned();
    let task = tokio::spawn(async move {
        console
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        console
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "{why}");
    task
}
