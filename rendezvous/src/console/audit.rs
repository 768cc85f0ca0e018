//! The console's audit log: every change an operator makes, every login and logout (and failed
//! login), in the `audit` table, newest first when read. Written in the same call as the change
//! it records; never edited or deleted from the console.

use rusqlite::{Connection, params};

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    pub id: i64,
    /// Unix seconds.
    pub at: u64,
    /// Who: a user name, `api-key:<id>`, `cli`, or `-` for a failed login's unknown caller.
    pub actor: String,
    /// What, e.g. `host.rename`, `login.failed`.
    pub action: String,
    /// On what: a host code, a user name, a key id.
    pub target: String,
    pub detail: String,
}

pub fn record(
    db: &Connection,
    at: u64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), rusqlite::Error> {
    db.execute(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            i64::try_from(at).unwrap_or(i64::MAX),
            actor,
            action,
            target,
            detail
        ],
    )?;
    Ok(())
}

/// Up to `limit` records older than `before` (an id; `None`: the newest), newest first,
/// optionally only those whose action, actor or target contains `search`.
pub fn page(
    db: &Connection,
    before: Option<i64>,
    search: Option<&str>,
    limit: usize,
) -> Result<Vec<Record>, rusqlite::Error> {
    let like = search.map(|s| {
        let escaped = s
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let mut stmt = db.prepare(
        "SELECT id, at, actor, action, target, detail FROM audit
         WHERE id < ?1 AND (?2 IS NULL OR action LIKE ?2 ESCAPE '\\'
                            OR actor LIKE ?2 ESCAPE '\\' OR target LIKE ?2 ESCAPE '\\')
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(
        params![
            before.unwrap_or(i64::MAX),
            like,
            i64::try_from(limit).unwrap_or(100)
        ],
        |r| {
            Ok(Record {
                id: r.get(0)?,
                at: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                detail: r.get(5)?,
            })
        },
    )?;
    rows.collect()
}
