//! The database's schema: one SQLite file (`registry.sqlite3`) holds the registry and the
//! operator's side (host names and bans, console users, their sessions and API keys, the audit
//! log), so one backup (`crate::backup`) copies all of it consistently.
//!
//! `PRAGMA user_version` says how many steps ran. A new version is a new step at the end; a
//! step never changes once released. A database newer than this program is refused.

use crate::registry::StoreError;

pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: hosts and quarantined codes.
    "CREATE TABLE IF NOT EXISTS hosts (
         code TEXT PRIMARY KEY,
         fingerprint BLOB NOT NULL,
         last_seen INTEGER NOT NULL
     );
     CREATE TABLE IF NOT EXISTS quarantine (
         code TEXT PRIMARY KEY,
         fingerprint BLOB NOT NULL,
         until INTEGER NOT NULL
     );",
    // 2: the operator's side (`crate::console`): host names and bans, accounts, sessions,
    // the audit log, brokered sessions, enrollment.
    "CREATE TABLE host_meta (
         fingerprint BLOB PRIMARY KEY,
         name TEXT,
         banned INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE users (
         name TEXT PRIMARY KEY,
         role TEXT NOT NULL,
         password_hash TEXT NOT NULL,
         totp_secret BLOB,
         created INTEGER NOT NULL
     );
     CREATE TABLE web_sessions (
         token_hash BLOB PRIMARY KEY,
         user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
         csrf BLOB NOT NULL,
         created INTEGER NOT NULL,
         expires INTEGER NOT NULL
     );
     CREATE INDEX web_sessions_user ON web_sessions(user);
     CREATE TABLE api_keys (
         id TEXT PRIMARY KEY,
         user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
         secret_hash BLOB NOT NULL,
         scope TEXT NOT NULL,
         label TEXT NOT NULL,
         created INTEGER NOT NULL,
         revoked INTEGER
     );
     CREATE TABLE audit (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         at INTEGER NOT NULL,
         actor TEXT NOT NULL,
         action TEXT NOT NULL,
         target TEXT NOT NULL,
         detail TEXT NOT NULL
     );
     CREATE INDEX audit_at ON audit(at);
     CREATE TABLE sessions (
         id TEXT PRIMARY KEY,
         code TEXT NOT NULL,
         host BLOB NOT NULL,
         controller BLOB NOT NULL,
         controller_addr TEXT NOT NULL,
         path TEXT NOT NULL,
         started INTEGER NOT NULL,
         ended INTEGER,
         bytes INTEGER NOT NULL DEFAULT 0,
         end_reason TEXT
     );
     CREATE INDEX sessions_started ON sessions(started);
     CREATE TABLE enrollment_tokens (
         id TEXT PRIMARY KEY,
         secret_sha256 BLOB NOT NULL,
         account TEXT NOT NULL,
         label TEXT NOT NULL,
         uses_left INTEGER NOT NULL,
         expires INTEGER NOT NULL,
         created INTEGER NOT NULL,
         revoked INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE enrolled_keys (
         fingerprint BLOB PRIMARY KEY,
         account TEXT NOT NULL,
         token_id TEXT NOT NULL,
         at INTEGER NOT NULL
     );",
];

/// The schema version this program writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Refuses a damaged database (`PRAGMA integrity_check`) or one newer than this program;
/// returns its version.
pub(crate) fn check(db: &rusqlite::Connection) -> Result<i64, StoreError> {
    let verdict: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(StoreError::Corrupt(verdict));
    }
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Newer {
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    Ok(version)
}
