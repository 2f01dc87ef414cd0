//! The admin commands that change something: PAUSE, RESUME, KILL, RECONNECT, DISABLE,
//! ENABLE, WAIT_CLOSE, SHUTDOWN, RELOAD and SET.
//!
//! Owns: what each does to the shared state, and the waits (PAUSE waits for running
//! transactions, WAIT_CLOSE for retired connections). Does not: parse or print.

use std::sync::Arc;
use std::time::Duration;

use crate::app::{Database, Shared};
use crate::cancel::{ClientInfo, ClientState};
use crate::error::SqlState;

use super::AdminError;

/// How often PAUSE and WAIT_CLOSE look again.
const POLL: Duration = Duration::from_millis(20);

/// The databases a command names: all of them, or the one given (which must exist).
pub(super) fn targets(shared: &Shared, db: Option<&str>) -> Result<Vec<Arc<Database>>, AdminError> {
    let snap = shared.snapshot();
    match db {
        None => Ok(snap.databases.values().cloned().collect()),
        Some(name) => match snap.databases.get(name) {
            Some(db) => Ok(vec![db.clone()]),
            None => Err(AdminError::new(
                SqlState::INVALID_CATALOG_NAME,
                format!("no such database: {name}"),
            )),
        },
    }
}

/// The names of the databases a command names (see `targets`).
fn target_names(shared: &Shared, db: Option<&str>) -> Result<Vec<String>, AdminError> {
    Ok(targets(shared, db)?
        .iter()
        .map(|d| d.config.name.clone())
        .collect())
}

/// Clients of `database` in a transaction or waiting for a server (not those PAUSE holds).
fn busy_clients(shared: &Shared, database: &str) -> usize {
    shared.cancel.count(|c| {
        c.database == database && matches!(c.state(), ClientState::Waiting | ClientState::Active)
    })
}

/// Sleeps one poll interval; fails when the console must stop waiting (shutdown, or an
/// administrator killed this console session).
async fn poll(shared: &Shared, me: &ClientInfo, what: &str) -> Result<(), AdminError> {
    if *shared.shutdown.borrow() || me.killed() {
        return Err(AdminError::new(
            SqlState::ADMIN_SHUTDOWN,
            format!("{what} cancelled: the console session is ending"),
        ));
    }
    tokio::time::sleep(POLL).await;
    Ok(())
}

/// PAUSE: new transactions wait; returns once the running ones have finished.
pub(super) async fn pause(
    shared: &Shared,
    me: &ClientInfo,
    db: Option<&str>,
) -> Result<(), AdminError> {
    let dbs = targets(shared, db)?;
    for d in &dbs {
        d.control.pause();
    }
    tracing::info!(
        database = db.unwrap_or("*"),
        "PAUSE: holding new transactions"
    );
    while dbs.iter().any(|d| busy_clients(shared, &d.config.name) > 0) {
        poll(shared, me, "PAUSE").await?;
    }
    Ok(())
}

/// RESUME: held transactions go.
pub(super) fn resume(shared: &Shared, db: Option<&str>) -> Result<(), AdminError> {
    for d in targets(shared, db)? {
        d.control.resume();
    }
    tracing::info!(database = db.unwrap_or("*"), "RESUME");
    Ok(())
}

/// RECONNECT: the servers of the databases are replaced as they come back to the pool.
pub(super) fn reconnect(shared: &Shared, db: Option<&str>) -> Result<(), AdminError> {
    let names = target_names(shared, db)?;
    for pool in shared.pools.all() {
        if names.contains(&pool.database) {
            pool.reconnect();
        }
    }
    tracing::info!(
        database = db.unwrap_or("*"),
        "RECONNECT: server connections are being replaced"
    );
    Ok(())
}

