//! Reconciles PgBouncer's pool settings, which can differ per database and per user, into
//! weir's single `pool.mode`, `pool.size` and `pool.min_size`.
//!
//! Owns: the rule. When every database (and user) ends up with the same value, that value
//! is carried over exactly. Otherwise the mode falls back to the global `pool_mode`, and
//! the sizes to the smallest value in use, so that no database gets more server
//! connections than PgBouncer gave it; each entry that loses its own value gets a warning.
//! Does not: read `[pgbouncer]` (`general.rs` did) or map databases.

use super::databases::Named;
use super::error::{ImportError, Origin};
use super::general::{clamp_non_zero, pool_mode, Globals};
use super::values::whole;
use super::{Plan, Warnings};
use crate::config::PoolMode;

/// One value in use: its own (`Some(entry)`) or the global one (`None`).
struct InUse<'a, T> {
    /// The value.
    value: T,
    /// The entry that set it, as ("database" or "user", entry); `None`: the global value.
    own: Option<(&'static str, &'a Named)>,
}

/// Sets `pool.mode`, `pool.size` and `pool.min_size` from the globals and the overrides of
/// `dbs` (`[databases]`) and `users` (`[users]`).
pub(crate) fn apply(
    g: &Globals,
    dbs: &[Named],
    users: &[Named],
    plan: &mut Plan,
    w: &mut Warnings,
) -> Result<(), ImportError> {
    let dbs: Vec<&Named> = dbs.iter().filter(|d| d.name != "*").collect();

    let modes = in_use(&dbs, users, "pool_mode", pool_mode, g.pool_mode.0)?;
    let mode = if all_same(&modes) {
        modes.first().map_or(g.pool_mode.0, |m| m.value)
    } else {
        g.pool_mode.0
    };
    let names = Names {
        key: "pool_mode",
        global: ("pool_mode", g.pool_mode.1.as_ref()),
        weir_key: "pool.mode",
        why: "weir has one pool mode for every database and user",
    };
    warn_lost(
        &modes,
        mode,
        |m: &PoolMode| m.as_str().to_owned(),
        &names,
        w,
    );
    plan.config.pool.mode = mode;
    plan.note(
        "pool.mode",
        origin_note("pool_mode", &modes, g.pool_mode.1.as_ref()),
    );

    let sizes = in_use(&dbs, users, "pool_size", whole, g.pool_size.0)?;
    let smallest = sizes.iter().map(|s| s.value).min().unwrap_or(g.pool_size.0);
    let size = if smallest == 0 {
        // Said where the 0 was written: a database's or user's entry, or the global.
        let zero = sizes.iter().find(|s| s.value == 0).and_then(|s| s.own);
        let at = zero.map_or(g.pool_size.1.as_ref(), |(_, named)| Some(&named.at));
        w.maybe_at(
            at,
            "a pool size of 0 is carried over as pool.size = 1: weir's smallest pool".to_owned(),
        );
        1
    } else {
        smallest
    };
    let names = Names {
        key: "pool_size",
        global: ("default_pool_size", g.pool_size.1.as_ref()),
        weir_key: "pool.size",
        why: "weir has one pool size for every database and user, and takes the smallest in use so that no database gets more server connections than PgBouncer gave it",
    };
    warn_lost(&sizes, size, u64::to_string, &names, w);
    plan.config.pool.size = clamp_non_zero(size);
    plan.note(
        "pool.size",
        origin_note("default_pool_size", &sizes, g.pool_size.1.as_ref()),
    );

    let mins = in_use(&dbs, &[], "min_pool_size", whole, g.min_pool_size.0)?;
    let least = mins
        .iter()
        .map(|s| s.value)
        .min()
        .unwrap_or(g.min_pool_size.0);
    let names = Names {
        key: "min_pool_size",
        global: ("min_pool_size", g.min_pool_size.1.as_ref()),
        weir_key: "pool.min_size",
        why: "weir has one minimum for every pool, and takes the smallest in use",
    };
    warn_lost(&mins, least, u64::to_string, &names, w);
    // PgBouncer caps min_pool_size at the pool size; weir refuses a larger one.
    plan.config.pool.min_size = u32::try_from(least)
        .unwrap_or(u32::MAX)
        .min(plan.config.pool.size.get());
    if least > 0 {
        plan.note("pool.min_size", "min_pool_size");
    }
    Ok(())
}

/// The value each database uses (its own `key`, else `global`), then each user's own.
/// With no databases, the global value alone.
fn in_use<'a, T: Copy>(
    dbs: &[&'a Named],
    users: &'a [Named],
    key: &str,
    parse: fn(&str) -> Result<T, String>,
    global: T,
) -> Result<Vec<InUse<'a, T>>, ImportError> {
    let mut out = Vec::new();
    for db in dbs.iter().copied() {
        out.push(match db.parsed(key, parse)? {
            Some(value) => InUse {
                value,
                own: Some(("database", db)),
            },
            None => InUse {
                value: global,
                own: None,
            },
        });
    }
    if out.is_empty() {
        out.push(InUse {
            value: global,
            own: None,
        });
    }
    for user in users {
        if let Some(value) = user.parsed(key, parse)? {
            out.push(InUse {
                value,
                own: Some(("user", user)),
            });
        }
    }
    Ok(out)
}

/// Whether every entry uses the same value.
fn all_same<T: PartialEq>(values: &[InUse<'_, T>]) -> bool {
    values.windows(2).all(|pair| match pair {
        [a, b] => a.value == b.value,
        _ => true,
    })
}

/// How a pool setting is named and explained in warnings.
struct Names<'a> {
    /// The per-database and per-user key (`pool_size`).
    key: &'a str,
    /// The `[pgbouncer]` key and where it was written (`default_pool_size`).
    global: (&'a str, Option<&'a Origin>),
    /// weir's key (`pool.size`).
    weir_key: &'a str,
    /// Why the value changes.
    why: &'a str,
}

/// A warning for each entry whose own value is not the one weir got, and one for the
/// global value when databases that used it get another.
fn warn_lost<T: PartialEq>(
    values: &[InUse<'_, T>],
    chosen: T,
    show: impl Fn(&T) -> String,
    names: &Names<'_>,
    w: &mut Warnings,
) {
    let Names {
        key,
        global,
        weir_key,
        why,
    } = names;
    let mut global_warned = false;
    for v in values {
        if v.value == chosen {
            continue;
        }
        match v.own {
            Some((what, entry)) => w.at(
                &entry.at,
                format!(
                    "{what} {}: {key}={} is carried over as {weir_key} = {}: {why}",
                    entry.name,
                    show(&v.value),
                    show(&chosen)
                ),
            ),
            None if !global_warned => {
                global_warned = true;
                w.maybe_at(
                    global.1,
                    format!(
                        "{} = {} is carried over as {weir_key} = {}: {why}",
                        global.0,
                        show(&v.value),
                        show(&chosen)
                    ),
                );
            }
            None => {}
        }
    }
}

/// Where a pool value came from, for the comment next to it.
fn origin_note<T>(global_key: &str, values: &[InUse<'_, T>], global_at: Option<&Origin>) -> String {
    if values.iter().any(|v| v.own.is_some()) && values.iter().all(|v| v.own.is_some()) {
        format!(
            "{} of the databases",
            global_key.trim_start_matches("default_")
        )
    } else if global_at.is_some() {
        global_key.to_owned()
    } else {
        format!("PgBouncer's default {global_key}")
    }
}
