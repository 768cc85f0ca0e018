//! The code registry: which key owns which code, and when each host was last seen.
//!
//! [`Registry`] is pure state (time passed in); [`Store`] persists it in SQLite under the data
//! directory so registrations survive a restart.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use certs::Fingerprint;

use crate::code::AccessCode;
use crate::proto::Refusal;

/// What the registry knows of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRecord {
    pub fingerprint: Fingerprint,
    /// Unix seconds when the host was last connected.
    pub last_seen: u64,
}

/// Code → owning key, with expiry of hosts gone longer than `forget_after`.
#[derive(Debug)]
pub struct Registry {
    hosts: HashMap<AccessCode, HostRecord>,
    forget_after: Duration,
}

impl Registry {
    pub fn new(forget_after: Duration) -> Self {
        Self {
            hosts: HashMap::new(),
            forget_after,
        }
    }

    /// Loads records (e.g. from a [`Store`]).
    pub fn extend(&mut self, records: impl IntoIterator<Item = (AccessCode, HostRecord)>) {
        self.hosts.extend(records);
    }

    /// Binds `code` to `fingerprint`, or refreshes an existing binding by the same key.
    pub fn register(
        &mut self,
        code: AccessCode,
        fingerprint: Fingerprint,
        now: u64,
    ) -> Result<HostRecord, Refusal> {
        match self.hosts.get_mut(&code) {
            Some(rec) if rec.fingerprint != fingerprint => Err(Refusal::CodeTaken),
            Some(rec) => {
                rec.last_seen = now;
                Ok(*rec)
            }
            None => {
                let rec = HostRecord {
                    fingerprint,
                    last_seen: now,
                };
                self.hosts.insert(code, rec);
                Ok(rec)
            }
        }
    }

    /// Marks a host as seen now. Returns the updated record if it exists.
    pub fn touch(&mut self, code: &AccessCode, now: u64) -> Option<HostRecord> {
        let rec = self.hosts.get_mut(code)?;
        rec.last_seen = rec.last_seen.max(now);
        Some(*rec)
    }

    pub fn get(&self, code: &AccessCode) -> Option<&HostRecord> {
        self.hosts.get(code)
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Forgets hosts not seen for longer than `forget_after` and not online now; returns them.
    pub fn expire(&mut self, now: u64, is_online: impl Fn(&AccessCode) -> bool) -> Vec<AccessCode> {
        let limit = self.forget_after.as_secs();
        let gone: Vec<AccessCode> = self
            .hosts
            .iter()
            .filter(|(code, rec)| now.saturating_sub(rec.last_seen) > limit && !is_online(code))
            .map(|(code, _)| *code)
            .collect();
        for code in &gone {
            self.hosts.remove(code);
        }
        gone
    }
}

/// Errors of the persistent store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("registry database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("registry database holds a bad row for {code:?}: {why}")]
    BadRow { code: String, why: String },
}

/// SQLite persistence of the registry (`registry.sqlite3` in the data directory).
#[derive(Debug)]
pub struct Store {
    db: rusqlite::Connection,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = rusqlite::Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS hosts (
                 code TEXT PRIMARY KEY,
                 fingerprint BLOB NOT NULL,
                 last_seen INTEGER NOT NULL
             );",
        )?;
        Ok(Self { db })
    }

    pub fn load(&self) -> Result<Vec<(AccessCode, HostRecord)>, StoreError> {
        let mut stmt = self
            .db
            .prepare("SELECT code, fingerprint, last_seen FROM hosts")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (code, fp, last_seen) = row?;
            let bad = |why: &str| StoreError::BadRow {
                code: code.clone(),
                why: why.to_string(),
            };
            let parsed: AccessCode = code.parse().map_err(|_| bad("invalid code"))?;
            let fp: [u8; 32] = fp.try_into().map_err(|_| bad("fingerprint length"))?;
            out.push((
                parsed,
                HostRecord {
                    fingerprint: Fingerprint::from_bytes(fp),
                    last_seen: u64::try_from(last_seen).map_err(|_| bad("negative time"))?,
                },
            ));
        }
        Ok(out)
    }

    pub fn upsert(&self, code: &AccessCode, rec: &HostRecord) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO hosts (code, fingerprint, last_seen) VALUES (?1, ?2, ?3)
             ON CONFLICT(code) DO UPDATE SET fingerprint = excluded.fingerprint,
                                             last_seen = excluded.last_seen",
            rusqlite::params![
                code.to_string(),
                rec.fingerprint.as_bytes().as_slice(),
                i64::try_from(rec.last_seen).unwrap_or(i64::MAX)
            ],
        )?;
        Ok(())
    }

    pub fn delete(&self, code: &AccessCode) -> Result<(), StoreError> {
        self.db
            .execute("DELETE FROM hosts WHERE code = ?1", [code.to_string()])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(b: u8) -> Fingerprint {
        Fingerprint::from_bytes([b; 32])
    }

    fn code(n: u8) -> AccessCode {
        AccessCode::from_payload([1, 2, 3, 4, 5, 6, n]).unwrap()
    }

    #[test]
    fn same_code_other_key_is_refused() {
        let mut r = Registry::new(Duration::from_secs(100));
        r.register(code(1), fp(1), 10).unwrap();
        assert_eq!(r.register(code(1), fp(2), 11), Err(Refusal::CodeTaken));
        assert_eq!(r.register(code(1), fp(1), 12).unwrap().last_seen, 12);
    }

    #[test]
    fn expiry_spares_online_and_recent_hosts() {
        let mut r = Registry::new(Duration::from_secs(100));
        r.register(code(1), fp(1), 0).unwrap();
        r.register(code(2), fp(2), 0).unwrap();
        r.register(code(3), fp(3), 150).unwrap();
        let gone = r.expire(200, |c| *c == code(2));
        assert_eq!(gone, vec![code(1)]);
        assert!(r.get(&code(2)).is_some() && r.get(&code(3)).is_some());
        // once forgotten, another key may take the code
        r.register(code(1), fp(9), 201).unwrap();
    }

    #[test]
    fn store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite3");
        let rec = HostRecord {
            fingerprint: fp(7),
            last_seen: 42,
        };
        {
            let s = Store::open(&path).unwrap();
            s.upsert(&code(1), &rec).unwrap();
            s.upsert(&code(2), &rec).unwrap();
            s.delete(&code(2)).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.load().unwrap(), vec![(code(1), rec)]);
    }
}