/// KILL db: its clients are disconnected (mid-transaction ones at once, their servers
/// closed), its idle servers closed, and it stays paused until RESUME, as in PgBouncer.
pub(super) fn kill(shared: &Shared, db: &str) -> Result<(), AdminError> {
    let d = targets(shared, Some(db))?;
    for d in &d {
        d.control.pause();
    }
    let mut killed = 0;
    for (pid, slot) in shared.cancel.clients() {
        if slot.info.database == db {
            shared.cancel.kill(pid);
            killed += 1;
        }
    }
    reconnect(shared, Some(db))?;
    tracing::warn!(
        database = db,
        clients = killed,
        "KILL: clients disconnected, database paused until RESUME"
    );
    Ok(())
}

/// KILL_CLIENT id: `id` is the `ptr` of SHOW CLIENTS (hex) or its `remote_pid`.
pub(super) fn kill_client(shared: &Shared, id: &str) -> Result<(), AdminError> {
    let pid = match id.strip_prefix("0x") {
        Some(hex) => i32::from_str_radix(hex, 16).ok(),
        None => id.parse::<i32>().ok(),
    };
    match pid {
        Some(pid) if shared.cancel.kill(pid) => {
            tracing::warn!(client = id, "KILL_CLIENT: client disconnected");
            Ok(())
        }
        _ => Err(AdminError::new(
            SqlState::UNDEFINED_OBJECT,
            format!("no such client: {id} (SHOW CLIENTS lists them, by ptr or remote_pid)"),
        )),
    }
}

/// DISABLE / ENABLE db: new logins are refused / admitted.
pub(super) fn set_disabled(shared: &Shared, db: &str, disabled: bool) -> Result<(), AdminError> {
    for d in targets(shared, Some(db))? {
        d.control.set_disabled(disabled);
    }
    tracing::info!(
        database = db,
        disabled,
        "new logins {}",
        if disabled { "refused" } else { "admitted" }
    );
    Ok(())
}

/// WAIT_CLOSE: returns once no server connection retired by RECONNECT (or KILL) is open.
pub(super) async fn wait_close(
    shared: &Shared,
    me: &ClientInfo,
    db: Option<&str>,
) -> Result<(), AdminError> {
    let names = target_names(shared, db)?;
    loop {
        let left: usize = shared
            .pools
            .all()
            .iter()
            .filter(|p| names.contains(&p.database))
            .map(|p| p.close_outdated())
            .sum();
        if left == 0 {
            return Ok(());
        }
        poll(shared, me, "WAIT_CLOSE").await?;
    }
}

/// SHUTDOWN (running transactions finish, then everything closes) or SHUTDOWN
/// WAIT_FOR_CLIENTS (no new clients; weir exits when the last one leaves).
pub(super) fn shutdown(shared: &Shared, wait_for_clients: bool) {
    if wait_for_clients {
        tracing::info!(
            "SHUTDOWN WAIT_FOR_CLIENTS: no new clients; exiting when the last one leaves"
        );
        let _ = shared.closing.send(true);
    } else {
        tracing::info!("SHUTDOWN: finishing running transactions, then exiting");
        let _ = shared.shutdown.send(true);
    }
}

/// RELOAD: the file again. Returns the keys that changed but need a restart.
pub(super) async fn reload(shared: &Arc<Shared>) -> Result<Vec<String>, AdminError> {
    shared.reload().await.map_err(|e| {
        tracing::error!("RELOAD refused: {e}");
        AdminError::new(SqlState::CONFIG_FILE_ERROR, e.to_string())
    })
}

/// SET key = value: applied like a RELOAD with the value over the file's.
pub(super) async fn set(shared: &Arc<Shared>, key: &str, value: &str) -> Result<(), AdminError> {
    let path = super::settings::settable(key)
        .map_err(|e| AdminError::new(SqlState::UNDEFINED_OBJECT, e.to_string()))?;
    shared
        .set(path, value)
        .await
        .map_err(|e| AdminError::new(SqlState::CONFIG_FILE_ERROR, e.to_string()))?;
    tracing::info!("SET {path} = {value}");
    Ok(())
}
